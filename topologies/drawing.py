"""``draw``: a picture of a topology, optionally with a value (e.g. utilisation) on each link."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import networkx as nx
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from topologies.model import HOST, hosts, validate

__all__ = ["draw", "layout"]

Position = dict[Hashable, tuple[float, float]]

_HOST_STYLE = {"node_shape": "o", "node_color": "#4c72b0"}
_SWITCH_STYLE = {"node_shape": "s", "node_color": "#dd8452"}
_LABEL_LIMIT = 40  # label nodes only when the picture can hold the labels


def layout(g: nx.Graph) -> Position:
    """Return node positions suited to ``g.graph["family"]``.

    Rings, fully connected graphs and stars are circles (the star's switch in the middle), tori
    are grids, trees and hierarchies are layers with hosts at the bottom and each switch one
    layer above its nearest host, and anything else is a spring layout with a fixed seed.

    Examples
    --------
    >>> from topologies import torus2d
    >>> layout(torus2d(2, 3))[4]
    (1.0, -1.0)
    """
    family = g.graph.get("family")
    host_nodes = hosts(g)
    if family in ("ring", "fully_connected", "star"):
        pos = {h: _on_circle(i, len(host_nodes)) for i, h in enumerate(host_nodes)}
        pos.update({v: (0.0, 0.0) for v in g if v not in pos})
        return pos
    if family == "torus2d":
        return {v: (float(d["col"]), -float(d["row"])) for v, d in g.nodes(data=True)}
    if family in ("fat_tree", "hierarchical") or len(host_nodes) < len(g):
        return _layered(g, host_nodes)
    spring = nx.spring_layout(g, seed=0)
    return {v: (float(x), float(y)) for v, (x, y) in spring.items()}


def _on_circle(i: int, n: int) -> tuple[float, float]:
    angle = math.pi / 2 - 2 * math.pi * i / n
    return (math.cos(angle), math.sin(angle))


def _layered(g: nx.Graph, host_nodes: list[Hashable]) -> Position:
    und = g.to_undirected(as_view=True) if g.is_directed() else g
    level = nx.multi_source_dijkstra_path_length(und, host_nodes, weight=lambda u, v, d: 1)
    layers: dict[int, list[Hashable]] = {}
    for v in g:
        layers.setdefault(int(level.get(v, 0)), []).append(v)
    layers[0] = host_nodes
    width = max(len(members) for members in layers.values())
    pos: Position = {}
    for depth in sorted(layers):
        members = layers[depth]
        if depth > 0:  # order each layer by where its neighbours below sit (barycentre)

            def below(v: Hashable, depth: int = depth) -> float:
                xs = [pos[u][0] for u in und[v] if u in pos and level.get(u) == depth - 1]
                return sum(xs) / len(xs) if xs else 0.0

            members = sorted(members, key=below)
        step = width / len(members)
        for i, v in enumerate(members):
            pos[v] = ((i + 0.5) * step, float(depth))
    return pos


def _is_wraparound(g: nx.Graph, u: Hashable, v: Hashable) -> bool:
    if g.graph.get("family") != "torus2d":
        return False
    du, dv = g.nodes[u], g.nodes[v]
    return abs(du["row"] - dv["row"]) + abs(du["col"] - dv["col"]) > 1


def _edge_value(
    values: Mapping[tuple[Hashable, Hashable], float], u: Hashable, v: Hashable, directed: bool
) -> float | None:
    if (u, v) in values:
        return values[(u, v)]
    return None if directed else values.get((v, u))


def draw(
    g: nx.Graph,
    ax: Axes | None = None,
    edge_values: Mapping[tuple[Hashable, Hashable], float] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Draw topology ``g`` and return the matplotlib ``Figure``.

    Hosts are blue circles (labelled by rank), switches orange squares. With ``edge_values``
    (``{(u, v): value}``, e.g. link utilisation; either orientation for a ``Graph``) links are
    coloured by value with a colour bar, and links without a value are light grey.

    Parameters
    ----------
    g : nx.Graph or nx.DiGraph
        A topology.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made (without pyplot) when omitted.
    edge_values : mapping, optional
        A number per link.
    title : str, optional
        Axes title; defaults to the family and host count.
    cmap : str
        Colour map for ``edge_values``.

    Examples
    --------
    >>> from topologies import ring
    >>> g = ring(4)
    >>> fig = draw(g, edge_values={(0, 1): 0.5, (2, 1): 1.0})
    >>> len(fig.axes)  # the drawing and its colour bar
    2
    """
    validate(g)
    if ax is None:
        fig = Figure(figsize=(7, 5), layout="constrained")
        ax = fig.add_subplot()
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    pos = layout(g)
    edges = list(g.edges)
    colours: list[object] = ["#888888"] * len(edges)
    mappable = None
    if edge_values:
        values = [_edge_value(edge_values, u, v, g.is_directed()) for u, v in edges]
        known = [x for x in values if x is not None]
        norm = Normalize(vmin=min(known, default=0.0), vmax=max(known, default=1.0))
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        colour_map = colormaps[cmap]
        colours = [colour_map(norm(x)) if x is not None else "#dddddd" for x in values]
    colour_of = dict(zip(edges, colours, strict=True))
    wrapped = {e for e in edges if _is_wraparound(g, *e)}
    for bend, group in ((0.1, [e for e in edges if e not in wrapped]), (0.3, sorted(wrapped))):
        if not group:
            continue
        # Arcs keep opposite directed edges, and torus wraparound links, from hiding others.
        style = {}
        if g.is_directed() or bend > 0.1:
            style = {
                "arrows": True,
                "arrowstyle": "-|>" if g.is_directed() else "-",
                "connectionstyle": f"arc3,rad={bend}",
            }
        nx.draw_networkx_edges(
            g,
            pos,
            ax=ax,
            edgelist=group,
            width=1.5,
            edge_color=[colour_of[e] for e in group],
            **style,
        )
    size = 300 if len(g) <= _LABEL_LIMIT else max(20, 6000 // len(g))
    host_set = set(hosts(g))
    nx.draw_networkx_nodes(
        g, pos, ax=ax, nodelist=[v for v in g if v in host_set], node_size=size, **_HOST_STYLE
    )
    nx.draw_networkx_nodes(
        g, pos, ax=ax, nodelist=[v for v in g if v not in host_set], node_size=size, **_SWITCH_STYLE
    )
    if len(g) <= _LABEL_LIMIT:
        labels = {v: str(d["rank"]) for v, d in g.nodes(data=True) if d["kind"] == HOST}
        nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=8, font_color="white")
    if mappable is not None:
        figure.colorbar(mappable, ax=ax, label="link value")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=_HOST_STYLE["node_color"], label="host"),
        Line2D([], [], marker="s", linestyle="", color=_SWITCH_STYLE["node_color"], label="switch"),
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title or f"{g.graph.get('family', 'custom')}: {len(host_set)} hosts")
    ax.set_axis_off()
    return figure
