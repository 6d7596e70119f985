import pytest

from topologies import TopologyError, describe, fully_connected, hosts


@pytest.mark.parametrize("n", range(1, 10))
def test_fully_connected_structure(n):
    g = fully_connected(n, bandwidth=1.0)
    assert g.number_of_nodes() == n
    assert g.number_of_edges() == n * (n - 1) // 2
    assert hosts(g) == list(range(n))
    assert all(d == n - 1 for _, d in g.degree)
    summary = describe(g)
    assert summary.switches == 0
    assert summary.diameter_hops == (0 if n == 1 else 1)
    assert summary.bisection_bandwidth == (None if n == 1 else (n // 2) * ((n + 1) // 2))


def test_fully_connected_attributes():
    g = fully_connected(3, latency="5ns")
    assert g.graph == {"family": "fully_connected", "n": 3, "bandwidth": 12.5e9, "latency": 5e-9}


def test_fully_connected_bad_n():
    with pytest.raises(TopologyError, match="^n must be an int"):
        fully_connected(-2)
