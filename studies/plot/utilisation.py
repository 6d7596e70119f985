"""Link utilisation of a simulated run, drawn on its topology.

A simulated run directory holds ``topology.json`` (the network, :func:`topologies.io.save`)
and ``links.parquet`` (one row per directed link: ``src``, ``dst``, ``bandwidth``,
``latency``, ``bytes``, ``busy_time``, ``utilisation``). Each link is coloured and widened by
the busier of its two directions; the colour scale runs from zero to the busiest link of the
figure, shared by every run drawn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from runs.schema import LINKS_FILE, TOPOLOGY_FILE
from studies.plot.labels import network_title
from studies.plot.series import Series, runs_of, series
from studies.plot.style import new_axes, styled

__all__ = ["link_utilisation", "utilisation"]

_CMAP = "viridis"


def _node_lookup(g: nx.Graph) -> dict[str, Hashable]:
    # Parquet stores a column of one type: node ids (ints for hosts, strings for switches)
    # may come back as text.
    return {str(v): v for v in g}


def link_utilisation(g: nx.Graph, links: pd.DataFrame) -> dict[tuple[Hashable, Hashable], float]:
    """The busier direction's utilisation of each edge of ``g``, from a links table.

    Examples
    --------
    >>> import topologies
    >>> links = pd.DataFrame({"src": ["0", "s0"], "dst": ["s0", "0"], "utilisation": [0.2, 0.7]})
    >>> link_utilisation(topologies.star(2), links)
    {(0, 's0'): 0.7, (1, 's0'): 0.0}
    """
    lookup = _node_lookup(g)
    directed: dict[tuple[Hashable, Hashable], float] = {}
    for src, dst, value in zip(links["src"], links["dst"], links["utilisation"]):
        u, v = lookup.get(str(src), src), lookup.get(str(dst), dst)
        directed[(u, v)] = max(directed.get((u, v), 0.0), float(value))
    return {(u, v): max(directed.get((u, v), 0.0), directed.get((v, u), 0.0)) for u, v in g.edges}


def _read(run: str) -> tuple[nx.Graph, pd.DataFrame]:
    from topologies.io import load as load_topology

    directory = Path(run)
    missing = [f for f in (TOPOLOGY_FILE, LINKS_FILE) if not (directory / f).is_file()]
    if missing:
        raise ValueError(
            f"utilisation needs a simulated run directory with {LINKS_FILE} and {TOPOLOGY_FILE}; "
            f"{run} has no {' or '.join(missing)}"
        )
    return load_topology(directory / TOPOLOGY_FILE), pd.read_parquet(directory / LINKS_FILE)


def _draw(g: nx.Graph, values: dict, norm: Normalize, ax: Axes, title: str) -> None:
    from topologies.drawing import layout
    from topologies.model import hosts

    pos = layout(g)
    edges = list(g.edges)
    cmap = colormaps[_CMAP]
    top = norm.vmax or 1.0
    nx.draw_networkx_edges(
        g,
        pos,
        ax=ax,
        edgelist=edges,
        edge_color=[cmap(norm(values[e])) for e in edges],
        width=[1.0 + 5.0 * values[e] / top for e in edges],
    )
    host_set = set(hosts(g))
    size = 260 if len(g) <= 40 else max(20, 6000 // len(g))
    for members, shape, colour in (
        ([v for v in g if v in host_set], "o", "#4c72b0"),
        ([v for v in g if v not in host_set], "s", "#dd8452"),
    ):
        nx.draw_networkx_nodes(
            g, pos, ax=ax, nodelist=members, node_shape=shape, node_color=colour, node_size=size
        )
    if len(g) <= 40:
        labels = {v: str(g.nodes[v]["rank"]) for v in host_set}
        nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=8, font_color="white")
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()


def _titles(runs: pd.DataFrame, drawn: list[Series]) -> dict[str, str]:
    """Each run's panel title, in the order of the series: the series' label, its seed where
    the series has several runs, and its directory's name only where that still leaves two
    alike (a sweep names its run directories by a hash, which tells a reader nothing).

    Examples
    --------
    >>> from studies.plot.series import series
    >>> runs = pd.DataFrame({"run": ["r/3f2a", "r/9c1d", "r/b7e0"], "seed": [1, 0, 0],
    ...                      "strategy.name": ["allreduce", "allreduce", "local_sgd"],
    ...                      "kind": "run"}).set_index("run", drop=False)
    >>> _titles(runs, series(runs))
    {'r/9c1d': 'allreduce, seed=0', 'r/3f2a': 'allreduce, seed=1', 'r/b7e0': 'local_sgd'}
    """
    titles = {}
    for s in drawn:
        mine = runs.loc[runs.index.isin(s.runs)]
        if "seed" in mine:
            mine = mine.sort_values("seed", kind="stable")
        for run, row in mine.iterrows():
            seed = f", seed={row['seed']:g}" if len(mine) > 1 and "seed" in mine else ""
            titles[str(run)] = f"{s.label}{seed}"
    alike = Counter(titles.values())
    return {
        run: f"{title}\n{Path(run).name}" if alike[title] > 1 else title
        for run, title in titles.items()
    }


@styled
def utilisation(df: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Each simulated run's links coloured and widened by utilisation, with a colour bar.

    One panel per run (``ax`` only when there is one run), titled by its series and seed.
    Real runs have no simulated links and are refused, as is a run directory without
    ``links.parquet``.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    ax
        Axes to draw on; a new figure when omitted.
    """
    runs = runs_of(df)
    real = [r for r, b in zip(runs.index, runs.get("backend", [])) if str(b).startswith("real")]
    if real:
        raise ValueError(
            f"utilisation needs simulated run directories with {LINKS_FILE}; "
            f"{real[0]} is a real run (filter it out: df[df['backend'] == 'sim'])"
        )
    titles = _titles(runs, series(df))
    drawn = [(run, *_read(run)) for run in titles]
    values = [link_utilisation(g, links) for _, g, links in drawn]
    top = max((v for table in values for v in table.values()), default=0.0)
    norm = Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    if ax is not None and len(drawn) > 1:
        raise ValueError(f"ax= draws one run; the table has {len(drawn)} runs")
    if ax is None:
        columns = min(3, len(drawn))
        rows = math.ceil(len(drawn) / columns)
        fig, grid = new_axes(None, size=(4.2 * columns + 1, 3.8 * rows))
        fig.delaxes(grid)
        axes = [fig.add_subplot(rows, columns, i + 1) for i in range(len(drawn))]
    else:
        fig, ax = new_axes(ax)
        axes = [ax]
    for panel, (run, g, _), table in zip(axes, drawn, values):
        _draw(g, table, norm, panel, titles[run])
    mappable = ScalarMappable(norm=norm, cmap=_CMAP)
    mappable.set_array(np.array([]))
    fig.colorbar(mappable, ax=axes, label="link utilisation (busier direction)")
    fig.suptitle(network_title(runs), fontsize="medium")
    return fig
