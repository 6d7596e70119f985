"""The primary part: the rule both backends' quorums apply to links down."""

import networkx as nx
import pytest

import topologies
from topologies.partitions import components, primary, stuck


def two_switches():
    """Hosts 0 and 1 on s0, 2 and 3 on s1, the switches linked: a tree."""
    graph = nx.Graph([("s0", "s1"), ("s0", 0), ("s0", 1), ("s1", 2), ("s1", 3)])
    return graph, {r: r for r in range(4)}


def test_the_largest_part_of_the_live_ranks_holds_the_quorum():
    graph = topologies.star(4)
    part = components(graph, [("s0", 2), (3, "s0")])  # either order names a link
    assert primary(part, {r: r for r in range(4)}, range(4)) == {0, 1}


def test_a_tie_goes_to_the_part_with_the_lowest_rank_and_only_live_ranks_count():
    graph, hosts = two_switches()
    part = components(graph, [("s1", "s0")])
    assert primary(part, hosts, [0, 1, 2, 3]) == {0, 1}
    assert primary(part, hosts, [3, 2, 1]) == {2, 3}  # rank 0 is dead: the other side wins
    assert primary(part, hosts, [0, 1]) is None  # the live ranks are all on one side


def test_no_link_down_cuts_nobody_off_and_a_directed_graph_is_read_undirected():
    graph, hosts = two_switches()
    assert primary(components(graph, []), hosts, range(4)) is None
    directed = nx.DiGraph(list(graph.edges) + [(v, u) for u, v in graph.edges])
    assert primary(components(directed, [frozenset(("s0", 1))]), hosts, range(4)) == {0, 2, 3}


def test_the_stuck_line_names_the_links_the_ranks_and_the_fix():
    line = stuck([("s0", 2), ("s0", 3)], [2, 3], [1, 0], 3)
    assert line.startswith("links ('s0', 2), ('s0', 3) down cut ranks [2, 3] off")
    assert line.endswith("lower min_replicas to 2, or give the link_down an 'until'")


@pytest.mark.parametrize("cut", [[("s0", 2)], [("s0", 1), ("s0", 2)]])
def test_sims_partitions_apply_this_rule(cut):
    import simpy

    from sim.partitions import Partitions

    graph = topologies.star(3)
    env = simpy.Environment()
    parts = Partitions(env, graph, {r: r for r in range(3)}, detect=1.0)
    for edge in cut:
        parts.link(edge, 0.0)
    env.run(until=1.0)
    assert parts.primary(range(3)) == primary(components(graph, cut), parts.hosts, range(3))
