"""EASGD against a plain reference implementation of the paper's update, and on real."""

import copy

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import topologies
import workloads
from sim.run import run
from strategies import EASGD
from studies.conformance import check


def reference(workers, rounds, period, alpha, lr, seed=0):
    """Synchronous EASGD written out: local SGD, then elastic moves of workers and centre."""
    workload = workloads.get("quadratic")
    model = workload.make_model(seed)
    replicas = [copy.deepcopy(model) for _ in range(workers)]
    streams = [workload.batches(i, workers, seed) for i in range(workers)]
    center = parameters_to_vector(model.parameters()).detach().clone()
    for _ in range(rounds):
        for replica, batches in zip(replicas, streams):
            for _ in range(period):
                x, y = next(batches)
                loss = workload.loss(replica(x), y)
                grads = torch.autograd.grad(loss, list(replica.parameters()))
                with torch.no_grad():
                    for p, g in zip(replica.parameters(), grads):
                        p -= lr * g
        xs = [parameters_to_vector(r.parameters()).detach().clone() for r in replicas]
        for replica, x in zip(replicas, xs):
            vector_to_parameters(x - alpha * (x - center), replica.parameters())
        center = center - alpha * sum(center - x for x in xs)
    return center


@pytest.mark.parametrize("servers", [1, 2])
def test_sync_easgd_equals_the_papers_update_written_out(servers):
    strategy = EASGD(alpha=0.1, period=3, servers=servers)
    result = run(
        strategy,
        "quadratic",
        topologies.star(3 + servers),
        steps=4,
        optimizer={"name": "sgd", "lr": 0.05},
    )
    expected = reference(workers=3, rounds=4, period=3, alpha=0.1, lr=0.05)
    torch.testing.assert_close(result.parameters, expected, rtol=1e-5, atol=1e-6)
    assert result.config["optimizer"]["center"] == {"name": "sgd", "lr": 0.1}


def test_sync_easgd_logs_how_far_apart_the_workers_are():
    result = run(EASGD(alpha=0.1, period=2), "quadratic", topologies.star(4), steps=5, eval_every=2)
    assert list(result.logs["consensus"].dropna() > 0) == [True, True]


def test_async_easgd_runs_with_stragglers_and_learns():
    result = run(
        EASGD(alpha=0.1, period=2, mode="async"),
        "quadratic",
        topologies.star(5),
        steps=40,
        compute={"base": 0.01, "straggler": "lognormal", "options": {"sigma": 0.5}},
    )
    losses = list(result.evals["loss"])
    assert result.summary["steps"] == 40 and losses[-1] < losses[0]


def test_a_centre_that_would_overshoot_its_workers_is_refused():
    with pytest.raises(ValueError, match=r"n \* alpha = 1.2 >= 1"):
        EASGD(alpha=0.3, mode="sync").check_world(5)
    EASGD(alpha=0.3, mode="async").check_world(5)  # one worker at a time: no overshoot


def test_options_are_checked_in_one_line():
    for kwargs, field in [
        ({"alpha": 0}, "alpha=0"),
        ({"mode": "gossip"}, "mode='gossip'"),
        ({"period": 1.5}, "period=1.5"),
    ]:
        with pytest.raises(ValueError, match=field) as err:
            EASGD(**kwargs)
        assert "\n" not in str(err.value)


def test_sync_easgd_conforms_on_gloo():
    check(EASGD(alpha=0.1, period=2), "mlp_digits", world_size=4, steps=20).raise_for_differences()


def test_async_easgd_reaches_the_simulated_loss_on_gloo():
    # Arrival order decides which centre each worker sees: compare the final loss only.
    report = check(
        EASGD(alpha=0.1, period=2, mode="async"),
        "mlp_digits",
        world_size=4,
        steps=30,
        exact=False,
        loss_rtol=0.1,
    )
    report.raise_for_differences()
