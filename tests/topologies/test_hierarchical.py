import pytest

from topologies import TopologyError, describe, hierarchical, hosts, switches


@pytest.mark.parametrize(("nodes", "gpus"), [(1, 1), (1, 4), (2, 1), (2, 8), (4, 4), (3, 2)])
def test_hierarchical_structure(nodes, gpus):
    g = hierarchical(
        nodes, gpus, intra_bandwidth=10.0, intra_latency=1.0, inter_bandwidth=1.0, inter_latency=5.0
    )
    assert len(hosts(g)) == nodes * gpus
    assert switches(g) == [f"node{i}" for i in range(nodes)] + ["spine"]
    assert g.number_of_edges() == nodes * (gpus + 1)
    for r in hosts(g):
        assert g.nodes[r] == {"kind": "host", "rank": r, "node": r // gpus}
        assert list(g[r]) == [f"node{r // gpus}"]
        assert g.edges[r, f"node{r // gpus}"] == {"bandwidth": 10.0, "latency": 1.0}
    for i in range(nodes):
        assert g.edges[f"node{i}", "spine"] == {"bandwidth": 1.0 * gpus, "latency": 5.0}
    summary = describe(g)
    hops, latency = (4, 12.0) if nodes > 1 else ((2, 2.0) if gpus > 1 else (0, 0.0))
    assert (summary.diameter_hops, summary.diameter_latency) == (hops, pytest.approx(latency))


def test_oversubscription_shrinks_uplinks():
    g = hierarchical(2, 8, inter_bandwidth="100Gbps", oversubscription=4)
    assert g.edges["node1", "spine"]["bandwidth"] == 8 * 12.5e9 / 4
    assert g.graph["oversubscription"] == 4.0


def test_hierarchical_defaults_and_aliases():
    g = hierarchical(2, 2)
    assert g.graph == {
        "family": "hierarchical",
        "nodes": 2,
        "gpus_per_node": 2,
        "intra_bandwidth": 300e9,
        "intra_latency": 5e-7,
        "inter_bandwidth": 12.5e9,
        "inter_latency": 1e-6,
        "oversubscription": 1.0,
    }
    h = hierarchical(2, 2, bandwidth="200Gbps", latency="3us")
    assert (h.graph["inter_bandwidth"], h.graph["inter_latency"]) == (25e9, 3e-6)
    same = hierarchical(2, 2, bandwidth="200Gbps", inter_bandwidth="25GB/s")
    assert same.graph["inter_bandwidth"] == 25e9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "^nodes must be an int >= 1"),
        ({"gpus_per_node": 0}, "^gpus_per_node must be an int >= 1"),
        ({"oversubscription": 0}, "^oversubscription must be a positive number"),
        ({"oversubscription": float("inf")}, "^oversubscription must be a positive number"),
        ({"oversubscription": "2"}, "^oversubscription must be a positive number"),
        ({"inter_bandwidth": "1Gbps", "bandwidth": "2Gbps"}, "disagree; bandwidth is an alias"),
        ({"inter_latency": 1.0, "latency": 2.0}, "^inter_latency=1.0 and latency=2.0 disagree"),
    ],
)
def test_hierarchical_errors(kwargs, message):
    args = {"nodes": 2, "gpus_per_node": 2, **kwargs}
    with pytest.raises(TopologyError, match=message):
        hierarchical(**args)


def test_hierarchical_bad_units_name_the_parameter():
    with pytest.raises(ValueError, match="^intra_latency: bad time '1 usec'"):
        hierarchical(2, 2, intra_latency="1 usec")
