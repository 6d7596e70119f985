"""The strategy contract, asserted once and run on every backend.

Each test runs a reference program (``tests/reference_strategies.py``) in ``sim`` and on real
gloo processes and asserts the same outcome: the same numbers, or the same one-line error
(a real rank's failure reaches the launcher as ``rank R failed: Type: message (at file:line)``;
:func:`failure` reads the type and message back out of it). A rule changed in one backend
only fails here in the other.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

import real
import topologies
import workloads
from sim.run import run as sim_run
from strategies.roles import Evaluator, TrainingSetup
from tests import reference_strategies as ref

BACKENDS = ["sim", "real"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def run_on(backend: str, strategy: Any, world_size: int, steps: int = 1, **kwargs: Any) -> Any:
    """``strategy`` on ``world_size`` ranks of ``backend`` (a star in sim, loopback on real)."""
    topology = kwargs.pop("topology", None)
    if backend == "sim":
        graph = topology if topology is not None else topologies.star(world_size)
        return sim_run(strategy, "quadratic", graph, steps=steps, **kwargs)
    if topology is not None:
        kwargs["topology"] = topology
    return real.run(strategy, "quadratic", nproc=world_size, steps=steps, timeout=20, **kwargs)


_RANK_FAILED = re.compile(r"^rank \d+ failed: (?P<type>\w+): (?P<message>.*?)(?: \(at [^)]*\))?$")


def failure(backend: str, strategy: Any, world_size: int, **kwargs: Any) -> tuple[str, str]:
    """The error a run of ``strategy`` ends with, as (type name, one-line message)."""
    with pytest.raises(Exception) as err:
        run_on(backend, strategy, world_size, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    ranked = _RANK_FAILED.match(message)
    if ranked is not None:  # a real rank's failure, as the launcher reports it
        return ranked["type"], ranked["message"]
    return type(err.value).__name__, message


# -- errors: the same type and words in both backends --------------------------------------------


@pytest.mark.parametrize(
    "strategy,world_size,kind,said",
    [
        (
            ref.OutsideItsGroup(),
            3,
            "CommError",
            "rank 0 called all_reduce on a group it is not in: (1, 2)",
        ),
        (ref.ForgetsTheYield(), 2, "TypeError", "w.apply(grads) got a handle"),
        (ref.YieldsATensor(), 2, "TypeError", "program yielded a Tensor at reference_strategies"),
        (ref.NotAGenerator(), 2, "TypeError", "NotAGenerator.worker() returned None, not a gen"),
        (ref.NoSuper(), 2, "TypeError", "NoSuper.__init__ did not call super().__init__"),
        (ref.IntMean(), 2, "CommError", "op='mean' needs a floating-point tensor, got torch.int64"),
        (ref.SleepsZero(), 2, "ValueError", "seconds=0 must be a number of seconds > 0"),
        (ref.TimesOutZero(), 2, "ValueError", "(a timeout of 0 fails before"),
        (ref.GathersByTree(), 2, "CommError", "all_gather: algorithm='tree' does not implement"),
        (ref.ManyTensors(), 2, "CommError", "does not fit the 4096-byte envelope"),
        (
            ref.WaitsInFinally(),
            2,
            "RuntimeError",
            "program yielded again while being closed at reference_strategies.py:",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, ref.Strategy) else None,
)
def test_a_mistake_is_the_same_one_line_error_on_every_backend(
    backend, strategy, world_size, kind, said
):
    found_kind, message = failure(backend, strategy, world_size, steps=2)
    assert (found_kind, said in message) == (kind, True), message
    if isinstance(strategy, ref.TimesOutZero):
        assert "sleep" not in message  # a timeout, not a sleep


def test_a_global_model_that_never_advances_is_the_runaway_error_on_every_backend(backend):
    kind, message = failure(backend, ref.ServersStepButAverageDeclared(), 3, steps=2)
    assert kind == "RunawayError", (kind, message)
    assert "has applied 1021 optimizer steps, far more than the run's 2 global steps" in message


# -- what a run records: the same steps, samples, evaluation points and losses -----------------


def test_loading_parameters_is_not_a_step_and_counts_no_samples(backend):
    result = run_on(backend, ref.LoadsWithoutVersion(), 3, steps=6, eval_every=3)
    assert result.summary["steps"] == 6
    assert result.summary["samples"] == 6 * 3 * 32  # six gradients per worker, no more
    assert list(result.evals["step"]) == [0, 3, 6]


def test_a_natural_local_sgd_counts_the_same_steps_samples_and_loss_on_every_backend():
    """The issue's example: ranks that compute a gradient after the last step must not count
    it, in either backend."""
    kwargs = dict(steps=10, eval_every=5, seed=3)
    simulated = run_on("sim", ref.NaturalLocalSGD(period=3), 4, **kwargs)
    measured = run_on("real", ref.NaturalLocalSGD(period=3), 4, **kwargs)
    for result in (simulated, measured):
        assert result.summary["steps"] == 10
        assert result.summary["samples"] == 10 * 4 * 32
    assert list(measured.evals["step"]) == list(simulated.evals["step"]) == [0, 5, 10]
    torch.testing.assert_close(
        torch.tensor(list(measured.evals["loss"])), torch.tensor(list(simulated.evals["loss"]))
    )


def test_an_evaluation_point_sees_the_communication_that_follows_its_step(backend):
    kwargs = dict(steps=4, eval_every=2, optimizer={"name": "sgd", "lr": 0.0})
    moved = run_on(backend, ref.OuterStep(), 2, **kwargs)
    still = run_on(backend, ref.PlainAverage(), 2, **kwargs)
    # lr 0: the replicas move only by the outer +1 after each step. Step 2's state is taken
    # before step 3 (two moves); the last step's when applied (three: its own never runs).
    evaluate = Evaluator(
        TrainingSetup.create(ref.PlainAverage(), workloads.get("quadratic"), 2, steps=1)
    )
    losses = moved.evals.set_index("step")["loss"]
    assert losses[2] == pytest.approx(evaluate(still.parameters + 2.0)["loss"], rel=1e-6)
    assert losses[4] == pytest.approx(evaluate(still.parameters + 3.0)["loss"], rel=1e-6)
    final = moved.parameters - still.parameters
    torch.testing.assert_close(final, torch.full_like(final, 3.0))


def test_the_consensus_distance_of_an_average_is_recorded_with_each_evaluation(backend):
    result = run_on(backend, ref.Disagree(), 3, steps=2, eval_every=1)
    numel = result.parameters.numel()
    # offsets 0, 1, 2 on every parameter: mean squared distance to the mean is 2/3 each.
    after_start = result.evals[result.evals["step"] > 0]["consensus"]
    assert list(after_start) == pytest.approx([numel * 2 / 3] * 2)


def test_in_place_collectives_fill_parameters(backend):
    assert run_on(backend, ref.BroadcastsIntoParameters(), 3, steps=2).summary["steps"] == 2


# -- what a program sees: failures, timeouts, matching, placement, optimizers ------------------


def test_a_failure_is_thrown_into_the_program_at_its_yield(backend):
    logs = run_on(backend, ref.CatchesAFailedReceive(), 2).logs
    assert list(logs["caught"]) == [1.0] and list(logs["named_the_shapes"]) == [1.0]


def test_a_timeout_is_caught_by_the_program_and_the_operation_goes_on(backend):
    logs = run_on(backend, ref.GivesUpThenWaits(), 2).logs.set_index("rank")
    assert 0.3 <= logs["timed_out_at"].dropna().iloc[0] < 1.0
    received = logs.dropna(subset=["received_at"]).iloc[0]
    assert received["received_at"] >= 1.0
    assert (received["value"], received["n"]) == (2.0, 7.0)


def test_a_receive_for_the_sender_is_matched_before_a_receive_from_any_rank(backend):
    row = run_on(backend, ref.AnyThenSpecific(), 2).logs.iloc[0]
    assert (row["any_got"], row["specific_got"]) == (2.0, 1.0)


def test_every_context_knows_its_node_and_local_rank_from_the_topology(backend):
    logs = run_on(backend, ref.Where(), 4, topology=topologies.hierarchical(2, 2)).logs
    placed = {int(r.rank): (r.node, r.local_rank, r.nodes) for r in logs.itertuples()}
    assert placed == {r: (r // 2, r % 2, 2) for r in range(4)}


def test_a_strategy_declares_named_optimizers_that_a_run_configures(backend):
    optimizer = {"inner": {"name": "sgd", "lr": 0.1}, "outer": {"name": "sgd", "lr": 0.7}}
    result = run_on(backend, ref.TwoOptimizers(), 2, steps=2, optimizer=optimizer)
    assert list(result.logs["outer_lr"]) == [0.7, 0.7]
    assert result.summary["steps"] == 2
    assert result.config["optimizer"]["outer"] == {"name": "sgd", "lr": 0.7}
    kind, message = failure(backend, ref.TwoOptimizers(), 2, optimizer={"outr": "sgd"})
    assert "optimizer names 'outr', which TwoOptimizers does not" in message
