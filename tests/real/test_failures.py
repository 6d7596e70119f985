"""A failing real run says why in one line and keeps what it measured."""

import json

import pytest

import real
from strategies import AllReduceSGD


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
    ],
)
def test_bad_arguments_fail_before_any_process_starts(kwargs, match):
    args = {"nproc": 2, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        real.run("allreduce", "quadratic", **args)
    assert "\n" not in str(err.value)
