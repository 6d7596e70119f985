"""``from_graph``: turn any user networkx graph into a topology."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import networkx as nx

from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    HOST,
    TopologyError,
    validate,
)
from topologies.units import parse_bandwidth, parse_time

__all__ = ["from_graph"]


def from_graph(
    g: nx.Graph, bandwidth: str | float | None = None, latency: str | float | None = None
) -> nx.Graph:
    """Return a validated copy of ``g`` with every missing topology attribute filled in.

    * an edge without ``bandwidth``/``latency`` gets ``bandwidth``/``latency`` (defaults
      "100Gbps" and "1us"); unit strings already on edges are parsed to floats;
    * a node without ``kind`` becomes a host;
    * hosts without ``rank`` get the ranks not yet taken, in sorted node order;
    * ``g.graph["family"]`` defaults to ``"custom"``.

    ``g`` itself is not modified; a ``DiGraph`` stays directed.

    Parameters
    ----------
    g : nx.Graph or nx.DiGraph
        Any simple graph; multigraphs are refused.
    bandwidth, latency : str or float, optional
        Fill-in values for edges that lack them.

    Examples
    --------
    >>> t = from_graph(nx.petersen_graph(), bandwidth="10Gbps")
    >>> t.nodes[3], t.edges[0, 1]
    ({'kind': 'host', 'rank': 3}, {'bandwidth': 1250000000.0, 'latency': 1e-06})
    >>> t.graph["family"]
    'custom'
    """
    if not isinstance(g, nx.Graph) or g.is_multigraph():
        raise TopologyError(f"from_graph needs an nx.Graph or nx.DiGraph, not {type(g).__name__}")
    fill_bw = parse_bandwidth(DEFAULT_BANDWIDTH if bandwidth is None else bandwidth)
    fill_lat = parse_time(DEFAULT_LATENCY if latency is None else latency)
    out = g.copy()
    out.graph.setdefault("family", "custom")
    for u, v, d in out.edges(data=True):
        d["bandwidth"] = _edge_value(d.get("bandwidth", fill_bw), parse_bandwidth, u, v)
        d["latency"] = _edge_value(d.get("latency", fill_lat), parse_time, u, v)
    for _, d in out.nodes(data=True):
        d.setdefault("kind", HOST)
    unranked = [v for v, d in out.nodes(data=True) if d["kind"] == HOST and "rank" not in d]
    taken = {d["rank"] for _, d in out.nodes(data=True) if d["kind"] == HOST and "rank" in d}
    free = (r for r in range(len(unranked) + len(taken)) if r not in taken)
    for v, rank in zip(_sorted(unranked), free, strict=False):
        out.nodes[v]["rank"] = rank
    return validate(out)


def _edge_value(value: object, parse: Callable[[str], float], u: Hashable, v: Hashable) -> object:
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError as error:
            raise TopologyError(f"edge ({u!r}, {v!r}): {error}") from None
    return value


def _sorted(nodes: list[Hashable]) -> list[Hashable]:
    """Sort node ids; mixed types (``0`` and ``"s0"``) sort by type name first."""
    try:
        # Node ids are any Hashable, which mypy cannot order; whether these ones order is
        # exactly what this try finds out (the TypeError below).
        return sorted(nodes)  # type: ignore[type-var]
    except TypeError:
        try:
            return sorted(nodes, key=lambda v: (type(v).__name__, v))
        except TypeError:
            return sorted(nodes, key=repr)
