"""Reinforcement learning in both backends: A2C (all-reduce) gives the same rollouts, returns
and parameters in sim and on gloo, bit for bit; A3C (an asynchronous parameter server) gives
returns within the seed-to-seed spread, as does IMPALA (the spread of greedy CartPole returns
over two seeds is wide: these catch a backend that breaks acting or evaluation, not a small
bias)."""

import workloads
from studies.conformance import check


def _cartpole():
    return workloads.cartpole(n_envs=2, rollout=8, hidden=16, eval_episodes=3)


def test_a2c_gives_the_same_returns_and_parameters_in_sim_and_on_gloo():
    report = check(
        "allreduce", _cartpole(), world_size=3, steps=6, eval_every=3, optimizer="adam:lr=0.01"
    )
    assert report.ok, str(report)
    assert list(report.sim.evals["return"]) == list(report.real.evals["return"])
    assert report.sim.summary["samples"] == report.real.summary["samples"] == 6 * 3 * 16


def test_a3c_returns_on_real_lie_within_the_simulators_spread():
    report = check(
        "parameter_server:mode=async", _cartpole(), world_size=3, steps=6, exact=False,
        seeds=2, optimizer="adam:lr=0.01",
    )  # fmt: skip
    assert report.ok, str(report)
    assert report.loss_verdict is not None and len(report.loss_verdict.real) == 2


def test_impala_returns_on_real_lie_within_the_simulators_spread():
    report = check(
        "impala:batch=2", _cartpole(), world_size=3, steps=8, exact=False, seeds=2,
        optimizer="adam:lr=0.01",
    )  # fmt: skip
    assert report.ok, str(report)
    assert report.loss_verdict is not None and len(report.loss_verdict.real) == 2
