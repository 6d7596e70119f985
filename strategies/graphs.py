"""Gossip communication graphs over ``n`` workers: who mixes with whom.

A graph is an *adjacency*: ``{i: (j, ...)}`` lists the neighbours whose parameters worker
``i`` mixes into its own (its in-neighbours), sorted, for nodes ``0 .. n-1``. Every graph
here is undirected (``j in adj[i]`` iff ``i in adj[j]``) except the time-varying
:func:`one_peer_exponential`, where worker ``i`` receives from one peer and sends to
another; :func:`out_neighbours` says whom each worker sends to. The weights on a graph are
:mod:`strategies.mixing`'s.

Pure Python: it imports neither networkx nor a backend (a user's ``networkx`` graph is read
through its ``edges()``).

Examples
--------
>>> ring(4)
{0: (1, 3), 1: (0, 2), 2: (1, 3), 3: (0, 2)}
>>> bipartition(ring(4))
((0, 2), (1, 3))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any

__all__ = [
    "Adjacency",
    "bipartition",
    "complete",
    "degrees",
    "exponential",
    "from_edges",
    "is_symmetric",
    "one_peer_exponential",
    "one_peer_period",
    "out_neighbours",
    "ring",
    "torus",
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
