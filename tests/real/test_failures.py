"""A failing real run says why in one line and keeps what it measured."""

import json

import pytest
import torch

import real
from strategies import AllReduceSGD, Strategy


class FailsAtVersion3(AllReduceSGD):
    """Rank 0 (which records the evaluation snapshots) raises after three updates."""

    name = "fails_at_version_3_test_only"

    def worker(self, w):
        program, value = super().worker(w), None
        while True:
            item = program.send(value)
            if w.rank == 0 and w.version == 3:
                raise RuntimeError("boom\nwith a second line")
            value = yield item


def test_a_rank_failure_is_one_line_and_keeps_the_measurements(tmp_path):
    with pytest.raises(
        RuntimeError, match="rank 0 failed: RuntimeError: boom with a second line"
    ) as err:
        real.run(
            FailsAtVersion3(),
            "quadratic",
            nproc=2,
            steps=10,
            eval_every=1,
            out=tmp_path,
            timeout=60,
        )
    assert "\n" not in str(err.value)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "boom" in record["error"]
    import pandas as pd

    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert sorted(metrics[metrics["kind"] == "eval"]["step"]) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"timeout": float("inf")}, "timeout=inf"),
        ({"accumulate": 0}, "accumulate=0"),
        ({"backend": "nccl"}, "backend nccl needs a CUDA GPU"),
        ({"backend": "mpi"}, "backend 'mpi' is unknown"),
        ({"nproc": 0}, "nproc=0"),
        # The values sim.run refuses, refused here the same way (they ran, or failed inside
        # the ranks without naming the argument).
        ({"optimizer": {"name": "sgd", "lr": float("nan")}}, "lr=nan"),
        ({"optimizer": "sgd:lr=1e308"}, "lr=1e\\+308"),
        ({"seed": 2**64}, "seed=18446744073709551616"),
        ({"strategy": "local_sgd:period=0"}, "^period=0 must be an integer >= 1"),
        ({"topology": "star:n=3"}, "topology has 3 hosts but nproc=2"),
        ({"topology": "star:n=2,bandwidth=1e-300"}, "bandwidth=1e-300 is outside"),
    ],
)
def test_bad_arguments_fail_before_any_process_starts(kwargs, match):
    args = {"strategy": "allreduce", "nproc": 2, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        real.run(args.pop("strategy"), "quadratic", **args)
    assert "\n" not in str(err.value)


def test_an_out_that_is_not_a_path_is_one_line_before_any_process_starts():
    with pytest.raises(TypeError, match=r"^out=123 must be a directory path"):
        real.run("allreduce", "quadratic", nproc=2, steps=2, out=123)


def test_real_run_takes_the_specs_sim_run_takes():
    """A topology spec was an AttributeError; a strategy spec was 'unknown'."""
    result = real.run(
        "local_sgd:period=2", "quadratic", nproc=2, steps=2, topology="star:n=2", timeout=60
    )
    assert result.config["strategy"]["period"] == 2
    assert result.config["topology"]["family"] == "star" and result.summary["steps"] == 2


class GroupOnSomeRanks(Strategy):
    """Rank 2 skips a group it is not in: torch's gloo lets it, the strictest rule does not."""

    name = "group_on_some_ranks_test_only"

    def worker(self, w):
        if w.rank != 2:
            w.comm.new_group([0, 1])
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply((yield w.comm.all_reduce(grads, op="mean")))


class ReceivesIntoWrongShapes(AllReduceSGD):
    """Rank 1 receives rank 0's gradient into a larger buffer; rank 2 steps on its own."""

    name = "receives_into_wrong_shapes_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            if w.rank == 0:
                yield w.comm.send(grads, dst=1)
            elif w.rank == 1:
                yield w.comm.recv(torch.empty(grads.numel() + 3), src=0)
            w.apply(grads)


@pytest.mark.parametrize(
    "strategy,said",
    [
        (
            GroupOnSomeRanks(),
            "rank 2 created 0 of the 1 groups the other ranks created; every rank of the world "
            "must call new_group for every group",
        ),
        (
            ReceivesIntoWrongShapes(),
            "rank 1 received a message of [(10,) float32] from rank 0 into buffers of "
            "[(13,) float32]",
        ),
    ],
    ids=["new_group on some ranks", "wrong-shaped receive"],
)
@pytest.mark.parametrize("backend", ["sim", "real"])
def test_the_same_mistake_gets_the_same_error_in_both_backends(strategy, said, backend):
    """The simulator names these mistakes; gloo let the first pass silently, and a rank
    stepping on its own ran into the runaway guard before the second was named."""
    import sim

    with pytest.raises(Exception) as err:
        if backend == "sim":
            sim.run(strategy, "quadratic", "star:n=3", steps=5)
        else:
            real.run(strategy, "quadratic", nproc=3, steps=5, timeout=5)
    assert said in str(err.value)
