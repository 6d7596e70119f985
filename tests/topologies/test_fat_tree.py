import pytest

from topologies import TopologyError, describe, fat_tree, hosts, switches


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_counts(k):
    g = fat_tree(k, bandwidth=1.0, latency=1.0)
    assert len(hosts(g)) == k**3 // 4
    assert len(switches(g)) == 5 * k**2 // 4
    assert g.number_of_edges() == 3 * k**3 // 4
    assert all(g.degree(s) == k for s in switches(g))  # every switch uses all k ports
    assert all(g.degree(h) == 1 for h in hosts(g))
    layers = [g.nodes[s]["layer"] for s in switches(g)]
    assert layers.count("edge") == layers.count("agg") == k * k // 2
    assert layers.count("core") == k * k // 4


@pytest.mark.parametrize("k", [2, 4, 6])
def test_fat_tree_describe(k):
    summary = describe(fat_tree(k, bandwidth=1.0, latency=1.0))
    assert summary.diameter_hops == 6
    assert summary.diameter_latency == pytest.approx(6.0)
    assert summary.bisection_bandwidth == k**3 / 8
    assert summary.bisection_exact


@pytest.mark.parametrize("k", [4, 6])
def test_fat_tree_rank_order(k):
    g = fat_tree(k)
    half = k // 2
    for r in hosts(g):
        assert g.nodes[r]["rank"] == r
        assert g.nodes[r]["pod"] == r // half**2
        (edge,) = g[r]
        assert edge == f"edge{r // half**2}_{(r // half) % half}"
    # consecutive ranks share an edge switch, k/2 at a time
    assert set(g[0]) == set(g[half - 1]) != set(g[half])


def test_fat_tree_paths():
    g = fat_tree(4)
    assert sorted(g["agg1_0"], key=str) == ["core0", "core1", "edge1_0", "edge1_1"]
    assert g.graph == {"family": "fat_tree", "k": 4, "bandwidth": 12.5e9, "latency": 1e-6}


@pytest.mark.parametrize(
    ("k", "message"),
    [(3, "k must be even"), (0, "k must be an int >= 2"), (4.0, "k must be an int")],
)
def test_fat_tree_bad_k(k, message):
    with pytest.raises(TopologyError, match=message):
        fat_tree(k)
