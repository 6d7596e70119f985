"""Gossip graphs and mixing weights: who averages with whom, and with what weights.

A graph over ``n`` workers is an *adjacency*: ``{i: (j, ...)}`` lists the neighbours whose
parameters worker ``i`` mixes into its own (its in-neighbours), sorted, for nodes
``0 .. n-1``. Every graph here is undirected (``j in adj[i]`` iff ``i in adj[j]``) except
the time-varying :func:`one_peer_exponential`, where worker ``i`` receives from one peer and
sends to another; :func:`out_neighbours` says whom each worker sends to.

A mixing matrix ``W`` (float64) has ``W[i, j] > 0`` only for ``j in adj[i]`` or ``j == i``;
gossip replaces ``x_i`` by ``sum_j W[i, j] x_j``. Doubly stochastic weights keep the mean of
the replicas unchanged, and the distance to consensus shrinks by a factor of at most
``second_eigenvalue(W) ** 2`` per mixing step (for symmetric ``W``). :func:`mix` computes the
weighted sum in one fixed order so both backends produce bitwise equal parameters.

This module is pure maths on torch tensors: it imports neither networkx nor a backend.

Examples
--------
>>> adj = ring(4)
>>> adj
{0: (1, 3), 1: (0, 2), 2: (1, 3), 3: (0, 2)}
>>> W = metropolis_hastings(adj)
>>> check_doubly_stochastic(W)
>>> round(second_eigenvalue(W), 6)
0.333333
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any

import torch

__all__ = [
    "Adjacency",
    "bipartition",
    "check_doubly_stochastic",
    "complete",
    "degrees",
    "exponential",
    "from_edges",
    "is_symmetric",
    "metropolis_hastings",
    "mix",
    "one_peer_exponential",
    "one_peer_period",
    "out_neighbours",
    "ring",
    "second_eigenvalue",
    "torus",
    "uniform",
]

#: ``{worker index: sorted tuple of the neighbours it mixes}`` over nodes ``0 .. n-1``.
Adjacency = dict[int, tuple[int, ...]]


def _check_n(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"{name}={n!r} must be an integer >= 1 (the number of workers)")
    return int(n)


def _adjacency(n: int, neighbours: Any) -> Adjacency:
    """Build an adjacency from ``neighbours(i) -> iterable``, dropping self loops and
    duplicates (small rings and tori wrap onto the same neighbour twice)."""
    return {i: tuple(sorted({j % n for j in neighbours(i)} - {i})) for i in range(n)}


# -- graphs ---------------------------------------------------------------------------------
def ring(n: int) -> Adjacency:
    """Each worker's neighbours are the previous and the next one (mod ``n``).

    Examples
    --------
    >>> ring(3)
    {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    >>> ring(2), ring(1)
    ({0: (1,), 1: (0,)}, {0: ()})
    """
    n = _check_n(n)
    return _adjacency(n, lambda i: (i - 1, i + 1))


def _torus_shape(n: int) -> tuple[int, int]:
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    if rows < 2:
        raise ValueError(
            f"n={n} workers have no 2-D torus shape rows x cols with both >= 2 ({n} is "
            "prime or < 4); use graph='ring' or a composite number of workers"
        )
    return rows, n // rows


def torus(n: int) -> Adjacency:
    """A 2-D torus ``rows x cols`` (``rows`` the largest divisor of ``n`` not above
    ``sqrt(n)``); worker ``i`` sits at ``(i // cols, i % cols)`` and neighbours the four
    cells next to it, wrapping around.

    Examples
    --------
    >>> torus(6)[0]  # 2 x 3: the row above and below are the same cell
    (1, 2, 3)
    >>> len(torus(16)[5])
    4
    >>> torus(7)
    Traceback (most recent call last):
    ...
    ValueError: n=7 workers have no 2-D torus shape rows x cols with both >= 2 (7 is prime or < 4); use graph='ring' or a composite number of workers
    """
    n = _check_n(n)
    rows, cols = _torus_shape(n)

    def around(i: int) -> list[int]:
        r, c = divmod(i, cols)
        return [
            ((r - 1) % rows) * cols + c,
            ((r + 1) % rows) * cols + c,
            r * cols + (c - 1) % cols,
            r * cols + (c + 1) % cols,
        ]

    return _adjacency(n, around)


def exponential(n: int) -> Adjacency:
    """The static exponential graph: ``i`` neighbours ``i +- 2**k`` for every ``2**k < n``
    (degree about ``2 log2 n``).

    Examples
    --------
    >>> exponential(8)[0]
    (1, 2, 4, 6, 7)
    """
    n = _check_n(n)
    hops = [2**k for k in range(max(1, n.bit_length()) + 1) if 2**k < n]
    return _adjacency(n, lambda i: [i + h for h in hops] + [i - h for h in hops])


def one_peer_period(n: int) -> int:
    """How many steps the one-peer exponential graph takes to cycle: ``ceil(log2 n)``
    (at least 1).

    Examples
    --------
    >>> one_peer_period(8), one_peer_period(6), one_peer_period(1)
    (3, 3, 1)
    """
    n = _check_n(n)
    return max(1, (n - 1).bit_length())


def one_peer_exponential(n: int, t: int) -> Adjacency:
    """The time-varying one-peer exponential graph of Ying et al. (2021) at step ``t``:
    worker ``i`` mixes the parameters of ``(i + 2**(t mod tau)) % n`` only (and so sends to
    ``(i - 2**(t mod tau)) % n``), ``tau = one_peer_period(n)``. The graph is directed; with
    weights 1/2, ``tau`` consecutive steps average exactly when ``n`` is a power of two.

    Examples
    --------
    >>> one_peer_exponential(4, 0)
    {0: (1,), 1: (2,), 2: (3,), 3: (0,)}
    >>> one_peer_exponential(4, 3)[0]  # t mod 2 == 1: the peer 2 away
    (2,)
    """
    n = _check_n(n)
    if isinstance(t, bool) or not isinstance(t, Integral) or t < 0:
        raise ValueError(f"t={t!r} must be an integer >= 0 (the step)")
    hop = 2 ** (int(t) % one_peer_period(n))
    return _adjacency(n, lambda i: (i + hop,))


def complete(n: int) -> Adjacency:
    """Every worker neighbours every other one.

    Examples
    --------
    >>> complete(3)
    {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    """
    n = _check_n(n)
    return _adjacency(n, lambda i: range(n))


def _node(value: Any, n: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(
            f"graph node {value!r} is not an integer; nodes must be the worker indices "
            "0..n-1 (relabel with networkx.convert_node_labels_to_integers(graph))"
        )
    node = int(value)
    if node < 0 or (n is not None and node >= n):
        bound = "n-1" if n is None else str(n - 1)
        raise ValueError(f"graph node {node} is outside the worker indices 0..{bound}")
    return node


def from_edges(graph: Any, n: int | None = None) -> Adjacency:
    """A user's undirected graph as an adjacency, validated.

    Parameters
    ----------
    graph
        Anything with ``.edges()`` (a ``networkx.Graph``; its ``.nodes()`` too, if it has
        them), an adjacency mapping ``{i: neighbours}``, or an iterable of ``(i, j)`` pairs.
        Edges are undirected.
    n
        The number of workers; by default the number of nodes.

    Raises
    ------
    ValueError
        Nodes that are not ``0 .. n-1``, a self loop, or a graph that is not connected.

    Examples
    --------
    >>> from_edges([(0, 1), (1, 2)])
    {0: (1,), 1: (0, 2), 2: (1,)}
    >>> from_edges({0: [1], 1: [0], 2: [3], 3: [2]})
    Traceback (most recent call last):
    ...
    ValueError: graph is not connected: nodes [2, 3] cannot reach node 0; gossip would never reach consensus
    >>> from_edges([(0, 0), (0, 1)])
    Traceback (most recent call last):
    ...
    ValueError: graph has a self loop at node 0; remove it (mixing gives each worker its own weight)
    """
    if n is not None:
        n = _check_n(n)
    nodes: list[Any] = []
    if isinstance(graph, Mapping):
        nodes = list(graph)
        pairs: Iterable[Any] = [(i, j) for i, nbrs in graph.items() for j in nbrs]
    elif callable(getattr(graph, "edges", None)):
        if callable(getattr(graph, "nodes", None)):
            nodes = list(graph.nodes())
        pairs = graph.edges()
    elif isinstance(graph, Iterable) and not isinstance(graph, (str, bytes)):
        pairs = graph
    else:
        raise TypeError(
            f"graph={graph!r} is not a graph; pass an object with .edges() (networkx), an "
            "adjacency mapping {i: neighbours} or a list of (i, j) pairs"
        )
    edges = []
    for pair in pairs:
        try:
            i, j = pair[0], pair[1]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"graph edge {pair!r} is not an (i, j) pair") from None
        i, j = _node(i, n), _node(j, n)
        if i == j:
            raise ValueError(
                f"graph has a self loop at node {i}; remove it (mixing gives each worker its "
                "own weight)"
            )
        edges.append((i, j))
    seen = {_node(v, n) for v in nodes} | {v for e in edges for v in e}
    if not seen:
        raise ValueError("graph has no nodes; pass at least one worker")
    size = max(seen) + 1 if n is None else n
    missing = sorted(set(range(size)) - seen)
    if missing and n is None:
        raise ValueError(
            f"graph nodes must be 0..{size - 1} without gaps; {missing[:5]} are missing"
        )
    neighbours: dict[int, set[int]] = {i: set() for i in range(size)}
    for i, j in edges:
        neighbours[i].add(j)
        neighbours[j].add(i)
    adj = {i: tuple(sorted(v)) for i, v in neighbours.items()}
    unreached = sorted(set(adj) - _reachable(adj, 0))
    if unreached:
        raise ValueError(
            f"graph is not connected: nodes {unreached[:5]} cannot reach node 0; gossip "
            "would never reach consensus"
        )
    return adj


def _reachable(adj: Mapping[int, Sequence[int]], start: int) -> set[int]:
    seen, frontier = {start}, [start]
    while frontier:
        i = frontier.pop()
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                frontier.append(j)
    return seen


# -- properties -----------------------------------------------------------------------------
def out_neighbours(adj: Mapping[int, Sequence[int]]) -> Adjacency:
    """Whom each worker sends to: ``i`` sends to ``j`` when ``i in adj[j]`` (equal to
    ``adj`` for undirected graphs).

    Examples
    --------
    >>> out_neighbours(one_peer_exponential(4, 0))
    {0: (3,), 1: (0,), 2: (1,), 3: (2,)}
    """
    out: dict[int, list[int]] = {i: [] for i in adj}
    for j, sources in adj.items():
        for i in sources:
            out[i].append(j)
    return {i: tuple(sorted(v)) for i, v in out.items()}


def is_symmetric(adj: Mapping[int, Sequence[int]]) -> bool:
    """Whether the graph is undirected.

    Examples
    --------
    >>> is_symmetric(ring(5)), is_symmetric(one_peer_exponential(4, 0))
    (True, False)
    """
    return all(i in adj[j] for i, nbrs in adj.items() for j in nbrs)


def degrees(adj: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Each worker's number of neighbours (in-neighbours for a directed graph).

    Examples
    --------
    >>> degrees(from_edges([(0, 1), (0, 2)]))
    {0: 2, 1: 1, 2: 1}
    """
    return {i: len(nbrs) for i, nbrs in adj.items()}


def bipartition(adj: Mapping[int, Sequence[int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split an undirected connected graph's nodes into two sides with every edge between
    them: ``(side of node 0, other side)``, each sorted.

    Raises
    ------
    ValueError
        If the graph has an odd cycle (it is not bipartite).

    Examples
    --------
    >>> bipartition(ring(6))
    ((0, 2, 4), (1, 3, 5))
    >>> bipartition(ring(5))
    Traceback (most recent call last):
    ...
    ValueError: the graph is not bipartite (it has an odd cycle: neighbours 2 and 3 fall on the same side); pick a graph with two sides, e.g. a ring of an even number of workers
    """
    side = {0: 0}
    frontier = [0]
    while frontier:
        i = frontier.pop(0)
        for j in adj[i]:
            if j not in side:
                side[j] = 1 - side[i]
                frontier.append(j)
            elif side[j] == side[i]:
                a, b = sorted((i, j))
                raise ValueError(
                    f"the graph is not bipartite (it has an odd cycle: neighbours {a} and {b} "
                    "fall on the same side); pick a graph with two sides, e.g. a ring of an "
                    "even number of workers"
                )
    first = tuple(sorted(i for i, s in side.items() if s == 0))
    return first, tuple(sorted(i for i, s in side.items() if s == 1))


# -- weights --------------------------------------------------------------------------------
def _regular_degree(adj: Mapping[int, Sequence[int]]) -> int | None:
    """``d`` if every node has ``d`` in-neighbours and ``d`` out-neighbours, else None."""
    ins, outs = set(degrees(adj).values()), set(degrees(out_neighbours(adj)).values())
    return next(iter(ins)) if len(ins) == 1 and ins == outs else None


def _weights(adj: Mapping[int, Sequence[int]], weight: Any) -> torch.Tensor:
    n = len(adj)
    W = torch.zeros(n, n, dtype=torch.float64)
    for i, nbrs in adj.items():
        for j in nbrs:
            W[i, j] = weight(i, j)
        # The diagonal takes the rest, so each row sums to one exactly as the row is built.
        W[i, i] = 1.0 - float(W[i].sum())
    return W


def metropolis_hastings(adj: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """Metropolis-Hastings weights: ``W[i, j] = 1 / (1 + max(d_i, d_j))`` for neighbours,
    the rest of each row on the diagonal. Symmetric and doubly stochastic on any undirected
    graph, with no global knowledge but the neighbours' degrees.

    A directed graph is accepted when every node has ``d`` in- and ``d`` out-neighbours
    (the one-peer exponential graph): the rule then gives ``1 / (1 + d)``, doubly stochastic.

    Examples
    --------
    >>> metropolis_hastings(from_edges([(0, 1), (1, 2)]))
    tensor([[0.6667, 0.3333, 0.0000],
            [0.3333, 0.3333, 0.3333],
            [0.0000, 0.3333, 0.6667]], dtype=torch.float64)
    """
    if is_symmetric(adj):
        deg = degrees(adj)
        return _weights(adj, lambda i, j: 1.0 / (1 + max(deg[i], deg[j])))
    d = _regular_degree(adj)
    if d is None:
        raise ValueError(
            "adjacency is directed and not regular; Metropolis-Hastings weights need an "
            "undirected graph (or one where every node has d in- and d out-neighbours)"
        )
    return _weights(adj, lambda i, j: 1.0 / (1 + d))


def uniform(adj: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """Equal weights ``1 / (1 + d)`` for oneself and each of ``d`` neighbours, for a regular
    graph (every node with ``d`` in- and ``d`` out-neighbours), where they are doubly
    stochastic.

    Examples
    --------
    >>> uniform(ring(3))[0]
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    >>> uniform(from_edges([(0, 1), (1, 2)]))
    Traceback (most recent call last):
    ...
    ValueError: weights='uniform' needs a regular graph (every worker with the same number of neighbours); degrees here are [1, 2]; use weights='metropolis'
    """
    d = _regular_degree(adj)
    if d is None:
        found = sorted(set(degrees(adj).values()))
        raise ValueError(
            "weights='uniform' needs a regular graph (every worker with the same number of "
            f"neighbours); degrees here are {found}; use weights='metropolis'"
        )
    return _weights(adj, lambda i, j: 1.0 / (1 + d))


def check_doubly_stochastic(W: torch.Tensor, atol: float | None = None) -> None:
    """Raise ``ValueError`` unless ``W`` is square, non-negative, and its rows and columns
    each sum to one (within ``atol``: by default 1e-9 for float64, 1e-5 for other dtypes,
    whose own rounding is larger).

    Examples
    --------
    >>> check_doubly_stochastic(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    >>> check_doubly_stochastic(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    Traceback (most recent call last):
    ...
    ValueError: W is not doubly stochastic: column 0 sums to 1.5; use metropolis_hastings(adjacency) for weights that are
    """
    if W.dim() != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W has shape {tuple(W.shape)}; a mixing matrix is square")
    if atol is None:
        atol = 1e-9 if W.dtype == torch.float64 else 1e-5
    W = W.double()
    if (W < -atol).any():
        i, j = (W < -atol).nonzero()[0].tolist()
        raise ValueError(f"W is not doubly stochastic: W[{i}, {j}] = {float(W[i, j]):g} < 0")
    for axis, what in ((1, "row"), (0, "column")):
        sums = W.sum(dim=axis)
        bad = ((sums - 1).abs() > atol).nonzero()
        if len(bad):
            k = int(bad[0])
            raise ValueError(
                f"W is not doubly stochastic: {what} {k} sums to {float(sums[k]):.6g}; use "
                "metropolis_hastings(adjacency) for weights that are"
            )


def second_eigenvalue(W: torch.Tensor) -> float:
    """The largest modulus of ``W``'s eigenvalues other than the consensus eigenvalue 1
    (one copy of the eigenvalue closest to 1 is set aside). Gossip with ``W`` contracts the
    distance to consensus by ``second_eigenvalue(W) ** 2`` per step at worst (symmetric
    ``W``); ``1 - second_eigenvalue(W)`` is the spectral gap.

    Examples
    --------
    >>> second_eigenvalue(torch.full((4, 4), 0.25)) < 1e-12  # complete averaging
    True
    >>> second_eigenvalue(torch.eye(2))  # no mixing
    1.0
    """
    if W.shape[0] < 2:
        return 0.0
    values = torch.linalg.eigvals(W.double())
    consensus = int((values - 1).abs().argmin())
    rest = torch.cat([values[:consensus], values[consensus + 1 :]])
    return float(rest.abs().max())


# -- mixing ---------------------------------------------------------------------------------
def mix(
    own: torch.Tensor, neighbours: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """``weights[0] * own + weights[1] * neighbours[0] + ...``, added strictly in that order
    (each product rounded, then added), so the result is the same bits wherever it runs.

    Parameters
    ----------
    own
        This worker's parameters.
    neighbours
        The neighbours' parameters, in a fixed order (gossip uses ascending index).
    weights
        One weight for ``own``, then one per neighbour: a row of the mixing matrix.

    Examples
    --------
    >>> mix(torch.tensor([3.0]), [torch.tensor([0.0]), torch.tensor([6.0])], [1/3, 1/3, 1/3])
    tensor([3.])
    >>> mix(torch.tensor([1.0]), [torch.tensor([2.0])], [1.0])
    Traceback (most recent call last):
    ...
    ValueError: weights has 1 entries for 2 tensors; give one weight for own, then one per neighbour
    """
    if len(weights) != len(neighbours) + 1:
        raise ValueError(
            f"weights has {len(weights)} entries for {len(neighbours) + 1} tensors; give one "
            "weight for own, then one per neighbour"
        )
    out = own * float(weights[0])
    for tensor, weight in zip(neighbours, weights[1:]):
        # Multiply then add as two operations: a fused multiply-add would round differently
        # on builds or code paths that have it.
        out += tensor * float(weight)
    return out
