"""Bisection bandwidth: the least capacity across any cut that splits the hosts in half.

Definition used throughout: over all partitions of the nodes into sides A and B holding
``floor(n/2)`` and ``ceil(n/2)`` of the ``n`` hosts (switches may go on either side), the minimum
cut capacity counting one direction: for a ``Graph`` the sum of the bandwidths of the links
crossing the cut, for a ``DiGraph`` the smaller of the A-to-B and B-to-A sums. It is undefined
(``None``) with one host.

Three ways to get it, best first:

1. closed forms, exact, for a graph that is still exactly what its builder made (same
   nodes, links and bandwidths as rebuilding ``g.graph["family"]`` from ``g.graph``), with
   ``b`` the link bandwidth:

   * ``ring(n)``: ``2b`` (any split of a cycle cuts at least two links; ``b`` when n == 2);
   * ``star(n)``: ``floor(n/2) * b`` (the switch joins the larger half);
   * ``fully_connected(n)``: ``floor(n/2) * ceil(n/2) * b``;
   * ``torus2d(r, c)`` with ``k1 <= k2`` the sorted sizes: ``2*k1*b`` if ``k2`` is even, else
     ``(2*k1 + 2) * b`` (a staircase cut) when ``k1 >= 3``; a 1-row torus is a ring; a 2-row
     torus gives ``4b`` for even ``k2`` and ``min(k2, 5) * b`` for odd ``k2`` (size-2
     dimensions have single links), all checked exhaustively in the tests;
   * ``fat_tree(k)``: ``k**3/8 * b``, half the hosts at full rate (the fat tree is
     rearrangeably non-blocking, so no cut is smaller; splitting the pods in half achieves it);
   * ``hierarchical``: see :func:`_hierarchical`.

2. exhaustive search when the graph is small (see ``EXHAUSTIVE_LIMIT``: about 20 hosts and no
   switches, or fewer hosts and a few switches), exact;
3. otherwise an **upper bound**: the best balanced cut found from Kernighan-Lin bisections (a few
   seeds) and the rank-order split, each host-rebalanced and with switches moved greedily.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import networkx as nx
import numpy as np

from topologies.model import HOST, hosts
from topologies.registry import is_as_built

__all__ = ["Bisection", "EXHAUSTIVE_LIMIT", "bisection_bandwidth"]

#: Largest exhaustive search: (host splits x switch placements x links) array cells.
EXHAUSTIVE_LIMIT = 1 << 22


@dataclass(frozen=True)
class Bisection:
    """A bisection bandwidth (bytes/s, ``None`` for one host), whether exact, and how found."""

    bandwidth: float | None
    exact: bool
    method: str


def bisection_bandwidth(g: nx.Graph) -> Bisection:
    """Return the bisection bandwidth of topology ``g`` (see the module docstring).

    Examples
    --------
    >>> from topologies import fat_tree, ring
    >>> bisection_bandwidth(fat_tree(4, bandwidth=1.0))
    Bisection(bandwidth=8.0, exact=True, method='closed form (fat_tree)')
    >>> g = ring(6, bandwidth=1.0)
    >>> g.edges[0, 1]["bandwidth"] = 0.5  # no longer a uniform ring: searched instead
    >>> bisection_bandwidth(g)
    Bisection(bandwidth=1.5, exact=True, method='exhaustive search')
    """
    n = len(hosts(g))
    if n < 2:
        return Bisection(None, True, "one host")
    family = g.graph.get("family")
    if family in _CLOSED_FORMS and is_as_built(g, attrs=("bandwidth",)):
        return Bisection(_CLOSED_FORMS[family](g), True, f"closed form ({family})")
    # Host 0 stays on side A, which takes floor(n/2) or (n odd) ceil(n/2) hosts.
    splits = sum(math.comb(n - 1, size - 1) for size in {n // 2, (n + 1) // 2})
    cells = (splits << (len(g) - n)) * max(1, g.number_of_edges())
    if len(g) < 63 and cells <= EXHAUSTIVE_LIMIT:
        return Bisection(_exhaustive(g), True, "exhaustive search")
    return Bisection(_heuristic(g), False, "upper bound: best Kernighan-Lin / rank-order cut")


def _torus(g: nx.Graph) -> float:
    k1, k2 = sorted((g.graph["rows"], g.graph["cols"]))
    if k1 == 1:
        links = 1 if k2 == 2 else 2
    elif k1 == 2:
        links = 2 if k2 == 2 else 4 if k2 % 2 == 0 else min(k2, 5)
    else:
        links = 2 * k1 if k2 % 2 == 0 else 2 * k1 + 2
    return links * g.graph["bandwidth"]


def _hierarchical(g: nx.Graph) -> float:
    """Closed form for ``hierarchical``: N nodes of G GPUs, intra ``b``, uplink ``U``.

    Put the spine on side B and a GPUs on side A (``a`` is ``floor(N*G/2)`` or ``ceil``). A node
    with ``x`` GPUs on A costs ``min(x*b, (G-x)*b + U)`` (its switch joins the spine's side or
    not). That cost is concave in ``x``, so a minimum over ``sum x = a`` puts every node at 0 or
    G but one: ``m = a // G`` whole nodes on A and one with ``r = a % G``, giving
    ``m * min(G*b, U) + min(r*b, (G-r)*b + U)``.
    """
    nodes, gpus = g.graph["nodes"], g.graph["gpus_per_node"]
    b = g.graph["intra_bandwidth"]
    uplink = g.graph["inter_bandwidth"] * gpus / g.graph["oversubscription"]
    best = math.inf
    for a in {nodes * gpus // 2, (nodes * gpus + 1) // 2}:
        m, r = divmod(a, gpus)
        best = min(best, m * min(gpus * b, uplink) + min(r * b, (gpus - r) * b + uplink))
    return best


_CLOSED_FORMS = {
    "ring": lambda g: (1 if g.graph["n"] == 2 else 2) * g.graph["bandwidth"],
    "star": lambda g: (g.graph["n"] // 2) * g.graph["bandwidth"],
    "fully_connected": lambda g: (
        (g.graph["n"] // 2) * ((g.graph["n"] + 1) // 2) * g.graph["bandwidth"]
    ),
    "torus2d": _torus,
    "fat_tree": lambda g: g.graph["k"] ** 3 / 8 * g.graph["bandwidth"],
    "hierarchical": _hierarchical,
}


def _cut(g: nx.Graph, side: dict[object, bool]) -> float:
    forward = sum(b for u, v, b in g.edges(data="bandwidth") if side[u] and not side[v])
    backward = sum(b for u, v, b in g.edges(data="bandwidth") if side[v] and not side[u])
    return min(forward, backward) if g.is_directed() else forward + backward


def _exhaustive(g: nx.Graph) -> float:
    index = {v: i for i, v in enumerate(g)}
    host_ids = [index[v] for v in hosts(g)]
    switch_ids = [index[v] for v, kind in g.nodes(data="kind") if kind != HOST]
    u, v, bw = (
        np.array(x)
        for x in zip(
            *((index[a], index[b], w) for a, b, w in g.edges(data="bandwidth")), strict=True
        )
    )
    switch_masks = np.zeros(1, dtype=np.int64)
    for s in switch_ids:
        switch_masks = np.concatenate([switch_masks, switch_masks | (1 << s)])
    n = len(host_ids)
    best = math.inf
    for size in {n // 2, (n + 1) // 2}:
        # Host 0 stays on side A; with n odd both sizes of A are tried.
        combos = [(host_ids[0], *c) for c in itertools.combinations(host_ids[1:], size - 1)]
        host_masks = np.array([sum(1 << i for i in c) for c in combos], dtype=np.int64)
        masks = (host_masks[:, None] | switch_masks[None, :]).ravel()
        a_u = (masks[:, None] >> u) & 1
        a_v = (masks[:, None] >> v) & 1
        forward = ((a_u & (1 - a_v)) * bw).sum(axis=1)
        backward = (((1 - a_u) & a_v) * bw).sum(axis=1)
        cut = np.minimum(forward, backward) if g.is_directed() else forward + backward
        best = min(best, float(cut.min()))
    return best


def _rebalance(g: nx.Graph, side: dict[object, bool]) -> float:
    """Move hosts, then switches, greedily until the hosts are split in half; return the cut."""
    host_nodes = hosts(g)
    und = g.to_undirected(as_view=True) if g.is_directed() else g

    def gain(x: object) -> float:  # cut change (undirected view) if x switches side
        return sum((1 if side[y] == side[x] else -1) * d["bandwidth"] for y, d in und[x].items())

    while True:
        in_a = sum(side[h] for h in host_nodes)
        if abs(2 * in_a - len(host_nodes)) <= 1:
            break
        big = 2 * in_a > len(host_nodes)
        side[min((h for h in host_nodes if side[h] == big), key=gain)] = not big
    for _ in range(3):
        moved = False
        for s in (v for v, kind in g.nodes(data="kind") if kind != HOST):
            if gain(s) < 0:
                side[s] = not side[s]
                moved = True
        if not moved:
            break
    return _cut(g, side)


def _heuristic(g: nx.Graph) -> float:
    host_nodes = hosts(g)
    first_half = set(host_nodes[: len(host_nodes) // 2])
    candidates = [{v: v in first_half for v in g}]
    und = nx.Graph(g.to_undirected()) if g.is_directed() else g
    for seed in range(3):
        a, _ = nx.community.kernighan_lin_bisection(und, weight="bandwidth", seed=seed)
        candidates.append({v: v in a for v in g})
    return min(_rebalance(g, side) for side in candidates)
