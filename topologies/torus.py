"""``torus2d``: hosts on a two-dimensional grid with wraparound links."""

from __future__ import annotations

import networkx as nx

from topologies.limits import check_size, estimate
from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    HOST,
    new_topology,
    require_int,
    validate,
)

__all__ = ["torus2d"]


def torus2d(
    rows: int,
    cols: int,
    bandwidth: str | float = DEFAULT_BANDWIDTH,
    latency: str | float = DEFAULT_LATENCY,
) -> nx.Graph:
    """Return ``rows * cols`` hosts on a 2D torus (a grid whose rows and columns wrap around).

    Host ``r * cols + c`` (an int, also its rank) sits at row ``r``, column ``c`` and carries
    ``row`` and ``col`` attributes. Each host links to its four neighbours; a dimension of
    size 2 has one link per pair instead of two (no parallel links), and one of size 1 none.

    Parameters
    ----------
    rows, cols : int
        Grid shape, each >= 1.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Examples
    --------
    >>> g = torus2d(3, 4)
    >>> g.number_of_nodes(), g.number_of_edges(), set(dict(g.degree).values())
    (12, 24, {4})
    >>> sorted(g[0]), g.nodes[5]
    ([1, 3, 4, 8], {'kind': 'host', 'rank': 5, 'row': 1, 'col': 1})
    """
    rows = require_int("rows", rows, 1)
    cols = require_int("cols", cols, 1)
    check_size("torus2d", {"rows": rows, "cols": cols}, estimate(rows * cols, 0, 2 * rows * cols))
    g = new_topology("torus2d", rows=rows, cols=cols, bandwidth=bandwidth, latency=latency)
    link = {"bandwidth": g.graph["bandwidth"], "latency": g.graph["latency"]}
    for r in range(rows):
        for c in range(cols):
            g.add_node(r * cols + c, kind=HOST, rank=r * cols + c, row=r, col=c)
    for r in range(rows):
        for c in range(cols):
            here = r * cols + c
            if cols > 1:
                g.add_edge(here, r * cols + (c + 1) % cols, **link)
            if rows > 1:
                g.add_edge(here, ((r + 1) % rows) * cols + c, **link)
    return validate(g)
