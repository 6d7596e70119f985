"""The same strategy objects on gloo give the simulator's parameters (the interface is real)."""

import pytest
import torch

import real
import topologies
from sim.run import run as sim_run
from strategies import AllReduceSGD, ParameterServer

STEPS = 20


@pytest.mark.parametrize(
    "strategy,nproc",
    [(AllReduceSGD(), 3), (ParameterServer(), 3), (ParameterServer(servers=2), 4)],
    ids=["allreduce", "ps-sync", "ps-sync-2-shards"],
)
def test_real_gloo_run_matches_the_simulator_after_20_steps(strategy, nproc, tmp_path):
    optimizer = {"name": "sgd", "lr": 0.1, "momentum": 0.9}
    simulated = sim_run(
        strategy,
        "mlp_digits",
        topologies.star(nproc),
        steps=STEPS,
        optimizer=optimizer,
        eval_every=10,
    )
    measured = real.run(
        strategy,
        "mlp_digits",
        nproc=nproc,
        steps=STEPS,
        optimizer=optimizer,
        eval_every=10,
        out=tmp_path,
    )
    torch.testing.assert_close(measured.parameters, simulated.parameters, rtol=1e-5, atol=1e-6)
    assert measured.summary["updates"] == STEPS
    assert (tmp_path / "metrics.parquet").is_file()
    if len(strategy.servers(nproc)) <= 1:  # a lone primary holds the whole model to evaluate
        assert list(measured.evals["update"]) == [0, 10, 20]
        assert measured.evals["loss"].iloc[-1] == pytest.approx(
            simulated.evals["loss"].iloc[-1], rel=1e-4
        )
    assert set(measured.metrics.columns) <= set(simulated.metrics.columns) | {"rank"}


def test_async_strategies_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="asynchronous"):
        real.run(ParameterServer(mode="async"), "quadratic", nproc=2, steps=2)
