import pytest

from topologies import TopologyError, describe, hosts, ring, switches


@pytest.mark.parametrize("n", range(1, 11))
def test_ring_structure(n):
    g = ring(n, bandwidth=2.0, latency=1.0)
    assert g.number_of_nodes() == n
    assert g.number_of_edges() == {1: 0, 2: 1}.get(n, n)
    assert switches(g) == []
    assert hosts(g) == list(range(n))
    if n >= 3:
        assert all(d == 2 for _, d in g.degree)
    summary = describe(g)
    assert summary.diameter_hops == n // 2
    assert summary.diameter_latency == pytest.approx(n // 2)
    expected = None if n == 1 else 2.0 if n == 2 else 4.0
    assert summary.bisection_bandwidth == expected
    assert summary.bisection_exact


def test_ring_attributes():
    g = ring(4, bandwidth="1Gbps", latency="2us")
    assert g.graph == {"family": "ring", "n": 4, "bandwidth": 1.25e8, "latency": 2e-6}
    assert g.nodes[3] == {"kind": "host", "rank": 3}
    assert g.edges[3, 0] == {"bandwidth": 1.25e8, "latency": 2e-6}


@pytest.mark.parametrize("n", [0, -1, 2.0, "3", None])
def test_ring_bad_n(n):
    with pytest.raises(TopologyError, match="^n must be an int >= 1"):
        ring(n)
