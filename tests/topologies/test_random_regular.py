import networkx as nx
import pytest

from topologies import TopologyError, describe, hosts, random_regular


@pytest.mark.parametrize(("n", "degree"), [(1, 0), (4, 3), (8, 3), (10, 4), (16, 5)])
def test_random_regular_structure(n, degree):
    g = random_regular(n, degree, seed=3, bandwidth=1.0)
    assert g.number_of_nodes() == n
    assert g.number_of_edges() == n * degree // 2
    assert all(d == degree for _, d in g.degree)
    assert hosts(g) == list(range(n))
    assert g.graph == {
        "family": "random_regular",
        "n": n,
        "degree": degree,
        "seed": 3,
        "bandwidth": 1.0,
        "latency": 1e-6,
    }


def test_random_regular_is_deterministic():
    a, b = random_regular(20, 3, seed=7), random_regular(20, 3, seed=7)
    assert nx.utils.graphs_equal(a, b)
    assert list(a.edges) == list(b.edges)
    assert not nx.utils.graphs_equal(a, random_regular(20, 3, seed=8))


def test_random_regular_bisection_is_a_bound_for_large_graphs():
    summary = describe(random_regular(40, 3, seed=1, bandwidth=1.0))
    assert not summary.bisection_exact
    assert 0 < summary.bisection_bandwidth <= 40 * 3 / 2


@pytest.mark.parametrize(
    ("n", "degree", "message"),
    [
        (4, 4, "degree must be < n"),
        (5, 3, "n \\* degree even"),
        (0, 0, "^n must be an int"),
        (4, -1, "^degree must be an int >= 0"),
        (4, 1, "is disconnected; try another seed"),
        (3, 0, "is disconnected"),
    ],
)
def test_random_regular_errors(n, degree, message):
    with pytest.raises(TopologyError, match=message):
        random_regular(n, degree)
