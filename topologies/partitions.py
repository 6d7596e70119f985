"""Which live ranks a quorum may hold when links are down: the *primary part*, one rule for
``sim`` (:mod:`sim.partitions`) and a testbed's ranks (:mod:`real.partitions`).

A link down with no other path cuts the hosts behind it off: they are alive, but a quorum
that admitted them would fail every round. The primary part is the connected component
(over the links that are up) with the most of the round's live ranks, ties going to the one
holding the lowest rank (:func:`primary`). A backend says *which* links are down and since
when it knows it; this module only says who is cut off by them.

Examples
--------
>>> import topologies
>>> graph = topologies.star(3)
>>> part = components(graph, [("s0", 2)])
>>> sorted(primary(part, {r: r for r in range(3)}, (0, 1, 2)))
[0, 1]
>>> primary(components(graph, []), {r: r for r in range(3)}, (0, 1, 2)) is None
True
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import networkx as nx

__all__ = ["components", "primary", "stuck"]

Edge = tuple[Hashable, Hashable]


def components(graph: nx.Graph, down: Iterable[Iterable[Hashable]]) -> dict[Hashable, int]:
    """Each node's connected component (an index) over ``graph``'s links less ``down``
    (each a link's two ends, in any order: a pair or a frozenset; an undirected view of a
    directed graph; both directions of a link go down)."""
    graph = graph.to_undirected(as_view=True) if graph.is_directed() else graph
    cut = [e for edge in down for e in _both(tuple(edge)) if graph.has_edge(*e)]
    view = nx.restricted_view(graph, [], cut)
    return {node: i for i, nodes in enumerate(nx.connected_components(view)) for node in nodes}


def primary(
    part: Mapping[Hashable, int], hosts: Mapping[int, Hashable], ranks: Iterable[int]
) -> frozenset[int] | None:
    """The ranks of ``ranks`` (the live ones a round may hold) in the primary part, given
    each node's component (:func:`components`) and each rank's node; None when they are all
    in one part (nobody is cut off)."""
    groups: dict[int, list[int]] = {}
    for r in ranks:
        groups.setdefault(part[hosts[r]], []).append(r)
    if len(groups) <= 1:
        return None
    best = max(groups.values(), key=lambda g: (len(g), -min(g)))
    return frozenset(best)


def stuck(cut_by: Sequence[Edge], out: Sequence[int], left: Iterable[int], min_size: int) -> str:
    """The one line that ends a run whose primary part, ranks ``left``, is smaller than a
    quorum's ``min_size`` with no link repair to come (``cut_by``: the links down; ``out``:
    the live ranks they cut off).

    >>> stuck([("s0", 2)], [2], [0, 1], 3)
    "link ('s0', 2) down cut ranks [2] off, and the largest connected part left, ranks [0, 1], is smaller than the quorum's min_size=3: lower min_replicas to 2, or give the link_down an 'until'"
    """
    links = ", ".join(repr(tuple(e)) for e in cut_by)
    several = "s" if len(cut_by) > 1 else ""
    left = sorted(left)
    return (
        f"link{several} {links} down cut ranks {sorted(out)} off, and the largest connected "
        f"part left, ranks {left}, is smaller than the quorum's min_size={min_size}: lower "
        f"min_replicas to {len(left)}, or give the link_down an 'until'"
    )


def _both(edge: tuple[Hashable, ...]) -> list[Edge]:
    if len(edge) == 1:  # a self-loop's frozenset has one node
        return [(edge[0], edge[0])]
    u, v = edge
    return [(u, v), (v, u)]
