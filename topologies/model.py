"""What a topology graph is: the schema, its accessors, and :func:`validate`.

A topology is an ``nx.Graph`` (full-duplex links: each direction has the full capacity) or an
``nx.DiGraph`` (one capacity per direction). Every node has ``kind`` ``"host"`` or ``"switch"``;
hosts carry ``rank`` (an int, exactly 0..n-1 over the hosts). Every edge has ``bandwidth``
(bytes/s) and ``latency`` (seconds), both positive finite numbers within what a real link
has (:data:`BANDWIDTH_RANGE`, :data:`MAX_LATENCY`), and may have ``efficiency``
(the payload fraction of its bandwidth once protocol headers are paid, in (0, 1]; 1 when
absent; ``commsim calibrate`` fits it). ``g.graph["family"]`` names the builder and the other
graph attributes hold its parameters.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Iterable, Iterator, Mapping
from numbers import Integral, Real
from typing import Any

import networkx as nx

from topologies.units import UnitError, parse_bandwidth, parse_time

__all__ = [
    "BANDWIDTH_RANGE",
    "DEFAULT_BANDWIDTH",
    "DEFAULT_LATENCY",
    "HOST",
    "HostGraph",
    "MAX_LATENCY",
    "SWITCH",
    "TopologyError",
    "host_graph",
    "hosts",
    "rank_nodes",
    "rank_to_node",
    "record",
    "switches",
    "validate",
]

HOST = "host"
SWITCH = "switch"
#: Link defaults of every builder: a 100 Gb/s Ethernet/InfiniBand port, one microsecond.
DEFAULT_BANDWIDTH = "100Gbps"
DEFAULT_LATENCY = "1us"
#: A link's bandwidth in bytes/s, from 1 bit/s to 8 Pbit/s (a thousand times today's fastest
#: port): outside it a value is a typo or a unit mistake, and 1e-300 B/s only makes a run
#: report 1e302 seconds.
BANDWIDTH_RANGE = (0.125, 1e15)
#: A link's latency in seconds: at most a day (a geostationary hop is 0.3 s).
MAX_LATENCY = 86400.0


class TopologyError(ValueError):
    """A graph that is not a valid topology; the one-line message names the node or edge.
    ``field`` is the builder parameter at fault, when one is (so a caller can say where it
    was set, ``topology.k``, without reading the message)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def hosts(g: nx.Graph) -> list[Hashable]:
    """Return the host nodes of ``g`` in rank order.

    Examples
    --------
    >>> from topologies import star
    >>> hosts(star(3))
    [0, 1, 2]
    """
    found = [(d.get("rank"), v) for v, d in g.nodes(data=True) if d.get("kind") == HOST]
    for rank, v in found:
        if not _is_int(rank):
            raise TopologyError(f"host {v!r} has no integer 'rank'; set g.nodes[{v!r}]['rank']")
    return [v for _, v in sorted(found, key=lambda pair: pair[0])]


def host_graph(g: nx.Graph) -> HostGraph:
    """Which ranks are network neighbours: hosts joined by a link, or through switches only.

    This is the graph a topology-following strategy (gossip on the physical network) talks
    over: on a ring of hosts each rank has two neighbours; behind one switch, all are. The
    mapping computes a rank's neighbours when asked (see :class:`HostGraph`), so that it
    costs O(hosts + links) however many neighbours each rank has.

    Examples
    --------
    >>> from topologies import ring, star
    >>> host_graph(ring(4))
    {0: (1, 3), 1: (0, 2), 2: (1, 3), 3: (0, 2)}
    >>> host_graph(star(3))
    {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    """
    return HostGraph(g)


class HostGraph(Mapping[int, tuple[int, ...]]):
    """``{rank: neighbour ranks}`` of a topology, each rank's tuple computed when asked.

    Switches joined by links form *clusters*; a host's neighbours are the hosts it links to
    directly and every host attached to a cluster it is attached to. Stored are the clusters'
    hosts and each host's clusters and direct neighbours: O(hosts + links), where the whole
    dict of tuples is O(hosts^2) behind one switch (137 GB for a star of 131,072 hosts). A
    read-only mapping: equal to the dict of the same items.

    Examples
    --------
    >>> from topologies import fat_tree
    >>> neighbours = HostGraph(fat_tree(4))
    >>> len(neighbours), neighbours[0][:4], len(neighbours[0])
    (16, (1, 2, 3, 4), 15)
    """

    def __init__(self, g: nx.Graph) -> None:
        rank_of = {h: g.nodes[h]["rank"] for h in hosts(g)}
        directed = g.is_directed()

        def adjacent(node: Hashable) -> Iterable[Hashable]:
            return (*g.successors(node), *g.predecessors(node)) if directed else g[node]

        cluster_of: dict[Hashable, int] = {}
        members: list[set[int]] = []
        for start in g:  # clusters: the components of the graph without its hosts
            if start in rank_of or start in cluster_of:
                continue
            cluster_of[start] = len(members)
            found: set[int] = set()
            frontier = [start]
            while frontier:
                node = frontier.pop()
                for nxt in adjacent(node):
                    if nxt in rank_of:
                        found.add(rank_of[nxt])
                    elif nxt not in cluster_of:
                        cluster_of[nxt] = cluster_of[start]
                        frontier.append(nxt)
            members.append(found)
        self._members = [tuple(sorted(m)) for m in members]
        self._direct: dict[int, tuple[int, ...]] = {}
        self._clusters: dict[int, tuple[int, ...]] = {}
        for host, rank in sorted(rank_of.items(), key=lambda item: item[1]):
            direct, clusters = set(), set()
            for nxt in adjacent(host):
                if nxt in rank_of:
                    if nxt != host:
                        direct.add(rank_of[nxt])
                else:
                    clusters.add(cluster_of[nxt])
            self._direct[rank] = tuple(sorted(direct))
            self._clusters[rank] = tuple(sorted(clusters))

    def __getitem__(self, rank: int) -> tuple[int, ...]:
        direct, clusters = self._direct[rank], self._clusters[rank]
        if not clusters:
            return direct
        if len(clusters) == 1 and not direct:  # behind one switch fabric: all its hosts
            members = self._members[clusters[0]]
            at = bisect.bisect_left(members, rank)
            return members[:at] + members[at + 1 :]
        found = set(direct)
        for cluster in clusters:
            found.update(self._members[cluster])
        found.discard(rank)
        return tuple(sorted(found))

    def __iter__(self) -> Iterator[int]:
        return iter(self._direct)

    def __len__(self) -> int:
        return len(self._direct)

    def __repr__(self) -> str:
        return repr(dict(self))


def rank_nodes(g: nx.Graph) -> tuple[int, ...]:
    """Each rank's node (machine): the host's ``node`` attribute, numbered in order of first
    appearance; a host without one is a node of its own.

    Examples
    --------
    >>> from topologies import hierarchical, star
    >>> rank_nodes(hierarchical(2, 2)), rank_nodes(star(3))
    ((0, 0, 1, 1), (0, 1, 2))
    """
    labels = [g.nodes[h].get("node", ("host", rank)) for rank, h in enumerate(hosts(g))]
    numbering: dict[Any, int] = {}
    return tuple(numbering.setdefault(label, len(numbering)) for label in labels)


def switches(g: nx.Graph) -> list[Hashable]:
    """Return the switch nodes of ``g`` in insertion order.

    Examples
    --------
    >>> from topologies import star
    >>> switches(star(3))
    ['s0']
    """
    return [v for v, kind in g.nodes(data="kind") if kind == SWITCH]


def rank_to_node(g: nx.Graph) -> dict[int, Hashable]:
    """Return ``{rank: host node}``; ``g.nodes[v]["rank"]`` is the inverse.

    Examples
    --------
    >>> from topologies import fat_tree
    >>> rank_to_node(fat_tree(2))
    {0: 0, 1: 1}
    """
    return {g.nodes[v]["rank"]: v for v in hosts(g)}


def _is_int(x: object) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _is_positive(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x) and float(x) > 0


def validate(g: nx.Graph) -> nx.Graph:
    """Check that ``g`` is a topology and return it unchanged.

    Checks: a simple ``Graph`` or ``DiGraph``; every node's ``kind`` is ``"host"`` or
    ``"switch"``; at least one host; host ranks are ints, exactly 0..n-1, and switches have
    none; every edge has positive finite ``bandwidth`` and ``latency``; no self loops; the graph
    is connected, and in a ``DiGraph`` every host reaches every other host along directed edges.

    Raises
    ------
    TopologyError
        On the first failed check, naming the node or edge and how to fix it.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.Graph()
    >>> g.add_node(0, kind="host", rank=0)
    >>> validate(g) is g
    True
    >>> g.add_node(1, kind="gpu", rank=1)
    >>> validate(g)
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: node 1 has kind 'gpu'; set g.nodes[1]['kind'] to ...
    """
    if not isinstance(g, nx.Graph) or g.is_multigraph():
        raise TopologyError(
            f"a topology is an nx.Graph or nx.DiGraph, not {type(g).__name__}; "
            "merge parallel links into one edge"
        )
    _validate_nodes(g)
    _validate_edges(g)
    _validate_connected(g)
    return g


def _validate_nodes(g: nx.Graph) -> None:
    ranks: dict[int, Hashable] = {}
    for v, d in g.nodes(data=True):
        kind = d.get("kind")
        if kind not in (HOST, SWITCH):
            raise TopologyError(
                f"node {v!r} has kind {kind!r}; set g.nodes[{v!r}]['kind'] to 'host' or 'switch'"
            )
        rank = d.get("rank")
        if kind == SWITCH:
            if rank is not None:
                raise TopologyError(
                    f"switch {v!r} has rank {rank!r}; ranks live on hosts only: "
                    f"delete g.nodes[{v!r}]['rank']"
                )
            continue
        if not _is_int(rank):
            raise TopologyError(
                f"host {v!r} has rank {rank!r}, not an int; "
                f"set g.nodes[{v!r}]['rank'] to an int in 0..n-1"
            )
        if rank in ranks:
            raise TopologyError(
                f"hosts {ranks[rank]!r} and {v!r} share rank {rank}; "
                "give each host a distinct rank in 0..n-1"
            )
        ranks[int(rank)] = v
    if not ranks:
        raise TopologyError("the graph has no hosts; set kind='host' and a rank on some nodes")
    n = len(ranks)
    for rank, v in ranks.items():
        if not 0 <= rank < n:
            raise TopologyError(
                f"host {v!r} has rank {rank}, outside 0..{n - 1}; number the {n} hosts 0..{n - 1}"
            )


def _validate_edges(g: nx.Graph) -> None:
    # Most links share their attributes (a fat tree has one kind): each distinct
    # (bandwidth, latency, efficiency), types included, is checked once.
    passed: set[tuple[object, ...]] = set()
    for u, v, d in g.edges(data=True):
        if u == v:
            raise TopologyError(f"edge ({u!r}, {v!r}) is a self loop; remove it")
        bandwidth, latency, efficiency = d.get("bandwidth"), d.get("latency"), d.get("efficiency")
        seen: tuple[object, ...] = (
            *(type(bandwidth), bandwidth),
            *(type(latency), latency),
            *(type(efficiency), efficiency),
        )
        try:
            if seen in passed:
                continue
        except TypeError:  # an unhashable value: checked (and refused) below
            seen = ()
        for key in ("bandwidth", "latency"):
            value = d.get(key)
            if value is None:
                raise TopologyError(
                    f"edge ({u!r}, {v!r}) has no '{key}'; set it, or fill "
                    f"all missing ones with from_graph(g, {key}=...)"
                )
            if not _is_positive(value):
                raise TopologyError(
                    f"edge ({u!r}, {v!r}) has {key} {value!r}; "
                    f"it must be a positive finite number "
                    f"({'bytes/s' if key == 'bandwidth' else 'seconds'})"
                )
            bound = _out_of_range(key, value)
            if bound:
                raise TopologyError(f"edge ({u!r}, {v!r}) has {key} {value!r}, {bound}")
        efficiency = d.get("efficiency", 1.0)
        if not (_is_positive(efficiency) and efficiency <= 1):
            raise TopologyError(
                f"edge ({u!r}, {v!r}) has efficiency {efficiency!r}; it must be in (0, 1] "
                "(payload bytes per wire byte)"
            )
        if seen:
            passed.add(seen)


def _out_of_range(key: str, value: float) -> str:
    """Why a link's ``bandwidth`` or ``latency`` (parsed) is not one a real link has, or ''."""
    if key.endswith("bandwidth") and not BANDWIDTH_RANGE[0] <= value <= BANDWIDTH_RANGE[1]:
        return "outside 1 bit/s..8 Pbit/s (0.125..1e15 bytes/s); check its unit"
    if key.endswith("latency") and value > MAX_LATENCY:
        return f"over a day ({MAX_LATENCY:g} s); check its unit"
    return ""


def _validate_connected(g: nx.Graph) -> None:
    host_nodes = hosts(g)
    first = host_nodes[0]
    if not g.is_directed():
        reached = nx.node_connected_component(g, first)
        for v in g:
            if v not in reached:
                raise TopologyError(
                    f"node {v!r} is not connected to host {first!r}; add a link joining them"
                )
        return
    for v in g:
        if not nx.has_path(g.to_undirected(as_view=True), first, v):
            raise TopologyError(
                f"node {v!r} is not connected to host {first!r}; add a link joining them"
            )
    forward = nx.descendants(g, first)
    backward = nx.ancestors(g, first)
    for v in host_nodes[1:]:
        if v not in forward:
            raise TopologyError(
                f"host {first!r} cannot reach host {v!r} along directed edges; "
                f"add a directed path from {first!r} to {v!r}"
            )
        if v not in backward:
            raise TopologyError(
                f"host {v!r} cannot reach host {first!r} along directed edges; "
                f"add a directed path from {v!r} to {first!r}"
            )


def new_topology(family: str, directed: bool = False, **params: Any) -> nx.Graph:
    """Return an empty ``Graph``/``DiGraph`` whose graph attributes record ``family`` and params.

    Unit strings among ``params`` (names ending in ``bandwidth``/``latency``) are parsed so that
    the stored values are floats in bytes/s and seconds.

    Examples
    --------
    >>> new_topology("ring", n=4, bandwidth="8bps", latency="1s").graph
    {'family': 'ring', 'n': 4, 'bandwidth': 1.0, 'latency': 1.0}
    """
    g: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    g.graph["family"] = family
    for name, value in params.items():
        try:
            if name.endswith("bandwidth"):
                value = parse_bandwidth(value)
            elif name.endswith("latency"):
                value = parse_time(value)
        except UnitError as error:
            raise UnitError(f"{name}: {error}", name) from None
        if name.endswith("latency") and value == 0:
            raise TopologyError(f"{name} must be positive, got {params[name]!r}", name)
        bound = _out_of_range(name, value) if name.endswith(("bandwidth", "latency")) else ""
        if bound:
            raise TopologyError(f"{name}={params[name]!r} is {bound}", name)
        g.graph[name] = value
    return g


def require_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise a ``TopologyError`` naming it.

    Examples
    --------
    >>> require_int("n", 0, 1)
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: n must be an int >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise TopologyError(f"{name} must be an int >= {minimum}, got {value!r}", name)
    return int(value)


def record(g: nx.Graph) -> dict[str, Any]:
    """What a run records of its topology: the builder's parameters and the host count.

    Examples
    --------
    >>> from topologies import star
    >>> record(star(2, bandwidth="1Gbps"))
    {'family': 'star', 'n': 2, 'bandwidth': 125000000.0, 'latency': 1e-06, 'hosts': 2}
    """
    return {**g.graph, "hosts": len(hosts(g))}
