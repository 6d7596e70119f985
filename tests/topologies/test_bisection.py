"""Bisection bandwidth against a plain reference: every balanced host split, min-cut switches."""

import itertools
import math
import random

import networkx as nx
import pytest

import topologies
from topologies import Bisection, bisection_bandwidth, hosts
from topologies.bisection import _heuristic


def _cut_to(g: nx.Graph, a: set, b: set) -> float:
    """Least A-to-B capacity over switch placements (a max-flow min-cut)."""
    switches = [v for v in g if v not in a and v not in b]
    if not switches:
        return sum(
            w
            for u, v, w in g.edges(data="bandwidth")
            if (u in a and v in b) or (not g.is_directed() and u in b and v in a)
        )
    flow = nx.DiGraph()
    for u, v, w in g.edges(data="bandwidth"):
        flow.add_edge(u, v, capacity=w)
        if not g.is_directed():
            flow.add_edge(v, u, capacity=w)
    flow.add_edges_from(("SOURCE", x) for x in a)  # no capacity: infinite
    flow.add_edges_from((x, "SINK") for x in b)
    return nx.minimum_cut_value(flow, "SOURCE", "SINK")


def reference(g: nx.Graph) -> float | None:
    hs = hosts(g)
    n = len(hs)
    if n < 2:
        return None
    best = math.inf
    for size in {n // 2, (n + 1) // 2}:
        for rest in itertools.combinations(hs[1:], size - 1):
            a = {hs[0], *rest}
            b = set(hs) - a
            cut = _cut_to(g, a, b)
            if g.is_directed():
                cut = min(cut, _cut_to(g, b, a))
            best = min(best, cut)
    return best


CLOSED_FORM_CASES = (
    [topologies.ring(n, bandwidth=1.0) for n in range(2, 9)]
    + [topologies.star(n, bandwidth=1.0) for n in range(2, 8)]
    + [topologies.fully_connected(n, bandwidth=1.0) for n in range(2, 7)]
    + [
        topologies.torus2d(r, c, bandwidth=1.0)
        for r, c in [
            (1, 2),
            (1, 5),
            (2, 2),
            (2, 3),
            (2, 4),
            (2, 5),
            (2, 7),
            (3, 3),
            (3, 4),
            (4, 3),
            (3, 5),
            (4, 4),
        ]
    ]
    + [topologies.fat_tree(2, bandwidth=1.0)]
    + [
        topologies.hierarchical(
            nodes, gpus, intra_bandwidth=intra, inter_bandwidth=1.0, oversubscription=over
        )
        for nodes, gpus in [(1, 3), (2, 1), (2, 2), (3, 2), (2, 3), (4, 1), (3, 1)]
        for intra in (0.5, 1.0, 3.0)
        for over in (1.0, 4.0)
    ]
)


@pytest.mark.parametrize(
    "g", CLOSED_FORM_CASES, ids=lambda g: "-".join(str(v) for v in g.graph.values())[:60]
)
def test_closed_forms_match_reference(g):
    result = bisection_bandwidth(g)
    assert result.exact
    assert result.method == f"closed form ({g.graph['family']})"
    assert result.bandwidth == pytest.approx(reference(g))


def test_fat_tree_closed_form_is_tight():
    k = 4
    g = topologies.fat_tree(k, bandwidth=1.0)
    expected = k**3 / 8
    assert bisection_bandwidth(g).bandwidth == expected
    # splitting the pods in half achieves it ...
    half = {v for v, d in g.nodes(data=True) if d.get("pod", k) < k // 2}
    assert (
        _cut_to(g, {h for h in hosts(g) if h in half}, {h for h in hosts(g) if h not in half})
        == expected
    )
    assert _heuristic(g) >= expected
    # ... and no balanced split does better (non-blocking): sample some
    rng = random.Random(0)
    for _ in range(15):
        a = set(rng.sample(hosts(g), len(hosts(g)) // 2))
        assert _cut_to(g, a, set(hosts(g)) - a) >= expected


def _slow_link_ring() -> nx.Graph:
    g = topologies.ring(6, bandwidth=1.0)
    g.edges[0, 1]["bandwidth"] = 0.25
    return g


def _asymmetric_ring() -> nx.DiGraph:
    g = nx.DiGraph()
    for i in range(6):
        g.add_edge(i, (i + 1) % 6, bandwidth=2.0, latency=1e-6)
        g.add_edge((i + 1) % 6, i, bandwidth=1.0, latency=1e-6)
    return topologies.from_graph(g)


def _two_switches() -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(["s", "t"], kind="switch")
    for i in range(5):
        g.add_edge(i, "s" if i < 3 else "t", bandwidth=1.0 + i)
    g.add_edge("s", "t", bandwidth=2.5)
    return topologies.from_graph(g)


SEARCHED_CASES = {
    "slow_link_ring": _slow_link_ring,
    "asymmetric_ring": _asymmetric_ring,
    "two_switches": _two_switches,
    "petersen": lambda: topologies.from_graph(nx.petersen_graph(), bandwidth=1.0),
    "random_regular": lambda: topologies.random_regular(10, 3, seed=5, bandwidth=1.0),
    "odd_custom": lambda: topologies.from_graph(nx.wheel_graph(7), bandwidth=3.0),
}


@pytest.mark.parametrize("name", list(SEARCHED_CASES))
def test_exhaustive_search_matches_reference(name):
    g = SEARCHED_CASES[name]()
    result = bisection_bandwidth(g)
    assert result.exact and result.method == "exhaustive search"
    expected = reference(g)
    assert result.bandwidth == pytest.approx(expected)
    assert _heuristic(g) >= expected - 1e-12  # the heuristic is an upper bound


def test_asymmetric_counts_the_weaker_direction():
    # A = {0, 1, 2} to B: one clockwise link (2.0) and one counter-clockwise link (1.0)
    assert bisection_bandwidth(_asymmetric_ring()).bandwidth == 3.0


def test_large_graphs_get_an_upper_bound():
    g = topologies.from_graph(nx.circulant_graph(40, [1, 2]), bandwidth=1.0)
    result = bisection_bandwidth(g)
    assert not result.exact and result.method.startswith("upper bound")
    assert result.bandwidth == 6.0  # two arcs: each boundary crosses one +1 and two +2 links


def test_modified_family_graphs_are_not_trusted():
    g = topologies.fat_tree(4, bandwidth=1.0)
    g.edges["agg0_0", "core0"]["bandwidth"] = 0.5
    assert bisection_bandwidth(g).method.startswith("upper bound")
    t = topologies.torus2d(3, 3, bandwidth=1.0)
    t.graph["note"] = "unknown parameter"
    assert bisection_bandwidth(t) == Bisection(8.0, True, "exhaustive search")


def test_one_host():
    assert bisection_bandwidth(topologies.star(1)).bandwidth is None
