import networkx as nx
import pytest

import topologies
from topologies import TopologySummary, describe


def test_describe_fields():
    s = describe(
        topologies.hierarchical(
            2,
            4,
            intra_bandwidth="300GB/s",
            intra_latency="1us",
            inter_bandwidth="100Gbps",
            inter_latency="2us",
        )
    )
    assert isinstance(s, TopologySummary)
    assert (s.family, s.directed, s.hosts, s.switches, s.links) == ("hierarchical", False, 8, 3, 10)
    assert (s.diameter_hops, s.diameter_latency) == (4, pytest.approx(6e-6))
    assert s.bisection_bandwidth == 4 * 12.5e9 and s.bisection_exact
    assert s.params["gpus_per_node"] == 4
    assert s.to_dict()["bisection_method"] == "closed form (hierarchical)"


def test_latency_diameter_takes_the_fastest_path():
    g = nx.Graph()
    g.add_edge(0, 1, latency=10.0)
    g.add_edge(0, "s", latency=1.0)
    g.add_edge("s", 1, latency=2.0)
    g.nodes["s"]["kind"] = "switch"
    s = describe(topologies.from_graph(g))
    assert (s.diameter_hops, s.diameter_latency) == (1, 3.0)
    assert s.family == "custom"


def test_directed_links_are_counted_per_direction():
    g = topologies.from_graph(nx.DiGraph([(0, 1), (1, 2), (2, 0)]), bandwidth=1.0)
    s = describe(g)
    assert s.directed and s.links == 3
    assert s.diameter_hops == 2  # 0 -> 2 goes the long way round
    assert ("links", "3 directed") in s.rows()


def test_rows_and_table():
    s = describe(topologies.ring(1))
    rows = dict(s.rows())
    assert rows["bisection bandwidth"] == "n/a (one host)"
    assert rows["diameter (latency)"] == "0ns"
    bound = describe(topologies.random_regular(40, 3, bandwidth=1.0))
    assert dict(bound.rows())["bisection bandwidth"].endswith("(upper bound)")
    text = str(describe(topologies.star(4)))
    assert text.splitlines()[0] == "family               star (n=4, bandwidth=100Gbps, latency=1us)"
    assert "bisection bandwidth  200Gbps" in text


def test_describe_validates():
    with pytest.raises(topologies.TopologyError):
        describe(nx.path_graph(3))


def _all_pairs(g):
    hs = set(topologies.hosts(g))
    hops = max(
        d for s in hs for t, d in nx.single_source_shortest_path_length(g, s).items() if t in hs
    )
    lat = max(
        d
        for s in hs
        for t, d in nx.single_source_dijkstra_path_length(g, s, weight="latency").items()
        if t in hs
    )
    return hops, lat


def _perturbed(g, seed=0):
    import random

    rng = random.Random(seed)
    for _, _, d in g.edges(data=True):
        d["latency"] = rng.choice([1.0, 2.0, 5.0])
    return g


@pytest.mark.parametrize(
    "make",
    [
        lambda: topologies.fat_tree(4, latency=1.0),
        lambda: _perturbed(topologies.fat_tree(4)),
        lambda: _perturbed(topologies.hierarchical(3, 3), seed=1),
        lambda: topologies.hierarchical(3, 2, intra_latency=1.0, inter_latency=7.0),
        lambda: _perturbed(topologies.torus2d(3, 5), seed=2),
        lambda: topologies.torus2d(3, 5, latency=1.0),
        lambda: _perturbed(topologies.star(6), seed=3),
        lambda: topologies.from_graph(
            nx.DiGraph([(0, "s"), ("s", 1), ("s", 2), (1, 0), (2, 0), ("s", 3), (3, "s")])
        ),
    ],
)
def test_symmetry_shortcuts_give_the_all_pairs_diameters(make):
    g = make()
    s = describe(g)
    hops, latency = _all_pairs(g)
    assert (s.diameter_hops, s.diameter_latency) == (hops, pytest.approx(latency))
