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
    assert (tmp_path / "metrics.parquet").is_file()
    # Same results format: the same evaluation points, counters totalled the same way.
    assert list(measured.evals["update"]) == list(simulated.evals["update"]) == [0, 10, 20]
    assert list(measured.evals["samples"]) == list(simulated.evals["samples"])
    torch.testing.assert_close(
        torch.tensor(measured.evals["loss"].to_numpy()),
        torch.tensor(simulated.evals["loss"].to_numpy()),
        rtol=1e-4,
        atol=1e-6,
    )
    assert set(simulated.summary) == set(measured.summary)
    assert measured.summary["updates"] == STEPS
    assert list(measured.workers.columns) == list(simulated.workers.columns)


def test_async_strategies_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="asynchronous"):
        real.run(ParameterServer(mode="async"), "quadratic", nproc=2, steps=2)
