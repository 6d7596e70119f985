import pytest

from topologies import TopologyError, describe, hosts, torus2d


@pytest.mark.parametrize(("rows", "cols"), [(3, 3), (3, 4), (4, 4), (5, 3), (4, 6)])
def test_torus_structure(rows, cols):
    g = torus2d(rows, cols, bandwidth=1.0, latency=1.0)
    n = rows * cols
    assert g.number_of_nodes() == n
    assert g.number_of_edges() == 2 * n
    assert all(d == 4 for _, d in g.degree)
    assert hosts(g) == list(range(n))
    summary = describe(g)
    assert summary.diameter_hops == rows // 2 + cols // 2
    assert summary.diameter_latency == pytest.approx(rows // 2 + cols // 2)
    k1, k2 = sorted((rows, cols))
    assert summary.bisection_bandwidth == (2 * k1 if k2 % 2 == 0 else 2 * k1 + 2)


@pytest.mark.parametrize(
    ("rows", "cols", "edges", "degree"),
    [
        (1, 1, 0, {0}),
        (1, 2, 1, {1}),
        (1, 5, 5, {2}),
        (2, 2, 4, {2}),
        (2, 3, 9, {3}),
        (5, 1, 5, {2}),
    ],
)
def test_degenerate_tori_have_no_parallel_links(rows, cols, edges, degree):
    g = torus2d(rows, cols)
    assert g.number_of_edges() == edges
    assert {d for _, d in g.degree} == degree


def test_torus_coordinates():
    g = torus2d(2, 3)
    assert g.nodes[4] == {"kind": "host", "rank": 4, "row": 1, "col": 1}
    assert sorted(g[0]) == [1, 2, 3]
    assert g.graph == {
        "family": "torus2d",
        "rows": 2,
        "cols": 3,
        "bandwidth": 12.5e9,
        "latency": 1e-6,
    }


def test_torus_bad_shape():
    with pytest.raises(TopologyError, match="^cols must be an int >= 1, got 0"):
        torus2d(3, 0)
