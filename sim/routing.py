"""Routes between hosts: directed link indices, shortest path by latency, deterministic ties.

A :class:`Router` numbers the directed links of a topology (an undirected edge is two links,
one per direction, each with the edge's full capacity) and finds the route of a host pair on
demand. Only the pairs a simulation asks for are routed (no all-pairs table): hosts hanging off
one switch are peeled off, the switch-to-switch part is found by a Dijkstra from the source
that stops as soon as the destination is settled and resumes from there for the next
destination of the same source, and every route is cached.

Tie-break rule: among routes of least total latency, the one with the fewest hops wins, then
the lexicographically smallest sequence of node indices, where a node's index is its position
in ``g.nodes`` order. Each link's latency is rounded to a whole femtosecond before summing, so
route latencies compare exactly and float rounding noise cannot break (or fake) a tie.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

import networkx as nx
import numpy as np

__all__ = ["NetworkError", "Router"]

#: Links' latencies are summed in integer femtoseconds so that float noise cannot break ties.
_QUANTUM = 1e-15
#: Searches kept for resuming (one per source node; each holds at most one label per node).
_KEEP_SEARCHES = 256


class NetworkError(ValueError):
    """A bad argument to the network simulator; the one-line message names it and the fix."""


class Router:
    """Directed links and cached host-to-host routes of one topology.

    Parameters
    ----------
    topology : nx.Graph or nx.DiGraph
        A validated topology (see :func:`topologies.validate`).
    efficiency : float
        Payload fraction of a link's bandwidth for links without their own ``efficiency``
        attribute (protocol headers: TCP/IP over Ethernet carries about 0.95).

    Attributes
    ----------
    links : list of (u, v)
        Directed links; position ``i`` is link index ``i``.
    capacity, latency : np.ndarray
        Per-link payload bandwidth (bytes/s: ``bandwidth`` x efficiency) and latency (s).
    hosts : list
        Host nodes in rank order.

    Examples
    --------
    >>> import topologies
    >>> r = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
    >>> rid = r.route(0, 2)
    >>> [r.links[i] for i in r.route_links[rid]]
    [(0, 's0'), ('s0', 2)]
    >>> float(r.route_latency[rid]), float(r.route_bottleneck[rid])
    (2e-06, 1000000000.0)
    """

    def __init__(self, topology: nx.Graph, efficiency: float = 1.0) -> None:
        self.graph = topology
        self.hosts: list[Hashable] = sorted(
            (v for v, k in topology.nodes(data="kind") if k == "host"),
            key=lambda v: topology.nodes[v]["rank"],
        )
        self.n_hosts = len(self.hosts)
        self._index = {v: i for i, v in enumerate(topology.nodes)}
        self._nodes = list(topology.nodes)
        edges = list(topology.edges(data=True))
        if not topology.is_directed():
            edges = edges + [(v, u, d) for u, v, d in edges]
        self.links: list[tuple[Hashable, Hashable]] = [(u, v) for u, v, _ in edges]
        # What a link carries of payload: its rate less the protocols' framing (a link's own
        # ``efficiency``, else the network's). Every rate, load and utilisation is in payload.
        self.capacity = np.array(
            [float(d["bandwidth"]) * float(d.get("efficiency", efficiency)) for *_, d in edges],
            dtype=float,
        )
        self.latency = np.array([float(d["latency"]) for *_, d in edges], dtype=float)
        self._link_id = {uv: i for i, uv in enumerate(self.links)}
        # Adjacency as index lists sorted by neighbour index: the search then meets candidate
        # paths in a fixed order, which keeps the whole computation deterministic.
        self._adj: list[list[tuple[int, int, int]]] = [[] for _ in self._nodes]
        for lid, (u, v) in enumerate(self.links):
            iu, iv = self._index[u], self._index[v]
            self._adj[iu].append((iv, lid, round(self.latency[lid] / _QUANTUM)))
        for nbrs in self._adj:
            nbrs.sort()
        # A node of an undirected graph with one neighbour (a host on a switch) can end a
        # route but never carry one: searches leave such stubs out, so they never walk a
        # switch's thousands of hosts, and a stub's own route starts with its one link.
        directed = topology.is_directed()
        stub = [not directed and len(nbrs) == 1 for nbrs in self._adj]
        # A stub's route leaves through its one neighbour: (neighbour, link out, link in).
        self._parent = {
            u: (nbrs[0][0], nbrs[0][1], self._link_id[(self._nodes[nbrs[0][0]], self._nodes[u])])
            for u, nbrs in enumerate(self._adj)
            if stub[u]
        }
        self._adj = [[e for e in nbrs if not stub[e[0]]] for nbrs in self._adj]
        self._searches: dict[int, tuple] = {}  # resumable searches by source, oldest first
        self.route_links: list[np.ndarray] = []
        # Per-route arrays grow by doubling; the properties expose the filled prefix.
        self._lat = np.empty(64)
        self._bw = np.empty(64)
        self._hops = np.empty(64, dtype=np.int64)
        self._pair_route: dict[tuple[int, int], int] = {}
        # Vectorised pair lookup: sorted keys src*n+dst -> route id, rebuilt when routes are added.
        self._keys = np.empty(0, dtype=np.int64)
        self._vals = np.empty(0, dtype=np.int64)

    @property
    def route_latency(self) -> np.ndarray:
        """Total latency of each route, by route id (a read-only view)."""
        return self._lat[: len(self.route_links)]

    @property
    def route_bottleneck(self) -> np.ndarray:
        """Smallest link capacity of each route, by route id (inf for an empty route)."""
        return self._bw[: len(self.route_links)]

    @property
    def route_hops(self) -> np.ndarray:
        """Number of links of each route, by route id (0 from a host to itself)."""
        return self._hops[: len(self.route_links)]

    def route(self, src: int, dst: int) -> int:
        """Return the route id from rank ``src`` to rank ``dst`` (computed once, then cached)."""
        key = (src, dst)
        rid = self._pair_route.get(key)
        if rid is None:
            links = self._host_route(self._index[self.hosts[src]], self._index[self.hosts[dst]])
            rid = len(self.route_links)
            if rid == self._lat.size:
                self._lat = np.resize(self._lat, 2 * rid)
                self._bw = np.resize(self._bw, 2 * rid)
                self._hops = np.resize(self._hops, 2 * rid)
            self.route_links.append(links)
            self._lat[rid] = sum(self.latency[links].tolist())
            self._bw[rid] = self.capacity[links].min() if links.size else np.inf
            self._hops[rid] = links.size
            self._pair_route[key] = rid
        return rid

    def routes(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`route` over rank arrays; returns an int64 array of route ids.

        Examples
        --------
        >>> import topologies
        >>> r = Router(topologies.ring(4, bandwidth=1.0, latency=1.0))
        >>> r.routes(np.array([0, 1, 0]), np.array([1, 2, 2])).tolist()
        [0, 1, 2]
        >>> [r.links[i] for i in r.route_links[2]]
        [(0, 1), (1, 2)]
        """
        q = src.astype(np.int64) * self.n_hosts + dst.astype(np.int64)
        pos = np.searchsorted(self._keys, q)
        pos_c = np.minimum(pos, max(self._keys.size - 1, 0))
        found = (
            (pos < self._keys.size) & (self._keys[pos_c] == q)
            if self._keys.size
            else np.zeros(q.size, dtype=bool)
        )
        if found.all():
            return self._vals[pos_c]
        # Route the missing pairs one by one, then rebuild the sorted table once.
        for s, d in zip(src[~found].tolist(), dst[~found].tolist(), strict=True):
            self.route(s, d)
        keys = np.fromiter(
            (s * self.n_hosts + d for s, d in self._pair_route),
            dtype=np.int64,
            count=len(self._pair_route),
        )
        vals = np.fromiter(self._pair_route.values(), dtype=np.int64, count=len(keys))
        order = np.argsort(keys)
        self._keys, self._vals = keys[order], vals[order]
        return self._vals[np.searchsorted(self._keys, q)]

    def _host_route(self, s: int, t: int) -> np.ndarray:
        """Best route between node indices ``s`` and ``t`` (see the module rule).

        A stub's every route starts (or ends) with its one link, and with the first and last
        nodes fixed the tie-break order is that of the middle part; so stubs are peeled off and
        only the switch-to-switch middle is searched, shared by every host on those switches.
        """
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
        return np.asarray([*head, *self._search(s, t), *tail], dtype=np.int64)

    def _search(self, s: int, t: int) -> list[int]:
        """Link ids of the best route between non-stub nodes ``s`` and ``t``.

        Labels (latency in fs, hops, node-index sequence) are ordered lexicographically;
        extending a label by one link preserves that order, so Dijkstra settles each node with
        its best label. The search from ``s`` stops once ``t`` is settled and is kept (for the
        :data:`_KEEP_SEARCHES` most recent sources) to resume for the next destination.
        """
        if s == t:
            return []
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
            for v, lid, w in self._adj[u]:
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
            raise NetworkError(
                f"no route from {self._nodes[s]!r} to {self._nodes[t]!r}; "
                "connect them (check the topology with topologies.validate)"
            )
        links = []
        while t != s:
            t, lid = via[t]
            links.append(lid)
        return links[::-1]
