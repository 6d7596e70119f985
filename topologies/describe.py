"""``describe``: the numbers that characterise a topology, as a dataclass and a text table."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from topologies.bisection import bisection_bandwidth
from topologies.model import hosts, switches, validate
from topologies.registry import is_as_built
from topologies.units import format_bandwidth, format_time

__all__ = ["TopologySummary", "describe"]


@dataclass(frozen=True)
class TopologySummary:
    """What :func:`describe` reports about a topology.

    Attributes
    ----------
    family : str
        ``g.graph["family"]`` (``"custom"`` when absent).
    directed : bool
        ``True`` for a ``DiGraph``; then ``links`` counts directed edges.
    hosts, switches, links : int
        Node and edge counts (undirected links for a ``Graph``, directed for a ``DiGraph``).
    diameter_hops : int
        The most links on a shortest (fewest-hop) path between two hosts.
    diameter_latency : float
        The largest, over host pairs, of the lowest total latency of a path, in seconds.
    bisection_bandwidth : float or None
        Bytes/s; see :mod:`topologies.bisection`. ``None`` with one host.
    bisection_exact : bool
        ``False`` when ``bisection_bandwidth`` is only an upper bound.
    bisection_method : str
        How the bisection was found.
    params : dict
        The other graph attributes (the builder's parameters).
    """

    family: str
    directed: bool
    hosts: int
    switches: int
    links: int
    diameter_hops: int
    diameter_latency: float
    bisection_bandwidth: float | None
    bisection_exact: bool
    bisection_method: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a plain dict (JSON-ready)."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """Return ``(quantity, human-readable value)`` pairs, the rows of the table."""
        if self.bisection_bandwidth is None:
            bisection = "n/a (one host)"
        else:
            bound = "" if self.bisection_exact else " (upper bound)"
            bisection = f"{format_bandwidth(self.bisection_bandwidth)}{bound}"
        params = ", ".join(f"{k}={_human(k, v)}" for k, v in self.params.items())
        return [
            ("family", self.family + (f" ({params})" if params else "")),
            ("hosts", str(self.hosts)),
            ("switches", str(self.switches)),
            ("links", f"{self.links} {'directed' if self.directed else 'full-duplex'}"),
            ("diameter (hops)", str(self.diameter_hops)),
            ("diameter (latency)", format_time(self.diameter_latency)),
            ("bisection bandwidth", bisection),
        ]

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _human(key: str, value: Any) -> str:
    if isinstance(value, float) and key.endswith("bandwidth"):
        return format_bandwidth(value)
    if isinstance(value, float) and key.endswith("latency"):
        return format_time(value)
    return str(value)


# Families whose hosts all look alike (an automorphism maps any host to any other).
_HOST_TRANSITIVE = ("ring", "star", "fully_connected", "torus2d", "fat_tree", "hierarchical")


def _sources(g: nx.Graph, host_nodes: list[Hashable]) -> list[Hashable]:
    """Hosts whose shortest-path runs cover every host pair.

    Swapping two hosts with the same neighbours over the same latencies (e.g. the hosts of
    one edge switch) is an automorphism, so one host per such group is enough; in a
    host-transitive family one host is.
    """
    if g.graph.get("family") in _HOST_TRANSITIVE and is_as_built(g):
        return host_nodes[:1]
    groups: dict[object, Hashable] = {}
    for h in host_nodes:
        key = (frozenset(_latencies(g, h, "out")), frozenset(_latencies(g, h, "in")))
        groups.setdefault(key, h)
    return list(groups.values())


def _latencies(g: nx.Graph, h: Hashable, side: str) -> list[tuple[Hashable, float]]:
    if not g.is_directed():
        return [] if side == "in" else [(v, d["latency"]) for v, d in g[h].items()]
    adjacency = g.succ if side == "out" else g.pred
    return [(v, d["latency"]) for v, d in adjacency[h].items()]


def _host_diameters(g: nx.Graph, host_nodes: list[Hashable]) -> tuple[int, float]:
    targets = set(host_nodes)
    hops, latency = 0, 0.0
    for h in _sources(g, host_nodes):
        lengths = nx.single_source_shortest_path_length(g, h)
        hops = max(hops, max(d for v, d in lengths.items() if v in targets))
        delays = nx.single_source_dijkstra_path_length(g, h, weight="latency")
        latency = max(latency, max(d for v, d in delays.items() if v in targets))
    return hops, float(latency)


def describe(g: nx.Graph) -> TopologySummary:
    """Summarise topology ``g``: counts, host-to-host diameters and bisection bandwidth.

    Diameters are taken between hosts only (switches are never endpoints), along directed
    edges in a ``DiGraph``. The cost is one BFS and one Dijkstra per host, or fewer: one per
    group of interchangeable hosts (the same neighbours over the same latencies), and only one
    for an unmodified family graph other than ``random_regular`` (all hosts look alike).

    Examples
    --------
    >>> from topologies import fat_tree
    >>> s = describe(fat_tree(4, bandwidth="100Gbps", latency="1us"))
    >>> s.hosts, s.switches, s.links, s.diameter_hops, s.diameter_latency
    (16, 20, 48, 6, 6e-06)
    >>> print(s)
    family               fat_tree (k=4, bandwidth=100Gbps, latency=1us)
    hosts                16
    switches             20
    links                48 full-duplex
    diameter (hops)      6
    diameter (latency)   6us
    bisection bandwidth  800Gbps
    """
    host_nodes = hosts(validate(g))
    hops, latency = _host_diameters(g, host_nodes)
    bisection = bisection_bandwidth(g)
    return TopologySummary(
        family=str(g.graph.get("family", "custom")),
        directed=g.is_directed(),
        hosts=len(host_nodes),
        switches=len(switches(g)),
        links=g.number_of_edges(),
        diameter_hops=hops,
        diameter_latency=float(latency),
        bisection_bandwidth=bisection.bandwidth,
        bisection_exact=bisection.exact,
        bisection_method=bisection.method,
        params={k: v for k, v in g.graph.items() if k != "family"},
    )
