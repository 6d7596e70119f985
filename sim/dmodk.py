"""D-mod-k routing on a fat tree made by :func:`topologies.fat_tree` (``network.routing =
"dmodk"``), as SimGrid's fat-tree zone routes (``FatTreeZone::get_local_route``).

Destination-based up-down routing: going up, an edge switch takes aggregation switch
``dst mod k/2`` and an aggregation switch ``j`` takes core ``j*k/2 + (dst div k/2) mod k/2``;
the way down is unique. It reads the route off the node names and rank order of
:func:`topologies.fat_tree` alone (no search), so it lives apart from the path searches of
:mod:`sim.paths` and :mod:`sim.equal_cost`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["dmodk_nodes"]


def dmodk_nodes(k: int, hosts: Sequence[Hashable], src: int, dst: int) -> list[Hashable]:
    """Nodes of the d-mod-k route from rank ``src`` to rank ``dst`` of a ``k``-ary fat tree.

    Parameters
    ----------
    k : int
        The fat tree's arity (``topology.graph["k"]``).
    hosts : sequence
        Host nodes in rank order.
    src, dst : int
        Ranks; the route of a rank to itself is its one host.

    Examples
    --------
    >>> hosts = list(range(16))  # topologies.fat_tree(4) names host i by its rank
    >>> dmodk_nodes(4, hosts, 0, 15)
    [0, 'edge0_0', 'agg0_1', 'core3', 'agg3_1', 'edge3_1', 15]
    >>> dmodk_nodes(4, hosts, 0, 2), dmodk_nodes(4, hosts, 0, 1), dmodk_nodes(4, hosts, 3, 3)
    ([0, 'edge0_0', 'agg0_0', 'edge0_1', 2], [0, 'edge0_0', 1], [3])
    """
    if src == dst:
        return [hosts[src]]
    half = k // 2
    pod, pod_d = src // (half * half), dst // (half * half)
    edge, edge_d = f"edge{pod}_{src // half % half}", f"edge{pod_d}_{dst // half % half}"
    nodes = [hosts[src], edge]
    if edge != edge_d:
        j = dst % half  # the aggregation switch, by destination, in both pods
        nodes.append(f"agg{pod}_{j}")
        if pod != pod_d:
            nodes += [f"core{j * half + dst // half % half}", f"agg{pod_d}_{j}"]
        nodes.append(edge_d)
    nodes.append(hosts[dst])
    return nodes
