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

Links that are down (:meth:`Router.set_down`, a link fault) are left out of every search: each
mode chooses among the live paths, and a pair with none raises :class:`LinkFailure`. ``dmodk``
keeps its destination-based path while that path is live, and otherwise falls back to the
shortest live path (``single``'s rule), as a fat tree's subnet manager routes around a failed
link.

Where a pair has one equal-cost path ``single``, ``ecmp`` and ``spray`` give the same route,
bit for bit; on a topology with one path per pair (a star, a tree, hierarchical) those three
are one (``dmodk`` refuses any topology but a fat tree).

The :class:`Router` turns ranks into routes and caches them; the path finding is in modules of
their own: :mod:`sim.paths` (stub peeling and the tie-broken search), :mod:`sim.equal_cost`
(the equal-cost paths, ``ecmp``'s ranking and ``spray``'s per-link fractions),
:mod:`sim.dmodk` (the fat tree's d-mod-k route) and :mod:`sim.flow_hash` (``ecmp``'s hash).
"""

from __future__ import annotations

from collections.abc import Hashable

import networkx as nx
import numpy as np

from sim.dmodk import dmodk_nodes
from sim.equal_cost import EqualCostPaths
from sim.flow_hash import flow_hash
from sim.paths import NoRouteError, ShortestPaths

# ``flow_hash`` lives in :mod:`sim.flow_hash` and is re-exported: ``sim.routing.flow_hash`` is
# where callers have always found it.
__all__ = [
    "ROUTINGS",
    "LinkFailure",
    "NetworkError",
    "RankDown",
    "Router",
    "check_routing",
    "check_routing_on",
    "flow_hash",
]

#: Routing modes: a flow hashed onto one equal-cost path, split over all, the one path, or a
#: fat tree's destination-based path.
ROUTINGS = ("ecmp", "spray", "single", "dmodk")


class NetworkError(ValueError):
    """A bad argument to the network simulator; the one-line message names it and the fix."""


class LinkFailure(NetworkError):
    """No live route between two ranks: the links that are down cut every path.

    An operation's event fails with it (see :meth:`sim.network.Network.set_link`).
    ``links`` are the links down when it was raised (node pairs), ``ranks`` the ranks
    ``(src, dst)`` left without a route.

    >>> str(LinkFailure([("s0", 3)], (0, 3)))
    "no live route from rank 0 to rank 3: link ('s0', 3) is down"
    """

    def __init__(self, links: list[tuple[Hashable, Hashable]], ranks: tuple[int, int]) -> None:
        # The arguments are the exception's ``args``: SimPy rebuilds a failed event's
        # exception from them (``type(e)(*e.args)``) to throw it into a waiting process.
        super().__init__(links, ranks)
        self.links, self.ranks = list(links), tuple(ranks)

    def __str__(self) -> str:
        named = ", ".join(repr(tuple(uv)) for uv in self.links)
        several = len(self.links) > 1
        return (
            f"no live route from rank {self.ranks[0]} to rank {self.ranks[1]}: "
            f"{'links' if several else 'link'} {named} {'are' if several else 'is'} down"
        )


class RankDown(NetworkError):
    """A rank's host crashed while an operation had flows from or to it
    (see :meth:`sim.network.Network.drop_rank`); ``rank`` names it.

    >>> str(RankDown(3))
    'rank 3 is down'
    """

    def __init__(self, rank: int) -> None:
        super().__init__(rank)  # ``args``: see LinkFailure
        self.rank = rank

    def __str__(self) -> str:
        return f"rank {self.rank} is down"


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
    down : frozenset of int
        Link ids that are down (:meth:`set_down`); no route found since crosses one.
    epoch : int
        How many times the routes of the pairs have been reset (:meth:`set_down`): a route
        id held since an earlier epoch may cross a link that is now down.

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
        # The searches work on node indices; the two path finders share one adjacency.
        self._paths = ShortestPaths(
            list(topology.nodes), self.links, self.latency, topology.is_directed()
        )
        self._index = self._paths.index
        self._equal = EqualCostPaths(self._paths, spray=self.routing == "spray")
        self.down: frozenset[int] = frozenset()
        self._down_edges: list[tuple[Hashable, Hashable]] = []
        self.epoch = 0
        self.route_links: list[np.ndarray] = []
        self.route_share: list[np.ndarray | None] = []
        # Per-route arrays grow by doubling; the properties expose the filled prefix.
        self._lat = np.empty(64)
        self._bw = np.empty(64)
        self._hops = np.empty(64, dtype=np.int64)
        # Each route's (src rank, dst rank, label): a flow's route says whom it connects.
        self._ends = np.empty((64, 3), dtype=np.int64)
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

    @property
    def route_ends(self) -> np.ndarray:
        """``(src rank, dst rank, connection label)`` of each route, by route id (a view)."""
        return self._ends[: len(self.route_links)]

    def link_ids(self, u: Hashable, v: Hashable) -> tuple[int, ...]:
        """Ids of the links between nodes ``u`` and ``v`` (``u -> v`` first, then ``v -> u``;
        one of them on a directed topology), or raise a one-line :class:`NetworkError`.

        >>> import topologies
        >>> r = Router(topologies.star(2, bandwidth=1.0, latency=1.0))
        >>> r.link_ids("s0", 1)
        (3, 1)
        >>> r.link_ids(0, 1)
        Traceback (most recent call last):
        ...
        sim.routing.NetworkError: link (0, 1) is not a link of the topology; name two adjacent nodes
        """
        link_id = self._paths.link_id
        ids = tuple(link_id[uv] for uv in ((u, v), (v, u)) if uv in link_id)
        if not ids:
            raise NetworkError(
                f"link {(u, v)!r} is not a link of the topology; name two adjacent nodes"
            )
        return ids

    def set_down(self, edges: list[tuple[Hashable, Hashable]]) -> None:
        """From now on the links between the node pairs ``edges`` (both directions) are
        down: routes are found anew, on the live links only (a pair with no live route then
        raises :class:`LinkFailure`). Route ids handed out before stay valid as they were
        (flows in flight hold them); :attr:`epoch` counts the resets.

        >>> import topologies
        >>> r = Router(topologies.ring(4, bandwidth=1.0, latency=1.0), routing="single")
        >>> [r.links[i] for i in r.route_links[r.route(0, 1)]]
        [(0, 1)]
        >>> r.set_down([(0, 1)])
        >>> [r.links[i] for i in r.route_links[r.route(0, 1)]], r.epoch
        ([(0, 3), (3, 2), (2, 1)], 1)
        """
        link_id = self._paths.link_id
        down = frozenset(link_id[uv] for u, v in edges for uv in ((u, v), (v, u)) if uv in link_id)
        self.down, self._down_edges = down, list(edges)
        self._paths = ShortestPaths(
            self._paths.nodes, self.links, self.latency, self.graph.is_directed(), down
        )
        self._equal = EqualCostPaths(self._paths, spray=self.routing == "spray")
        self._pair_route.clear()
        self._keys = np.empty(0, dtype=np.int64)
        self._vals = np.empty(0, dtype=np.int64)
        self.epoch += 1

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
            try:
                if self.routing == "single":
                    links = path = self._host_route(s, t)
                elif self.routing == "ecmp":
                    links = path = self._host_route(s, t, flow_hash(self.seed, src, dst, label))
                elif self.routing == "dmodk":
                    links = path = self._dmodk_route(src, dst)
                    if self.down and not self.down.isdisjoint(links.tolist()):
                        links = path = self._host_route(s, t)  # around the fault
                else:
                    links, share, path = self._spray_route(s, t)
            except NoRouteError as err:  # the path finders sit below this module's error
                if self.down:
                    raise LinkFailure(self._down_edges, (src, dst)) from None
                raise NetworkError(str(err)) from None
            rid = len(self.route_links)
            if rid == self._lat.size:
                self._lat = np.resize(self._lat, 2 * rid)
                self._bw = np.resize(self._bw, 2 * rid)
                self._hops = np.resize(self._hops, 2 * rid)
                self._ends = np.resize(self._ends, (2 * rid, 3))
            self._ends[rid] = key
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
        missing_src, missing_dst = src[~found], dst[~found]
        if self.routing != "dmodk" and self._paths.is_forest and missing_src.size > 1:
            self._route_forest(missing_src.astype(np.int64), missing_dst.astype(np.int64), label)
        else:  # route the missing pairs one by one, then rebuild the sorted table once
            for s, d in zip(missing_src.tolist(), missing_dst.tolist(), strict=True):
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

    def _route_forest(self, src: np.ndarray, dst: np.ndarray, label: int) -> None:
        """Route the pairs ``src[i] -> dst[i]`` (not yet routed) of a topology whose switches
        form a forest, as :meth:`route` would one by one (the same ids, in order of first
        appearance, the same links, latencies and bottlenecks), with numpy over the pairs and
        one walk up the tree per switch pair. Every mode takes a forest's one path."""
        n = self.n_hosts
        q = (label * n + src) * n + dst
        _, first = np.unique(q, return_index=True)
        first.sort()
        src, dst = src[first], dst[first]
        paths = self._paths
        host_node = self._host_nodes()
        parent, out, back = paths.stub_arrays()
        a, b = host_node[src], host_node[dst]
        # Peel the stub hosts off both ends, as :meth:`ShortestPaths.peel` does.
        pa = parent[a]
        has_head = (pa >= 0) & (a != b)
        s_mid = np.where(has_head, pa, a)
        pb = parent[b]
        has_tail = (pb >= 0) & (a != b) & (b != s_mid)
        t_mid = np.where(has_tail, pb, b)
        walk = (a != b) & (b != s_mid) & (s_mid != t_mid)
        pair = s_mid * len(paths.nodes) + t_mid
        middles: dict[int, list[int]] = {}
        for key, s_, t_ in zip(
            pair[walk].tolist(), s_mid[walk].tolist(), t_mid[walk].tolist(), strict=True
        ):
            if key not in middles:
                try:
                    middles[key] = paths.tree_path(s_, t_)
                except NoRouteError:
                    # One by one: the pairs before it are routed, and it raises, as ever.
                    for s_rank, d_rank in zip(src.tolist(), dst.tolist(), strict=True):
                        self.route(s_rank, d_rank, label)
                    raise AssertionError("a pair without a tree path routed") from None
        empty: list[int] = []
        mids = [middles[k] if w else empty for k, w in zip(pair.tolist(), walk.tolist())]
        heads = out[a].tolist()
        tails = back[b].tolist()
        routes = [
            ([h] if hh else empty) + m + ([t] if ht else empty)
            for h, hh, m, t, ht in zip(
                heads, has_head.tolist(), mids, tails, has_tail.tolist(), strict=True
            )
        ]
        lengths = np.fromiter(map(len, routes), dtype=np.int64, count=len(routes))
        flat = np.fromiter(
            (lid for r in routes for lid in r), dtype=np.int64, count=int(lengths.sum())
        )
        # Latency summed link by link from 0, as ``sum(list)`` sums (padding adds 0.0);
        # bottleneck over the links (padding: inf).
        width = int(lengths.max()) if lengths.size else 0
        rows = np.repeat(np.arange(len(routes)), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        lat_m = np.zeros((len(routes), width))
        lat_m[rows, cols] = self.latency[flat]
        cap_m = np.full((len(routes), width), np.inf)
        cap_m[rows, cols] = self.capacity[flat]
        lat = np.zeros(len(routes))
        for j in range(width):
            lat = lat + lat_m[:, j]
        bw = cap_m.min(axis=1) if width else np.full(len(routes), np.inf)
        base = len(self.route_links)
        end = base + len(routes)
        size = self._lat.size
        while size < end:
            size *= 2
        if size != self._lat.size:
            self._lat = np.resize(self._lat, size)
            self._bw = np.resize(self._bw, size)
            self._hops = np.resize(self._hops, size)
            self._ends = np.resize(self._ends, (size, 3))
        self._lat[base:end] = lat
        self._bw[base:end] = bw
        self._hops[base:end] = lengths
        self._ends[base:end, 0] = src
        self._ends[base:end, 1] = dst
        self._ends[base:end, 2] = label
        offsets = np.concatenate(([0], np.cumsum(lengths))).tolist()
        self.route_links.extend([flat[i:j] for i, j in zip(offsets[:-1], offsets[1:], strict=True)])
        self.route_share.extend([None] * len(routes))
        self._pair_route.update(
            zip(
                zip(src.tolist(), dst.tolist(), [label] * len(routes), strict=True),
                range(base, end),
                strict=True,
            )
        )

    def _host_nodes(self) -> np.ndarray:
        """Each rank's node index (kept)."""
        nodes = getattr(self, "_host_node_array", None)
        if nodes is None:
            index = self._index
            nodes = self._host_node_array = np.array([index[h] for h in self.hosts])
        return nodes

    def _host_route(self, s: int, t: int, pick: int | None = None) -> np.ndarray:
        """Best route between node indices ``s`` and ``t`` (see the module rule), or with
        ``pick`` the equal-cost path ``pick % n_paths`` (``ecmp``).

        A stub's every route starts (or ends) with its one link, and with the first and last
        nodes fixed the tie-break order is that of the middle part; so stubs are peeled off and
        only the switch-to-switch middle is searched, shared by every host on those switches.
        """
        peeled = self._paths.peel(s, t)
        if isinstance(peeled, np.ndarray):
            return peeled
        head, s, t, tail = peeled
        middle = self._paths.best(s, t) if pick is None else self._equal.unrank(s, t, pick)
        return np.asarray([*head, *middle, *tail], dtype=np.int64)

    def _spray_route(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(links, share per link or None, first path)`` of a flow split evenly over the
        equal-cost paths between node indices ``s`` and ``t``."""
        peeled = self._paths.peel(s, t)
        if isinstance(peeled, np.ndarray):
            return peeled, None, peeled
        head, s, t, tail = peeled
        first = np.asarray([*head, *self._equal.unrank(s, t, 0), *tail], dtype=np.int64)
        split = self._equal.split(s, t)
        if split is None:  # one path: exactly ``single``'s route
            return first, None, first
        middle, shares = split
        links = np.asarray([*head, *middle, *tail], dtype=np.int64)
        share = np.concatenate(([1.0] * len(head), shares, [1.0] * len(tail)))
        return links, share, first

    def _dmodk_route(self, src: int, dst: int) -> np.ndarray:
        """Link ids of the d-mod-k route from rank ``src`` to rank ``dst`` (see
        :func:`sim.dmodk.dmodk_nodes`)."""
        nodes = dmodk_nodes(int(self.graph.graph["k"]), self.hosts, src, dst)
        link_id = self._paths.link_id
        try:
            return np.asarray(
                [link_id[uv] for uv in zip(nodes, nodes[1:], strict=False)], dtype=np.int64
            )
        except KeyError as err:
            raise NetworkError(
                f"routing 'dmodk' found no fat-tree link {err.args[0]!r}; it routes an intact "
                "topologies.fat_tree only (use ecmp, spray or single)"
            ) from None
