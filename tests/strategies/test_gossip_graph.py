"""The gossip communication graph against closed forms: complete-graph averaging, a host
graph read over worker indices, and the checks deferred to the run where the graph waits for it."""

import pytest

from strategies.gossip_graph import GossipGraph, user_graph


def test_uniform_weights_on_the_complete_graph_average_in_one_round():
    graph = GossipGraph("complete", weights="uniform")
    graphs = graph.schedule(range(5))
    # Every worker receives from and sends to the four others, each weighted 1/5.
    (plan,) = graph.rounds(graphs, 2)
    assert plan.sources == plan.targets == (0, 1, 3, 4)
    assert plan.weights == pytest.approx((0.2,) * 5)  # its own weight first: 1 - 4/5
    facts = graph.facts(graphs)
    assert facts["lambda2"] == pytest.approx(0.0, abs=1e-12)
    assert facts["spectral_gap"] == pytest.approx(1.0, abs=1e-12)
    assert facts["degree"] == 4.0
    assert "active" not in facts


def test_async_facts_count_the_active_side():
    # A ring of 6 splits into two sides of 3; its Metropolis weights (I + A) / 3 have the
    # eigenvalues (1 + 2 cos(2 pi k / 6)) / 3: 1, 2/3, 0, -1/3, so lambda2 = 2/3.
    facts = GossipGraph("ring", mode="async", weights=None).facts(
        [user_graph([(i, (i + 1) % 6) for i in range(6)])]
    )
    assert facts["active"] == 3.0
    assert facts["lambda2"] == pytest.approx(2 / 3)


def test_the_host_graph_is_read_over_worker_indices_without_server_ranks():
    # Rank 0 is a server: the workers are ranks 4, 5, 6 (indices 0, 1, 2).
    host = {0: (4, 5, 6), 4: (0, 5), 5: (0, 4, 6), 6: (0, 5)}
    assert GossipGraph("topology").schedule([4, 5, 6], host) == [{0: (1,), 1: (0, 2), 2: (1,)}]


def test_topology_is_checked_when_the_run_starts_and_a_user_graph_before():
    GossipGraph("topology").check(4)  # the host graph is not known before the run
    with pytest.raises(ValueError, match="needs the network's host graph"):
        GossipGraph("topology").schedule(range(4), None)
    ring3 = user_graph([(0, 1), (1, 2), (2, 0)])
    with pytest.raises(ValueError, match="graph has 3 nodes but the run has 4 workers"):
        GossipGraph("custom", ring3).check(4)
    with pytest.raises(ValueError, match="graph='custom' over 3 workers is not"):
        GossipGraph("custom", ring3, mode="async", weights=None).check(3)
