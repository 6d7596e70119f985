"""``ring``: hosts in a cycle with direct host-to-host links (no switches)."""

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

__all__ = ["ring"]


def ring(
    n: int, bandwidth: str | float = DEFAULT_BANDWIDTH, latency: str | float = DEFAULT_LATENCY
) -> nx.Graph:
    """Return ``n`` hosts in a cycle, host ``i`` linked to host ``(i + 1) % n``.

    Hosts are the ints ``0..n-1`` and rank ``i`` is host ``i``. ``ring(2)`` is a single link and
    ``ring(1)`` a lone host (a simple graph has no parallel links or self loops).

    Parameters
    ----------
    n : int
        Number of hosts, >= 1.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Examples
    --------
    >>> g = ring(8)
    >>> g.number_of_nodes(), g.number_of_edges(), sorted(g[0])
    (8, 8, [1, 7])
    >>> g.graph
    {'family': 'ring', 'n': 8, 'bandwidth': 12500000000.0, 'latency': 1e-06}
    """
    n = require_int("n", n, 1)
    check_size("ring", {"n": n}, estimate(n, 0, n if n > 2 else n - 1))
    g = new_topology("ring", n=n, bandwidth=bandwidth, latency=latency)
    for i in range(n):
        g.add_node(i, kind=HOST, rank=i)
    for i in range(n if n > 2 else n - 1):
        g.add_edge(i, (i + 1) % n, bandwidth=g.graph["bandwidth"], latency=g.graph["latency"])
    return validate(g)
