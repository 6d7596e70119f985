"""``star``: hosts around one switch."""

from __future__ import annotations

import networkx as nx

from topologies.limits import check_size, estimate
from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    HOST,
    SWITCH,
    new_topology,
    require_int,
    validate,
)

__all__ = ["star"]


def star(
    n: int, bandwidth: str | float = DEFAULT_BANDWIDTH, latency: str | float = DEFAULT_LATENCY
) -> nx.Graph:
    """Return ``n`` hosts, each linked to the one switch ``"s0"``.

    Hosts are the ints ``0..n-1`` and rank ``i`` is host ``i``: the classic single-switch
    cluster, where every host-to-host path is two links long.

    Parameters
    ----------
    n : int
        Number of hosts, >= 1.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Examples
    --------
    >>> g = star(4, bandwidth="25GB/s")
    >>> g.number_of_nodes(), g.number_of_edges(), g.degree("s0")
    (5, 4, 4)
    >>> g.edges[0, "s0"]
    {'bandwidth': 25000000000.0, 'latency': 1e-06}
    """
    n = require_int("n", n, 1)
    check_size("star", {"n": n}, estimate(n, 1, n))
    g = new_topology("star", n=n, bandwidth=bandwidth, latency=latency)
    for i in range(n):
        g.add_node(i, kind=HOST, rank=i)
    g.add_node("s0", kind=SWITCH)
    for i in range(n):
        g.add_edge(i, "s0", bandwidth=g.graph["bandwidth"], latency=g.graph["latency"])
    return validate(g)
