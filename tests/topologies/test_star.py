import pytest

from topologies import TopologyError, describe, hosts, star, switches


@pytest.mark.parametrize("n", range(1, 10))
def test_star_structure(n):
    g = star(n, bandwidth=1.0, latency=0.5)
    assert g.number_of_nodes() == n + 1
    assert g.number_of_edges() == n
    assert switches(g) == ["s0"]
    assert hosts(g) == list(range(n))
    assert g.degree("s0") == n
    assert all(g.degree(h) == 1 for h in hosts(g))
    summary = describe(g)
    assert (summary.hosts, summary.switches, summary.links) == (n, 1, n)
    assert summary.diameter_hops == (0 if n == 1 else 2)
    assert summary.diameter_latency == pytest.approx(0 if n == 1 else 1.0)
    assert summary.bisection_bandwidth == (None if n == 1 else n // 2)


def test_star_attributes():
    g = star(3, bandwidth="25GB/s", latency="3us")
    assert g.graph == {"family": "star", "n": 3, "bandwidth": 25e9, "latency": 3e-6}
    assert g.nodes["s0"] == {"kind": "switch"}


def test_star_bad_n():
    with pytest.raises(TopologyError, match="n must be an int >= 1, got 0"):
        star(0)
