"""Gossip graphs and mixing weights against networkx, numpy and the consensus theory."""

import math

import networkx as nx
import numpy as np
import pytest
import torch

from strategies.graphs import (
    bipartition,
    complete,
    degrees,
    exponential,
    from_edges,
    is_symmetric,
    one_peer_exponential,
    one_peer_period,
    out_neighbours,
    ring,
    torus,
)
from strategies.mixing import (
    check_doubly_stochastic,
    metropolis_hastings,
    mix,
    second_eigenvalue,
    uniform,
)

IRREGULAR = {
    "path": nx.path_graph(5),
    "barabasi_albert": nx.barabasi_albert_graph(12, 2, seed=1),
    "lollipop": nx.lollipop_graph(4, 3),
    "star": nx.star_graph(6),
}


def edge_set(adj):
    return {frozenset((i, j)) for i, nbrs in adj.items() for j in nbrs}


def consensus(X):
    """Mean squared distance of the rows to their mean."""
    return float(((X - X.mean(0)) ** 2).sum(1).mean())


def mix_all(adj, W, X):
    """One gossip step for every node with :func:`mix`."""
    return torch.stack(
        [
            mix(X[i], [X[j] for j in adj[i]], [float(W[i, i])] + [float(W[i, j]) for j in adj[i]])
            for i in adj
        ]
    )


# -- graphs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 4, 7, 10])
def test_ring_and_complete_equal_networkx(n):
    assert edge_set(ring(n)) == {frozenset(e) for e in nx.cycle_graph(n).edges()}
    assert edge_set(complete(n)) == {frozenset(e) for e in nx.complete_graph(n).edges()}
    assert set(degrees(ring(n)).values()) == {2}
    assert set(degrees(complete(n)).values()) == {n - 1}


@pytest.mark.parametrize("n,shape", [(16, (4, 4)), (12, (3, 4)), (6, (2, 3)), (8, (2, 4))])
def test_torus_is_the_periodic_grid_of_the_near_square_shape(n, shape):
    rows, cols = shape
    grid = nx.grid_2d_graph(rows, cols, periodic=True)
    expected = {frozenset((a * cols + b, c * cols + d)) for (a, b), (c, d) in grid.edges()}
    assert edge_set(torus(n)) == expected
    # A side of 2 wraps onto the same neighbour: degree 3 instead of 4.
    assert set(degrees(torus(n)).values()) == {4 if min(shape) > 2 else 3}


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_torus_refuses_worlds_without_a_two_dimensional_shape(n):
    with pytest.raises(ValueError, match=f"n={n} workers have no 2-D torus shape"):
        torus(n)


@pytest.mark.parametrize("n", [4, 8, 16, 32])
def test_exponential_graph_degree_on_powers_of_two(n):
    # i +- 2^k for 2^k < n: 2 log2(n) hops, of which +n/2 and -n/2 coincide.
    assert set(degrees(exponential(n)).values()) == {2 * int(math.log2(n)) - 1}
    hops = {(j - 0) % n for j in exponential(n)[0]}
    assert hops == {2**k for k in range(int(math.log2(n)))} | {
        n - 2**k for k in range(int(math.log2(n)))
    }


@pytest.mark.parametrize("n", [4, 8, 16])
def test_one_peer_exponential_averages_exactly_over_one_period(n):
    # Ying et al. (2021): with weights 1/2, log2(n) consecutive one-peer graphs multiply to
    # the exact average J / n.
    tau = one_peer_period(n)
    assert tau == int(math.log2(n))
    product = torch.eye(n, dtype=torch.float64)
    for t in range(tau):
        adj = one_peer_exponential(n, t)
        assert set(degrees(adj).values()) == set(degrees(out_neighbours(adj)).values()) == {1}
        assert adj[0] == (2**t,)
        W = metropolis_hastings(adj)
        check_doubly_stochastic(W)
        product = W @ product
    torch.testing.assert_close(product, torch.full((n, n), 1 / n, dtype=torch.float64))
    assert one_peer_exponential(n, tau) == one_peer_exponential(n, 0)  # periodic


def test_from_edges_accepts_networkx_mappings_and_pairs_alike():
    g = nx.barabasi_albert_graph(10, 2, seed=3)
    adj = from_edges(g)
    assert edge_set(adj) == {frozenset(e) for e in g.edges()}
    assert from_edges({i: list(g[i]) for i in g}) == adj
    assert from_edges(list(g.edges())) == adj
    assert from_edges([(1, 0)], n=2) == {0: (1,), 1: (0,)}


@pytest.mark.parametrize(
    "graph,match",
    [
        (nx.grid_2d_graph(2, 2), r"graph node \(0, 0\) is not an integer.*convert_node_labels"),
        (nx.Graph([(0, 1), (1, 1)]), "graph has a self loop at node 1"),
        (nx.Graph([(0, 1), (2, 3)]), r"graph is not connected: nodes \[2, 3\]"),
        ([(0, 1), (1, 3)], r"graph nodes must be 0..3 without gaps; \[2\] are missing"),
        ([(0, -1)], "graph node -1 is outside"),
        ([(0, 1, 2)], None),  # an (i, j, data) triple is fine: networkx gives those
    ],
)
def test_from_edges_errors_name_the_graph(graph, match):
    if match is None:
        assert from_edges(graph) == {0: (1,), 1: (0,)}
        return
    with pytest.raises(ValueError, match=match):
        from_edges(graph)


def test_from_edges_with_a_size_catches_isolated_workers_and_out_of_range_nodes():
    with pytest.raises(ValueError, match="not connected"):
        from_edges([(0, 1)], n=3)
    with pytest.raises(ValueError, match=r"outside the worker indices 0..1"):
        from_edges([(0, 2)], n=2)
    with pytest.raises(TypeError, match="graph=3 is not a graph"):
        from_edges(3)


def test_bipartition_splits_even_rings_and_tori_and_refuses_odd_cycles():
    for adj in (ring(8), torus(16), from_edges(nx.star_graph(5))):
        a, b = bipartition(adj)
        assert sorted(a + b) == list(adj)
        assert all((i in a) != (j in a) for i, nbrs in adj.items() for j in nbrs)
    for adj in (ring(7), torus(12), exponential(8), complete(3)):  # 3 x 4 torus: odd side
        with pytest.raises(ValueError, match="not bipartite"):
            bipartition(adj)


# -- weights ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(IRREGULAR))
def test_metropolis_weights_follow_the_rule_and_are_symmetric_doubly_stochastic(name):
    g = IRREGULAR[name]
    W = metropolis_hastings(from_edges(g))
    expected = np.zeros((len(g), len(g)))
    for i, j in g.edges():
        expected[i, j] = expected[j, i] = 1 / (1 + max(g.degree[i], g.degree[j]))
    np.fill_diagonal(expected, 1 - expected.sum(1))
    np.testing.assert_allclose(W.numpy(), expected, rtol=0, atol=1e-15)
    assert torch.equal(W, W.T)
    check_doubly_stochastic(W, atol=1e-12)
    assert (W >= 0).all()


@pytest.mark.parametrize("adj", [ring(6), torus(9), exponential(8), complete(5)])
def test_uniform_weights_on_regular_graphs_equal_metropolis(adj):
    d = len(adj[0])
    W = uniform(adj)
    assert torch.allclose(W, metropolis_hastings(adj), atol=1e-15)
    assert torch.allclose(W.diagonal(), torch.full((len(adj),), 1 / (1 + d), dtype=W.dtype))
    check_doubly_stochastic(W)


def test_uniform_refuses_irregular_graphs_and_metropolis_irregular_directed_ones():
    with pytest.raises(ValueError, match="weights='uniform' needs a regular graph"):
        uniform(from_edges(nx.star_graph(3)))
    with pytest.raises(ValueError, match="directed and not regular"):
        metropolis_hastings({0: (1, 2), 1: (0,), 2: (0, 1)})
    assert is_symmetric(ring(4)) and not is_symmetric(one_peer_exponential(8, 1))


@pytest.mark.parametrize(
    "W,match",
    [
        (torch.tensor([[0.5, 0.5], [0.2, 0.8]]), "column 0 sums to 0.7"),
        (torch.tensor([[0.6, 0.5], [0.4, 0.5]]), "row 0 sums to 1.1"),
        (torch.tensor([[1.5, -0.5], [-0.5, 1.5]]), r"W\[0, 1\] = -0.5 < 0"),
        (torch.ones(2, 3), r"shape \(2, 3\)"),
    ],
)
def test_check_doubly_stochastic_refuses(W, match):
    with pytest.raises(ValueError, match=match):
        check_doubly_stochastic(W)


@pytest.mark.parametrize(
    "adj",
    [ring(8), torus(12), exponential(10), from_edges(IRREGULAR["barabasi_albert"])]
    + [one_peer_exponential(6, t) for t in range(3)],
    ids=["ring", "torus", "exponential", "irregular", "one-peer-0", "one-peer-1", "one-peer-2"],
)
def test_second_eigenvalue_equals_numpys(adj):
    W = metropolis_hastings(adj)
    moduli = sorted(np.abs(np.linalg.eigvals(W.numpy())), reverse=True)
    assert moduli[0] == pytest.approx(1.0, abs=1e-12)
    assert second_eigenvalue(W) == pytest.approx(moduli[1], abs=1e-10)


def test_second_eigenvalue_of_a_ring_is_the_closed_form():
    n = 8  # circulant: eigenvalues 1/3 + 2/3 cos(2 pi k / n)
    assert second_eigenvalue(metropolis_hastings(ring(n))) == pytest.approx(
        1 / 3 + 2 / 3 * math.cos(2 * math.pi / n), abs=1e-12
    )


# -- mixing -------------------------------------------------------------------------------------
def test_mix_is_the_weighted_sum_in_a_fixed_order():
    g = torch.Generator().manual_seed(0)
    own, a, b = (torch.randn(1000, generator=g) for _ in range(3))
    weights = [0.5, 0.3, 0.2]
    expected = own * 0.5
    expected = expected + a * 0.3
    expected = expected + b * 0.2
    assert torch.equal(mix(own, [a, b], weights), expected)
    assert torch.equal(own, torch.randn(1000, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="weights has 2 entries for 3 tensors"):
        mix(own, [a, b], [0.5, 0.5])


@pytest.mark.parametrize(
    "adj", [ring(10), torus(16), exponential(12), from_edges(IRREGULAR["lollipop"])]
)
def test_mixing_contracts_consensus_by_at_most_lambda2_squared(adj):
    W = metropolis_hastings(adj)
    rate = second_eigenvalue(W) ** 2
    X = torch.randn(len(adj), 50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mean = X.mean(0)
    for _ in range(20):
        Y = mix_all(adj, W, X)
        torch.testing.assert_close(Y, W @ X)  # the same maths as the matrix product
        torch.testing.assert_close(Y.mean(0), mean)  # doubly stochastic: the mean stays
        assert consensus(Y) <= rate * consensus(X) * (1 + 1e-9)
        X = Y


@pytest.mark.parametrize("adj", [ring(10), torus(16), from_edges(IRREGULAR["barabasi_albert"])])
def test_mixing_contracts_the_second_eigenvector_by_exactly_lambda2_squared(adj):
    W = metropolis_hastings(adj)
    values, vectors = np.linalg.eigh(W.numpy())  # symmetric: real, ascending
    second = int(np.argsort(np.abs(values))[-2])
    v = torch.from_numpy(vectors[:, second])
    X = v[:, None] * torch.linspace(-1, 1, 7, dtype=torch.float64)[None, :] + 3.0
    for _ in range(5):
        Y = mix_all(adj, W, X)
        assert consensus(Y) / consensus(X) == pytest.approx(second_eigenvalue(W) ** 2, rel=1e-9)
        X = Y
