"""``hierarchical``: multi-GPU nodes (a fast intra-node fabric) joined by one spine switch."""

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
from topologies.units import parse_bandwidth, parse_time

__all__ = ["hierarchical"]

#: Intra-node link defaults: one GPU's NVLink share on an A100-class node.
DEFAULT_INTRA_BANDWIDTH = "300GB/s"
DEFAULT_INTRA_LATENCY = "500ns"


def hierarchical(
    nodes: int,
    gpus_per_node: int,
    intra_bandwidth: str | float = DEFAULT_INTRA_BANDWIDTH,
    intra_latency: str | float = DEFAULT_INTRA_LATENCY,
    inter_bandwidth: str | float | None = None,
    inter_latency: str | float | None = None,
    oversubscription: float = 1.0,
    bandwidth: str | float | None = None,
    latency: str | float | None = None,
) -> nx.Graph:
    """Return ``nodes`` machines of ``gpus_per_node`` GPUs each, joined through one spine.

    Each machine ``i`` is a switch ``"node{i}"`` (its NVLink/PCIe fabric) with all its GPUs
    attached by intra links. Each node switch has one uplink to the switch ``"spine"`` of
    capacity ``inter_bandwidth * gpus_per_node / oversubscription``: the node's NICs (one of
    ``inter_bandwidth`` per GPU) are modelled as a single trunk, so one GPU alone may use the
    whole uplink, and ``oversubscription > 1`` shrinks it (e.g. 2.0 = half the NIC capacity
    reaches the spine). The spine is kept even when ``nodes == 1``, so there are always
    ``nodes + 1`` switches and ``nodes * (gpus_per_node + 1)`` links.

    GPUs are the ints ``0..nodes*gpus_per_node-1``, ranked node-major (rank ``r`` is host
    ``r`` on node ``r // gpus_per_node``), and carry ``node`` (an int) for hierarchical
    collectives. Switches carry ``layer`` (``"node"`` or ``"spine"``).

    Parameters
    ----------
    nodes, gpus_per_node : int
        Machine count and GPUs per machine, each >= 1.
    intra_bandwidth, intra_latency : str or float
        Each GPU-to-node-switch link.
    inter_bandwidth, inter_latency : str or float, optional
        Per-GPU NIC bandwidth and the uplink latency; default ``bandwidth`` and ``latency``.
    oversubscription : float
        Divides the uplink capacity; >= 1 in practice, must be positive.
    bandwidth, latency : str or float, optional
        Aliases of ``inter_bandwidth`` and ``inter_latency`` (the network links, as in every
        other family), defaulting to "100Gbps" and "1us"; give one spelling, not both.

    Examples
    --------
    >>> g = hierarchical(2, 4, inter_bandwidth="100Gbps", oversubscription=2)
    >>> g.number_of_nodes(), g.number_of_edges(), g.nodes[5]
    (11, 10, {'kind': 'host', 'rank': 5, 'node': 1})
    >>> g.edges["node0", "spine"]["bandwidth"] == 4 * 12.5e9 / 2
    True
    """
    nodes = require_int("nodes", nodes, 1)
    gpus_per_node = require_int("gpus_per_node", gpus_per_node, 1)
    check_size(
        "hierarchical",
        {"nodes": nodes, "gpus_per_node": gpus_per_node},
        estimate(nodes * gpus_per_node, nodes + 1, nodes * (gpus_per_node + 1)),
    )
    inter_bandwidth = _alias(
        "inter_bandwidth", inter_bandwidth, "bandwidth", bandwidth, DEFAULT_BANDWIDTH
    )
    inter_latency = _alias("inter_latency", inter_latency, "latency", latency, DEFAULT_LATENCY)
    if (
        isinstance(oversubscription, bool)
        or not isinstance(oversubscription, (int, float))
        or not 0 < oversubscription < float("inf")
    ):
        raise TopologyError(
            f"oversubscription must be a positive number, got {oversubscription!r}",
            "oversubscription",
        )
    g = new_topology(
        "hierarchical",
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        intra_bandwidth=intra_bandwidth,
        intra_latency=intra_latency,
        inter_bandwidth=inter_bandwidth,
        inter_latency=inter_latency,
        oversubscription=float(oversubscription),
    )
    intra = {"bandwidth": g.graph["intra_bandwidth"], "latency": g.graph["intra_latency"]}
    uplink = {
        "bandwidth": g.graph["inter_bandwidth"] * gpus_per_node / oversubscription,
        "latency": g.graph["inter_latency"],
    }
    for i in range(nodes):
        for j in range(gpus_per_node):
            rank = i * gpus_per_node + j
            g.add_node(rank, kind=HOST, rank=rank, node=i)
    for i in range(nodes):
        g.add_node(f"node{i}", kind=SWITCH, layer="node")
    g.add_node("spine", kind=SWITCH, layer="spine")
    for i in range(nodes):
        for j in range(gpus_per_node):
            g.add_edge(i * gpus_per_node + j, f"node{i}", **intra)
        g.add_edge(f"node{i}", "spine", **uplink)
    return validate(g)


def _alias(
    name: str, value: str | float | None, alias: str, alias_value: str | float | None, default: str
) -> str | float:
    if value is not None and alias_value is not None:
        parse = parse_bandwidth if name.endswith("bandwidth") else parse_time
        if parse(value) != parse(alias_value):
            raise TopologyError(
                f"{name}={value!r} and {alias}={alias_value!r} disagree; "
                f"{alias} is an alias of {name}: give one of them",
                name,
            )
    if value is not None:
        return value
    return alias_value if alias_value is not None else default
