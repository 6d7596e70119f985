"""Least-latency paths between a topology's nodes by the tie-break rule of :mod:`sim.routing`.

:class:`ShortestPaths` holds a topology as index adjacency (node and link indices, latencies in
whole femtoseconds), peels stub hosts off a route's ends and runs the resumable, tie-broken
Dijkstra that gives ``single`` routing's one path. :mod:`sim.equal_cost` works on the same
adjacency for the modes that use every equal-cost path. Nodes are indices (position in
``g.nodes``), links are link ids; turning ranks into node indices and paths into routes is the
:class:`sim.routing.Router`'s job.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Hashable, Sequence

import numpy as np

__all__ = ["NoRouteError", "ShortestPaths"]

#: Links' latencies are summed in integer femtoseconds so that float noise cannot break ties.
_QUANTUM = 1e-15
#: Searches kept for resuming (one per source node; each holds at most one label per node).
_KEEP_SEARCHES = 256


class NoRouteError(LookupError):
    """Two nodes are not connected; :class:`sim.routing.Router` re-raises it as its
    ``NetworkError`` (this module stays below that one, so it cannot import it)."""

    def __init__(self, nodes: Sequence[Hashable], s: int, t: int) -> None:
        super().__init__(
            f"no route from {nodes[s]!r} to {nodes[t]!r}; "
            "connect them (check the topology with topologies.validate)"
        )


class ShortestPaths:
    """Index adjacency of a topology and its best paths by the tie-break rule.

    Parameters
    ----------
    nodes : sequence
        The topology's nodes in ``g.nodes`` order (a node's index is its position).
    links : sequence of (u, v)
        Directed links (node pairs); position ``i`` is link id ``i``.
    latency : np.ndarray
        Each link's latency (s).
    directed : bool
        Whether the topology is directed (then no node is a stub).
    down : collection of int, optional
        Link ids left out (links that are down): no path found crosses one.

    Attributes
    ----------
    index : dict
        Node -> node index.
    adj : list of list of (int, int, int)
        Per node index, ``(neighbour, link id, latency in fs)`` sorted by neighbour, stubs left
        out (see :meth:`peel`).

    Examples
    --------
    A ring of four nodes: of its two equal-cost paths from 0 to 2 the one through node 1
    wins (the smaller node-index sequence).

    >>> import numpy as np
    >>> links = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 0), (2, 1), (3, 2), (0, 3)]
    >>> p = ShortestPaths([0, 1, 2, 3], links, np.ones(8), directed=False)
    >>> p.best(0, 2), p.best(2, 0)
    ([0, 1], [5, 4])

    On a path 0 - 1 - 2 both ends are stubs: :meth:`peel` gives the whole route.

    >>> p = ShortestPaths([0, 1, 2], [(0, 1), (1, 2), (1, 0), (2, 1)], np.ones(4), False)
    >>> p.peel(0, 2), p.adj[1]
    (array([0, 1]), [])
    """

    def __init__(
        self,
        nodes: Sequence[Hashable],
        links: Sequence[tuple[Hashable, Hashable]],
        latency: np.ndarray,
        directed: bool,
        down: Collection[int] = (),
    ) -> None:
        # No per-link tuples of indices are kept: on a large fat tree tens of thousands more
        # objects cost a full garbage collection in the constructor (twice its time).
        self.nodes = nodes
        self.links = links
        self.index = {v: i for i, v in enumerate(nodes)}
        self._link_id: dict[tuple[Hashable, Hashable], int] | None = None  # built on first use
        index = self.index
        n = len(nodes)
        head = np.fromiter((index[u] for u, _ in links), dtype=np.int64, count=len(links))
        tail = np.fromiter((index[v] for _, v in links), dtype=np.int64, count=len(links))
        # Each link's reverse (v -> u), or -1: the stubs' and the trees' links back.
        key = head * n + tail
        order = np.argsort(key, kind="stable")
        pos = np.minimum(np.searchsorted(key[order], tail * n + head), max(len(links) - 1, 0))
        hit = key[order][pos] == tail * n + head if len(links) else np.zeros(0, dtype=bool)
        self._reverse = np.where(hit, order[pos] if len(links) else pos, -1).tolist()
        # Latencies in whole femtoseconds, rounded half to even as ``round`` rounds them.
        quanta = np.asarray(latency, dtype=float) / _QUANTUM
        if quanta.size and quanta.max() < 2.0**53:
            whole = np.rint(quanta).astype(np.int64).tolist()
        else:
            whole = [round(q) for q in quanta.tolist()]
        # Adjacency as index lists sorted by neighbour index: the search then meets candidate
        # paths in a fixed order, which keeps the whole computation deterministic.
        adj: list[list[tuple[int, int, int]]] = [[] for _ in nodes]
        for lid, (u, v, w) in enumerate(zip(head.tolist(), tail.tolist(), whole, strict=True)):
            if down and lid in down:
                continue
            adj[u].append((v, lid, w))
        for nbrs in adj:
            nbrs.sort()
        # A node of an undirected graph with one neighbour (a host on a switch) can end a
        # route but never carry one: searches leave such stubs out, so they never walk a
        # switch's thousands of hosts, and a stub's own route starts with its one link.
        stub = [not directed and len(nbrs) == 1 for nbrs in adj]
        # A stub's route leaves through its one neighbour: (neighbour, link out, link in).
        reverse = self._reverse
        self._parent = {
            u: (nbrs[0][0], nbrs[0][1], reverse[nbrs[0][1]])
            for u, nbrs in enumerate(adj)
            if stub[u]
        }
        self.adj = [[e for e in nbrs if not stub[e[0]]] for nbrs in adj]
        self._stub = stub
        self._directed = directed
        self._searches: dict[int, tuple] = {}  # resumable searches by source, oldest first
        # Where the switches form a forest, its one path per pair (built on first use).
        self._forest: tuple[list[int], list[int], list[int], list[int]] | None = None
        self._forest_known = False

    def peel(self, s: int, t: int) -> tuple[list[int], int, int, list[int]] | np.ndarray:
        """``(head links, s, t, tail links)`` with stub hosts peeled off both ends, or the
        whole route (link ids) where it has no switch-to-switch middle."""
        if s == t:
            return np.empty(0, dtype=np.int64)
        head: list[int] = []
        tail: list[int] = []
        out, back = self._parent.get(s), self._parent.get(t)
        if out is not None:
            if out[0] == t:
                return np.asarray([out[1]], dtype=np.int64)
            head, s = [out[1]], out[0]
        if back is not None:
            if back[0] == s:
                return np.asarray([*head, back[2]], dtype=np.int64)
            tail, t = [back[2]], back[0]
        return head, s, t, tail

    @property
    def link_id(self) -> dict[tuple[Hashable, Hashable], int]:
        """``(u, v)`` -> link id (built on first use: a fault or ``dmodk`` asks)."""
        if self._link_id is None:
            self._link_id = {uv: i for i, uv in enumerate(self.links)}
        return self._link_id

    def stub_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node index: its stub parent (-1 where it is no stub), the link out to it and
        the link in from it (-1 where none): :meth:`peel` over arrays."""
        n = len(self.nodes)
        parent, out, back = np.full(n, -1), np.full(n, -1), np.full(n, -1)
        for u, (p, lout, lin) in self._parent.items():
            parent[u], out[u], back[u] = p, lout, lin
        return parent, out, back

    @property
    def is_forest(self) -> bool:
        """Whether the live links between non-stub nodes form a forest (an undirected
        topology with no cycle among its switches: ``hierarchical``, ``star``, ``tree``).

        Then every pair has at most one simple path, so every routing mode takes it:
        :meth:`tree_path` finds it by walking up to the common ancestor instead of a
        Dijkstra, whose cost grows with the switches a search settles (all of a star's
        node switches, for each source).

        >>> import numpy as np
        >>> links = [(0, 1), (1, 2), (1, 0), (2, 1)]
        >>> ShortestPaths([0, 1, 2], links, np.ones(4), directed=False).is_forest
        True
        """
        if not self._forest_known:
            self._forest_known = True
            self._forest = None if self._directed else self._build_forest()
        return self._forest is not None

    def _build_forest(self) -> tuple[list[int], list[int], list[int], list[int]] | None:
        """``(parent, link up, link down, depth)`` per node index (the root is its own
        parent, depth 0; each tree gets its own root), or None where the switches have a
        cycle."""
        n = len(self.nodes)
        parent, up, down, depth = list(range(n)), [-1] * n, [-1] * n, [0] * n
        seen = [False] * n
        adj, stub, reverse = self.adj, self._stub, self._reverse
        for root in range(n):
            if seen[root] or stub[root]:
                continue
            seen[root] = True
            queue = [root]
            for u in queue:
                for v, lid, _ in adj[u]:
                    if stub[v]:
                        continue
                    if seen[v]:
                        if v != parent[u]:
                            return None  # a second way to reach v: a cycle
                        continue
                    seen[v] = True
                    parent[v], down[v], depth[v] = u, lid, depth[u] + 1
                    up[v] = reverse[lid]
                    queue.append(v)
        return parent, up, down, depth

    def tree_path(self, s: int, t: int) -> list[int]:
        """Link ids of the one path between non-stub nodes ``s`` and ``t`` of a forest
        (:attr:`is_forest` must be True), or raise :class:`NoRouteError` where they lie in
        different trees.

        A path 0 - 1 - 2 - 3 - 4 (the ends are stubs): the middle part from 1 to 3 and back.

        >>> import numpy as np
        >>> links = [(0, 1), (1, 2), (2, 3), (3, 4), (1, 0), (2, 1), (3, 2), (4, 3)]
        >>> p = ShortestPaths(list(range(5)), links, np.ones(8), directed=False)
        >>> p.is_forest, p.tree_path(1, 3), p.tree_path(3, 1)
        (True, [1, 2], [6, 5])
        """
        assert self.is_forest and self._forest is not None, "tree_path needs a forest"
        parent, up, down, depth = self._forest
        head: list[int] = []
        tail: list[int] = []
        u, v = s, t
        while depth[u] > depth[v]:
            head.append(up[u])
            u = parent[u]
        while depth[v] > depth[u]:
            tail.append(down[v])
            v = parent[v]
        while u != v:
            if parent[u] == u:  # two roots: different trees
                raise NoRouteError(self.nodes, s, t)
            head.append(up[u])
            tail.append(down[v])
            u, v = parent[u], parent[v]
        return head + tail[::-1]

    def best(self, s: int, t: int) -> list[int]:
        """Link ids of the best route between non-stub nodes ``s`` and ``t``.

        Labels (latency in fs, hops, node-index sequence) are ordered lexicographically;
        extending a label by one link preserves that order, so Dijkstra settles each node with
        its best label. The search from ``s`` stops once ``t`` is settled and is kept (for the
        :data:`_KEEP_SEARCHES` most recent sources) to resume for the next destination.

        Raises
        ------
        NoRouteError
            Where ``t`` cannot be reached from ``s``.
        """
        if s == t:
            return []
        if self.is_forest:
            return self.tree_path(s, t)
        state = self._searches.pop(s, None)
        if state is None:
            state = ({s: (0, 0, (s,))}, {}, [(0, 0, (s,), s)], set())
        self._searches[s] = state
        if len(self._searches) > _KEEP_SEARCHES:
            del self._searches[next(iter(self._searches))]
        best, via, heap, done = state
        while t not in done and heap:
            lat, hops, seq, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            for v, lid, w in self.adj[u]:
                if v in done:
                    continue
                label = (lat + w, hops + 1, seq + (v,))
                old = best.get(v)
                if old is None or label < old:
                    best[v] = label
                    # The link in and the node it leaves (settled: its own route is final),
                    # not the whole route: a route per node is O(n^2) for a search on a ring.
                    via[v] = (u, lid)
                    heapq.heappush(heap, (*label, v))
        if t not in done:
            raise NoRouteError(self.nodes, s, t)
        links = []
        while t != s:
            t, lid = via[t]
            links.append(lid)
        return links[::-1]
