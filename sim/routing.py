"""Routes between hosts: directed link indices, shortest paths by latency, four routing modes.

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

Routing modes (:data:`ROUTINGS`), for fabrics with several *equal-cost* paths between two hosts
(those of least latency and, among them, fewest hops: a fat tree's paths through each core):

``single``
    The one path of the tie-break rule above, for every flow of the pair (deterministic
    routing: on ``fat_tree(4)`` every flow between pods crosses ``core0``).
``ecmp``
    Each flow is hashed onto one of the equal-cost paths, as switches hash a flow's 5-tuple:
    path ``flow_hash(seed, src, dst, label) % n_paths`` in the lexicographic order of the
    paths' node-index sequences (so path 0 is ``single``'s). ``label`` is the flow's
    connection (a collective's channel): every message of one connection takes one path, as
    a TCP connection or a queue pair does; another connection between the same hosts may
    take another. Deterministic for a seed.
``spray``
    Each flow is split evenly over all equal-cost paths (packet spraying, adaptive routing at
    its ideal): it puts on link ``u -> v`` the fraction ``sigma_s(u) * sigma_t(v) /
    sigma_s(t)`` of its rate, ``sigma_a(b)`` counting the equal-cost paths between ``a`` and
    ``b`` (:attr:`Router.route_share`).
``dmodk``
    Fat trees made by :func:`topologies.fat_tree` only: destination-based up-down routing as
    SimGrid's fat-tree zone does it (``FatTreeZone::get_local_route``). Going up, an edge
    switch takes aggregation switch ``dst mod k/2`` and an aggregation switch ``j`` takes core
    ``j*k/2 + (dst div k/2) mod k/2``; the way down is unique. One path per pair, spread over
    the cores by destination (a shift permutation between pods meets no contention).

Where a pair has one equal-cost path ``single``, ``ecmp`` and ``spray`` give the same route,
bit for bit; on a topology with one path per pair (a star, a tree, hierarchical) those three
are one (``dmodk`` refuses any topology but a fat tree).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

import networkx as nx
import numpy as np

__all__ = ["ROUTINGS", "NetworkError", "Router", "check_routing", "check_routing_on", "flow_hash"]

#: Routing modes: a flow hashed onto one equal-cost path, split over all, the one path, or a
#: fat tree's destination-based path.
ROUTINGS = ("ecmp", "spray", "single", "dmodk")

#: Links' latencies are summed in integer femtoseconds so that float noise cannot break ties.
_QUANTUM = 1e-15
#: Searches kept for resuming (one per source node; each holds at most one label per node).
_KEEP_SEARCHES = 256
#: Equal-cost path structures (``ecmp``, ``spray``) are kept per (source, destination) switch
#: pair while their links number at most this in all (a far pair on a 64 x 64 torus has ~10^4).
_KEEP_MIDDLE_LINKS = 1 << 20
_MASK = (1 << 64) - 1


class NetworkError(ValueError):
    """A bad argument to the network simulator; the one-line message names it and the fix."""


def check_routing(value: object, name: str = "routing") -> str:
    """Return a routing mode, or raise a one-line :class:`NetworkError` naming the choices.

    >>> check_routing("ecmp")
    'ecmp'
    >>> check_routing("adaptive", "routing")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: routing must be one of ecmp, spray, single, dmodk, got 'adaptive'
    """
    if not isinstance(value, str) or value not in ROUTINGS:
        raise NetworkError(f"{name} must be one of {', '.join(ROUTINGS)}, got {value!r}")
    return value


def check_routing_on(routing: str, topology: nx.Graph) -> None:
    """Raise a one-line :class:`NetworkError` where ``routing`` cannot route ``topology``
    (``dmodk`` routes only fat trees made by :func:`topologies.fat_tree`).

    >>> import topologies
    >>> check_routing_on("dmodk", topologies.fat_tree(2))
    >>> check_routing_on("dmodk", topologies.ring(3))
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: routing 'dmodk' needs a fat tree ... got family 'ring'; use ...
    """
    family = topology.graph.get("family")
    if routing == "dmodk" and family != "fat_tree":
        raise NetworkError(
            "routing 'dmodk' needs a fat tree made by topologies.fat_tree, got family "
            f"{family!r}; use ecmp, spray or single"
        )


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit function of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def flow_hash(seed: int, src: int, dst: int, label: int = 0) -> int:
    """The 64-bit hash ``ecmp`` routing picks a flow's path by: of the run's seed, the ranks
    and the connection label (the simulator's 5-tuple). Plain integer arithmetic, the same on
    every platform and Python version (``hash()`` is salted per process).

    >>> flow_hash(0, 1, 2) == flow_hash(0, 1, 2) != flow_hash(1, 1, 2)
    True
    >>> flow_hash(0, 1, 2) % 4, flow_hash(0, 2, 1) % 4, flow_hash(0, 1, 2, 1) % 4
    (2, 0, 3)
    """
    h = _mix(seed & _MASK)
    for value in (src, dst, label):
        h = _mix(h ^ (value & _MASK))
    return h


class Router:
    """Directed links and cached host-to-host routes of one topology.

    Parameters
    ----------
    topology : nx.Graph or nx.DiGraph
        A validated topology (see :func:`topologies.validate`).
    efficiency : float
        Payload fraction of a link's bandwidth for links without their own ``efficiency``
        attribute (protocol headers: TCP/IP over Ethernet carries about 0.95).
    routing : {"single", "ecmp", "spray", "dmodk"}
        How flows use equal-cost paths (see the module docstring); ``dmodk`` needs a
        :func:`topologies.fat_tree`.
    seed : int
        Seeds ``ecmp``'s flow hash (the run's seed: same seed, same paths).

    Attributes
    ----------
    links : list of (u, v)
        Directed links; position ``i`` is link index ``i``.
    capacity, latency : np.ndarray
        Per-link payload bandwidth (bytes/s: ``bandwidth`` x efficiency) and latency (s).
    hosts : list
        Host nodes in rank order.
    route_links : list of np.ndarray
        Link ids of each route, by route id.
    route_share : list of (np.ndarray or None)
        Per route, the fraction of a flow's rate on each of its links (``spray`` routes over
        several paths), or None: the whole rate on every link (one path).

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

    def __init__(
        self,
        topology: nx.Graph,
        efficiency: float = 1.0,
        routing: str = "single",
        seed: int = 0,
    ) -> None:
        self.routing = check_routing(routing)
        self.seed = int(seed)
        self.graph = topology
        check_routing_on(self.routing, topology)
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
        self._ends: list[tuple[int, int]] | None = None  # links' node indices, for spray
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
        self._dags: dict[int, tuple] = {}  # the same for equal-cost path DAGs (ecmp, spray)
        self._cost_adj: list[list[tuple[int, int, int]]] | None = None  # for those searches
        self._middles: dict[tuple[int, int], tuple] = {}  # equal-cost paths by switch pair
        self._middle_links = 0  # links held by ``_middles``
        self.route_links: list[np.ndarray] = []
        self.route_share: list[np.ndarray | None] = []
        # Per-route arrays grow by doubling; the properties expose the filled prefix.
        self._lat = np.empty(64)
        self._bw = np.empty(64)
        self._hops = np.empty(64, dtype=np.int64)
        # (src, dst, connection label) -> route id; the label is 0 unless ``ecmp`` hashes it.
        self._pair_route: dict[tuple[int, int, int], int] = {}
        # Vectorised lookup: sorted keys (label*n+src)*n+dst -> route id, rebuilt when routes
        # are added.
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

    def route(self, src: int, dst: int, label: int = 0) -> int:
        """Return the route id from rank ``src`` to rank ``dst`` (computed once, then cached).

        ``label`` names the flow's connection (a collective's channel); only ``ecmp`` hashes
        it, so under the other modes every label gets the pair's one route.
        """
        if self.routing != "ecmp":
            label = 0
        key = (src, dst, label)
        rid = self._pair_route.get(key)
        if rid is None:
            s, t = self._index[self.hosts[src]], self._index[self.hosts[dst]]
            share = None
            if self.routing == "single":
                links = path = self._host_route(s, t)
            elif self.routing == "ecmp":
                links = path = self._host_route(s, t, flow_hash(self.seed, src, dst, label))
            elif self.routing == "dmodk":
                links = path = self._dmodk_route(src, dst)
            else:
                links, share, path = self._spray_route(s, t)
            rid = len(self.route_links)
            if rid == self._lat.size:
                self._lat = np.resize(self._lat, 2 * rid)
                self._bw = np.resize(self._bw, 2 * rid)
                self._hops = np.resize(self._hops, 2 * rid)
            self.route_links.append(links)
            self.route_share.append(share)
            # Every equal-cost path has one latency (to the femtosecond) and one hop count:
            # the route's are its first path's, summed as ``single`` sums them.
            self._lat[rid] = sum(self.latency[path].tolist())
            if not links.size:
                self._bw[rid] = np.inf
            elif share is None:
                self._bw[rid] = self.capacity[links].min()
            else:  # the rate at which the first of its links fills
                self._bw[rid] = (self.capacity[links] / share).min()
            self._hops[rid] = path.size
            self._pair_route[key] = rid
        return rid

    def routes(self, src: np.ndarray, dst: np.ndarray, label: int = 0) -> np.ndarray:
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
        if self.routing != "ecmp":
            label = 0
        n = self.n_hosts
        q = (label * n + src.astype(np.int64)) * n + dst.astype(np.int64)
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
            self.route(s, d, label)
        keys = np.fromiter(
            ((c * n + s) * n + d for s, d, c in self._pair_route),
            dtype=np.int64,
            count=len(self._pair_route),
        )
        vals = np.fromiter(self._pair_route.values(), dtype=np.int64, count=len(keys))
        order = np.argsort(keys)
        self._keys, self._vals = keys[order], vals[order]
        return self._vals[np.searchsorted(self._keys, q)]

    def _peel(self, s: int, t: int) -> tuple[list[int], int, int, list[int]] | np.ndarray:
        """``(head links, s, t, tail links)`` with stub hosts peeled off both ends, or the
        whole route where it has no switch-to-switch middle."""
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

    def _host_route(self, s: int, t: int, pick: int | None = None) -> np.ndarray:
        """Best route between node indices ``s`` and ``t`` (see the module rule), or with
        ``pick`` the equal-cost path ``pick % n_paths`` (``ecmp``).

        A stub's every route starts (or ends) with its one link, and with the first and last
        nodes fixed the tie-break order is that of the middle part; so stubs are peeled off and
        only the switch-to-switch middle is searched, shared by every host on those switches.
        """
        peeled = self._peel(s, t)
        if isinstance(peeled, np.ndarray):
            return peeled
        head, s, t, tail = peeled
        middle = self._search(s, t) if pick is None else self._unrank(s, t, pick)
        return np.asarray([*head, *middle, *tail], dtype=np.int64)

    def _dmodk_route(self, src: int, dst: int) -> np.ndarray:
        """Link ids of the d-mod-k route from rank ``src`` to rank ``dst`` of a k-ary fat tree
        (node names and rank order of :func:`topologies.fat_tree`; see the module docstring)."""
        if src == dst:
            return np.empty(0, dtype=np.int64)
        half = int(self.graph.graph["k"]) // 2
        pod, pod_d = src // (half * half), dst // (half * half)
        edge, edge_d = f"edge{pod}_{src // half % half}", f"edge{pod_d}_{dst // half % half}"
        nodes = [self.hosts[src], edge]
        if edge != edge_d:
            j = dst % half  # the aggregation switch, by destination, in both pods
            nodes.append(f"agg{pod}_{j}")
            if pod != pod_d:
                nodes += [f"core{j * half + dst // half % half}", f"agg{pod_d}_{j}"]
            nodes.append(edge_d)
        nodes.append(self.hosts[dst])
        try:
            return np.asarray(
                [self._link_id[uv] for uv in zip(nodes, nodes[1:], strict=False)], dtype=np.int64
            )
        except KeyError as err:
            raise NetworkError(
                f"routing 'dmodk' found no fat-tree link {err.args[0]!r}; it routes an intact "
                "topologies.fat_tree only (use ecmp, spray or single)"
            ) from None

    def _spray_route(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(links, share per link or None, first path)`` of a flow split evenly over the
        equal-cost paths between node indices ``s`` and ``t``."""
        peeled = self._peel(s, t)
        if isinstance(peeled, np.ndarray):
            return peeled, None, peeled
        head, s, t, tail = peeled
        first = np.asarray([*head, *self._unrank(s, t, 0), *tail], dtype=np.int64)
        if s == t:
            return first, None, first
        dag = self._middle(s, t)
        if dag[2] == 1:  # one path: exactly ``single``'s route
            return first, None, first
        links = np.asarray([*head, *dag[3], *tail], dtype=np.int64)
        share = np.concatenate(([1.0] * len(head), dag[4], [1.0] * len(tail)))
        return links, share, first

    def _middle(self, s: int, t: int) -> tuple:
        """The equal-cost paths between non-stub nodes ``s != t``, counted, cached per pair:
        ``(successors, sigma_t, n_paths, links, shares)``.

        ``successors[u]`` lists ``(v, link)`` on the paths, by node index; ``sigma_t[v]``
        counts the paths from ``v`` to ``t``; ``links`` are the links on any path and, under
        ``spray`` (else None), ``shares`` the fraction of the paths through each
        (``sigma_s(u) sigma_t(v) / n``), both in link order.
        """
        key = (s, t)
        hit = self._middles.get(key)
        if hit is not None:
            return hit
        dist, preds, sigma_s = self._dag(s, t)
        # Nodes on the paths, farthest first: each node's successors on the paths to t are
        # counted before it (costs grow strictly along a link, so this order is topological).
        on, stack = {t}, [t]
        while stack:
            for u, _ in preds[stack.pop()]:
                if u not in on:
                    on.add(u)
                    stack.append(u)
        order = sorted(on, key=lambda v: dist[v], reverse=True)
        sigma_t = dict.fromkeys(on, 0)
        sigma_t[t] = 1
        successors: dict[int, list[tuple[int, int]]] = {v: [] for v in on}
        links: list[int] = []
        for v in order:
            for u, lid in preds[v]:
                sigma_t[u] += sigma_t[v]
                successors[u].append((v, lid))
                links.append(lid)
        for nexts in successors.values():
            nexts.sort()
        n = sigma_s[t]
        ids = np.asarray(links, dtype=np.int64)
        shares = None
        if self.routing == "spray":  # only a split flow needs them; counts are exact ints
            ends = self._ends
            if ends is None:
                ends = self._ends = [(self._index[u], self._index[v]) for u, v in self.links]
            shares = np.array([sigma_s[ends[lid][0]] * sigma_t[ends[lid][1]] / n for lid in links])
            order_links = np.argsort(ids, kind="stable")
            ids, shares = ids[order_links], shares[order_links]
        hit = (successors, sigma_t, n, ids, shares)
        while self._middles and self._middle_links + ids.size > _KEEP_MIDDLE_LINKS:
            self._middle_links -= self._middles.pop(next(iter(self._middles)))[3].size
        self._middles[key] = hit
        self._middle_links += ids.size
        return hit

    def _unrank(self, s: int, t: int, pick: int) -> list[int]:
        """Link ids of equal-cost path ``pick % n_paths`` from ``s`` to ``t``, the paths
        ordered by their node-index sequences (path 0 is :meth:`_search`'s)."""
        if s == t:
            return []
        successors, sigma_t, n, _, _ = self._middle(s, t)
        pick %= n
        links = []
        u = s
        while u != t:
            for v, lid in successors[u]:
                if pick < sigma_t[v]:
                    links.append(lid)
                    u = v
                    break
                pick -= sigma_t[v]
        return links

    def _dag(self, s: int, t: int) -> tuple[dict, dict, dict]:
        """``(cost, predecessors, path count)`` per node settled by a Dijkstra from ``s`` on
        costs ``(latency in fs, hops)`` (one int: ``latency * H + hops``), run until ``t`` is settled (and kept to resume, like
        :meth:`_search`'s). A node's predecessors are every ``(node, link)`` that reaches it
        at its least cost; its path count is the number of equal-cost paths from ``s``."""
        adj = self._cost_adj
        if adj is None:
            # (latency, hops) as one integer, latency * H + hops with H above any hop count:
            # the same order, compared and added as one int.
            h = len(self._nodes) + 1
            adj = self._cost_adj = [[(v, lid, w * h + 1) for v, lid, w in n] for n in self._adj]
        state = self._dags.pop(s, None)
        if state is None:
            state = ({s: 0}, {s: []}, {}, [(0, s)])
        self._dags[s] = state
        if len(self._dags) > _KEEP_SEARCHES:
            del self._dags[next(iter(self._dags))]
        dist, preds, sigma, heap = state
        pop, push = heapq.heappop, heapq.heappush
        while t not in sigma and heap:
            cost, u = pop(heap)
            if u in sigma:
                continue
            # Every predecessor is settled (its cost is strictly less): u's count is final.
            count = 0
            for p, _ in preds[u]:
                count += sigma[p]
            sigma[u] = count or 1
            for v, lid, w in adj[u]:
                if v in sigma:
                    continue
                new = cost + w
                old = dist.get(v)
                if old is None or new < old:
                    dist[v] = new
                    preds[v] = [(u, lid)]
                    push(heap, (new, v))
                elif new == old:
                    preds[v].append((u, lid))
        if t not in sigma:
            raise NetworkError(
                f"no route from {self._nodes[s]!r} to {self._nodes[t]!r}; "
                "connect them (check the topology with topologies.validate)"
            )
        return dist, preds, sigma

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
