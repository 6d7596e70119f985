"""``fully_connected``: hosts with a direct link between every pair."""

from __future__ import annotations

import itertools

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

__all__ = ["fully_connected"]


def fully_connected(
    n: int, bandwidth: str | float = DEFAULT_BANDWIDTH, latency: str | float = DEFAULT_LATENCY
) -> nx.Graph:
    """Return ``n`` hosts with a dedicated link between every pair (``n(n-1)/2`` links).

    Hosts are the ints ``0..n-1`` and rank ``i`` is host ``i``. This is the idealised
    "every pair has its own wire" network, e.g. GPUs of one node on a full NVLink mesh.

    Parameters
    ----------
    n : int
        Number of hosts, >= 1.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Examples
    --------
    >>> g = fully_connected(5)
    >>> g.number_of_edges(), dict(g.degree)[0]
    (10, 4)
    """
    n = require_int("n", n, 1)
    check_size("fully_connected", {"n": n}, estimate(n, 0, n * (n - 1) // 2))
    g = new_topology("fully_connected", n=n, bandwidth=bandwidth, latency=latency)
    for i in range(n):
        g.add_node(i, kind=HOST, rank=i)
    for i, j in itertools.combinations(range(n), 2):
        g.add_edge(i, j, bandwidth=g.graph["bandwidth"], latency=g.graph["latency"])
    return validate(g)
