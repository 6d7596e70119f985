"""Counts mean the same in both backends: ``samples`` are those of applied gradients.

Real ranks compute at their own pace and learn the stop late: a rank may compute its next
gradient before a peer's step is stamped, or after the last step. Those gradients were
counted on ``real`` (a natural Local SGD, 4 ranks, 10 steps: 1344 or 1440 samples on gloo,
1280 in ``sim``); they are ``discarded_samples`` now, and ``samples`` is the same number in
both backends.
"""

import pytest

import real
import sim
import topologies


def _one_node_star(n):
    graph = topologies.star(n)
    for host in topologies.hosts(graph):
        graph.nodes[host]["node"] = 0
    return graph


def _both(strategy, n, steps, eval_every=5):
    graph = _one_node_star(n)
    kwargs = {"steps": steps, "eval_every": eval_every}
    simulated = sim.run(strategy, "quadratic", graph, **kwargs)
    measured = real.run(strategy, "quadratic", nproc=n, topology=graph, timeout=60, **kwargs)
    return simulated.summary, measured.summary


def test_a_local_sgd_of_four_ranks_counts_the_same_samples_steps_and_loss_as_sim():
    # Period 4: step 10 is no averaging point, so ranks run ahead of one another and past
    # the stop (the example).
    s, r = _both("local_sgd:period=4", 4, 10)
    assert (r["steps"], r["samples"]) == (s["steps"], s["samples"]) == (10, 4 * 10 * 32)
    assert r["final_loss"] == pytest.approx(s["final_loss"], rel=1e-6)
    assert r["discarded_samples"] >= 0 and s["discarded_samples"] == 0


@pytest.mark.parametrize(
    "strategy,n,expected",
    [
        ("allreduce", 3, 3 * 6 * 32),  # one owner ("primary"); the others' steps commit too
        ("parameter_server", 3, 2 * 6 * 32),  # workers never step: all they computed
        ("diloco:period=3", 2, 2 * 6 * 32),
    ],
)
def test_synchronous_strategies_count_applied_samples_alike(strategy, n, expected):
    s, r = _both(strategy, n, 6, eval_every=3)
    assert (r["steps"], r["samples"]) == (s["steps"], s["samples"]) == (6, expected)
    assert r["final_loss"] == pytest.approx(s["final_loss"], rel=1e-5)
