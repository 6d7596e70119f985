"""The builders by family name, for specs and config files (``{"kind": "fat_tree", "k": 4}``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import networkx as nx

from topologies.fat_tree import fat_tree
from topologies.fully_connected import fully_connected
from topologies.hierarchical import hierarchical
from topologies.model import TopologyError
from topologies.random_regular import random_regular
from topologies.ring import ring
from topologies.star import star
from topologies.torus import torus2d

__all__ = ["BUILDERS", "builder", "is_as_built"]

#: Family name (also ``g.graph["family"]``) -> builder function.
BUILDERS: dict[str, Callable[..., nx.Graph]] = {
    f.__name__: f
    for f in (ring, star, fully_connected, torus2d, fat_tree, hierarchical, random_regular)
}


def builder(name: str) -> Callable[..., nx.Graph]:
    """Return the builder of family ``name``.

    Examples
    --------
    >>> builder("ring")(3).graph["family"]
    'ring'
    >>> builder("mesh")
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: unknown topology kind 'mesh'; valid kinds: ring, star, ...
    """
    try:
        return BUILDERS[name]
    except (KeyError, TypeError):
        raise TopologyError(
            f"unknown topology kind {name!r}; valid kinds: {', '.join(BUILDERS)}"
        ) from None


def is_as_built(g: nx.Graph, attrs: Iterable[str] = ("bandwidth", "latency")) -> bool:
    """Whether ``g`` is what its family's builder makes from the parameters in ``g.graph``.

    Compares directedness, nodes, links and the edge attributes ``attrs``, so closed-form
    results (bisection, symmetry shortcuts) are used only for unmodified graphs.

    Examples
    --------
    >>> g = ring(5)
    >>> is_as_built(g)
    True
    >>> g.edges[0, 1]["latency"] = 1.0
    >>> is_as_built(g), is_as_built(g, attrs=["bandwidth"])
    (False, True)
    """
    build = BUILDERS.get(g.graph.get("family"))
    if build is None:
        return False
    try:
        twin = build(**{k: v for k, v in g.graph.items() if k != "family"})
    except (TypeError, ValueError):
        return False
    if twin.is_directed() != g.is_directed() or set(twin) != set(g):
        return False
    if twin.number_of_edges() != g.number_of_edges() or not all(g.has_edge(*e) for e in twin.edges):
        return False
    attrs = list(attrs)
    return all(g.edges[u, v].get(a) == d.get(a) for u, v, d in twin.edges(data=True) for a in attrs)
