"""What a simulated run records about its network besides rows: the links' utilisation on the
run's timeline, ``links.parquet`` (per directed link over the whole run) and ``topology.json``.

Examples
--------
>>> import simpy, topologies
>>> from sim.network import Network
>>> env = simpy.Environment()
>>> net = Network(env, topologies.star(2, bandwidth=1e9, latency=1e-6))
>>> _ = net.send(0, 1, 1e6); env.run()
>>> table = links_table(net, 0.0, 2e-3)
>>> table[table["bytes"] > 0][["src", "dst", "bytes", "utilisation"]].to_dict("records")
[{'src': '0', 'dst': 's0', 'bytes': 1000000.0, 'utilisation': 0.5}, {'src': 's0', 'dst': '1', 'bytes': 1000000.0, 'utilisation': 0.5}]
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from runs.schema import LINKS_FILE, TOPOLOGY_FILE
from runs.trace import Trace
from sim.network import Network
from topologies.io import save

__all__ = ["BUSIEST", "WINDOWS", "link_counters", "links_table", "save_topology", "write_links"]

#: Windows the run is cut into for the utilisation counters (a file of a few hundred kB at
#: most, whatever the run's length).
WINDOWS = 200
#: Links that get a counter of their own: those that carried the most bytes.
BUSIEST = 4


def links_table(net: Network, start: float, end: float) -> pd.DataFrame:
    """One row per directed link: ``src``, ``dst`` (node names as text: a topology mixes
    integer hosts and named switches), ``bandwidth`` (bytes/s), ``latency`` (s), ``bytes``
    carried, ``busy_time`` (s) and mean ``utilisation`` over ``[start, end]``."""
    table = net.stats.table(start, end)
    src, dst = zip(*net.router.links) if net.router.links else ((), ())
    table.insert(0, "src", [str(u) for u in src])
    table.insert(1, "dst", [str(v) for v in dst])
    return table.reset_index(drop=True)


def write_links(net: Network, start: float, end: float, directory: str | Path) -> Path:
    """Write :func:`links_table` as ``links.parquet`` into ``directory``."""
    path = Path(directory) / LINKS_FILE
    links_table(net, start, end).to_parquet(path, index=False)
    return path


def save_topology(graph: nx.Graph, directory: str | Path) -> Path:
    """Write the run's topology as ``topology.json`` (``topologies.io.load`` reads it)."""
    return save(graph, Path(directory) / TOPOLOGY_FILE)


def link_counters(
    trace: Trace,
    net: Network,
    start: float,
    end: float,
    windows: int = WINDOWS,
    busiest: int = BUSIEST,
) -> None:
    """Add to ``trace`` the ``link utilisation`` counter (``max`` and ``mean`` over every
    directed link, per window) and one ``link u→v`` counter for each of the ``busiest``
    links by bytes carried; each ends at 0 at ``end``."""
    if not end > start or not net.router.links:
        return
    edges, util = net.stats.timeline(start, end, windows)
    carried, _ = net.stats.carried(start, end)
    # Stable order: ties between equally busy links go to the first link.
    top = [i for i in np.argsort(-carried, kind="stable")[:busiest].tolist() if carried[i] > 0]
    for w in range(windows):
        at = float(edges[w])
        trace.counter(
            "link utilisation", at, {"max": float(util[w].max()), "mean": float(util[w].mean())}
        )
        for i in top:
            u, v = net.router.links[i]
            trace.counter(f"link {u}→{v}", at, {"utilisation": float(util[w, i])})
    trace.counter("link utilisation", end, {"max": 0.0, "mean": 0.0})
    for i in top:
        u, v = net.router.links[i]
        trace.counter(f"link {u}→{v}", end, {"utilisation": 0.0})
