"""Network topologies: networkx graphs whose links carry bandwidth and latency.

A topology is an ``nx.Graph`` (full-duplex links) or ``nx.DiGraph``; nodes have ``kind``
``"host"`` or ``"switch"``, hosts have ``rank`` 0..n-1, and edges have ``bandwidth`` (bytes/s)
and ``latency`` (s). Build one with a family function, check one with :func:`validate`.

>>> import topologies
>>> g = topologies.fat_tree(4, bandwidth="100Gbps", latency="1us")
>>> len(topologies.hosts(g)), g.graph["family"]
(16, 'fat_tree')
"""

from typing import Any

from topologies.bisection import Bisection, bisection_bandwidth
from topologies.describe import TopologySummary, describe
from topologies.fat_tree import fat_tree
from topologies.from_graph import from_graph
from topologies.fully_connected import fully_connected
from topologies.hierarchical import hierarchical
from topologies.io import from_spec, load, save
from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    TopologyError,
    host_graph,
    hosts,
    rank_nodes,
    rank_to_node,
    record,
    switches,
    validate,
)
from topologies.random_regular import random_regular
from topologies.registry import BUILDERS
from topologies.ring import ring
from topologies.star import star
from topologies.torus import torus2d
from topologies.units import (
    UnitError,
    format_bandwidth,
    format_time,
    parse_bandwidth,
    parse_time,
)

__all__ = [
    "BUILDERS",
    "Bisection",
    "DEFAULT_BANDWIDTH",
    "DEFAULT_LATENCY",
    "TopologyError",
    "TopologySummary",
    "UnitError",
    "bisection_bandwidth",
    "describe",
    "draw",
    "fat_tree",
    "format_bandwidth",
    "format_time",
    "from_graph",
    "from_spec",
    "fully_connected",
    "hierarchical",
    "host_graph",
    "hosts",
    "layout",
    "load",
    "parse_bandwidth",
    "parse_time",
    "random_regular",
    "rank_nodes",
    "rank_to_node",
    "record",
    "ring",
    "save",
    "star",
    "switches",
    "torus2d",
    "validate",
]


def __getattr__(name: str) -> Any:
    # Drawing needs matplotlib (a third of a second to import): load it on first use only.
    if name in ("draw", "layout"):
        from topologies import drawing

        return getattr(drawing, name)
    raise AttributeError(f"module 'topologies' has no attribute {name!r}")
