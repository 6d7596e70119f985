"""``fat_tree``: the standard k-ary fat tree (Al-Fares, Loukissas and Vahdat, SIGCOMM 2008)."""

from __future__ import annotations

import networkx as nx

from topologies.limits import check_size, estimate
from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    HOST,
    SWITCH,
    TopologyError,
    new_topology,
    require_int,
    validate,
)

__all__ = ["fat_tree"]


def fat_tree(
    k: int, bandwidth: str | float = DEFAULT_BANDWIDTH, latency: str | float = DEFAULT_LATENCY
) -> nx.Graph:
    """Return the k-ary fat tree built from k-port switches.

    ``k`` pods, each with ``k/2`` edge switches ``"edge{pod}_{i}"`` and ``k/2`` aggregation
    switches ``"agg{pod}_{i}"``, fully meshed inside the pod; every edge switch serves ``k/2``
    hosts; aggregation switch ``i`` of every pod links to the ``k/2`` core switches
    ``"core{i*k/2}"``..``"core{i*k/2 + k/2 - 1}"``. In total ``k**3/4`` hosts,
    ``5*k**2/4`` switches and ``3*k**3/4`` links, all of one bandwidth.

    Hosts are the ints ``0..k**3/4-1``, numbered pod by pod and edge switch by edge switch, so
    rank ``r`` is host ``r`` and consecutive ranks share an edge switch. Hosts and pod switches
    carry a ``pod`` attribute; switches carry ``layer`` (``"edge"``, ``"agg"`` or ``"core"``).

    Parameters
    ----------
    k : int
        Switch port count: even, >= 2.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Examples
    --------
    >>> g = fat_tree(4)
    >>> g.number_of_nodes(), g.number_of_edges(), len([v for v in g if isinstance(v, int)])
    (36, 48, 16)
    >>> sorted(g["edge0_0"], key=str), sorted(g["core3"])
    ([0, 1, 'agg0_0', 'agg0_1'], ['agg0_1', 'agg1_1', 'agg2_1', 'agg3_1'])
    """
    k = require_int("k", k, 2)
    if k % 2:
        raise TopologyError(
            f"k must be even (k-port switches, half up and half down), got {k}", "k"
        )
    check_size("fat_tree", {"k": k}, estimate(k**3 // 4, 5 * k**2 // 4, 3 * k**3 // 4))
    g = new_topology("fat_tree", k=k, bandwidth=bandwidth, latency=latency)
    link = {"bandwidth": g.graph["bandwidth"], "latency": g.graph["latency"]}
    half = k // 2
    for pod in range(k):
        for i in range(half):
            for h in range(half):
                rank = (pod * half + i) * half + h
                g.add_node(rank, kind=HOST, rank=rank, pod=pod)
    for pod in range(k):
        for i in range(half):
            g.add_node(f"edge{pod}_{i}", kind=SWITCH, layer="edge", pod=pod)
        for i in range(half):
            g.add_node(f"agg{pod}_{i}", kind=SWITCH, layer="agg", pod=pod)
    for c in range(half * half):
        g.add_node(f"core{c}", kind=SWITCH, layer="core")
    for pod in range(k):
        for i in range(half):
            edge = f"edge{pod}_{i}"
            for h in range(half):
                g.add_edge((pod * half + i) * half + h, edge, **link)
            for j in range(half):
                g.add_edge(edge, f"agg{pod}_{j}", **link)
        for j in range(half):
            for m in range(half):
                g.add_edge(f"agg{pod}_{j}", f"core{j * half + m}", **link)
    return validate(g)
