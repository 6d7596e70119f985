"""Time to target against bytes to target, one point per run, with the Pareto front.

A run is on the front when no other run reached the target both sooner and with fewer bytes.
The target is a level of the runs' metric (:mod:`studies.plot.targets`): a loss is reached at
or below it, a reinforcement-learning workload's mean return at or above it; either way the
front minimises the time and the bytes it took.
Colour is the series (strategy); marker shape is another field that varies among the runs
(the bandwidth, say). Runs that did not reach the target are counted in the title.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from studies.plot.labels import clock, field_value, network_title
from studies.plot.metric import plotted_metric, reach_label
from studies.plot.series import config_fields, require_field, series
from studies.plot.style import new_axes, styled
from studies.plot.targets import to_target

__all__ = ["pareto", "pareto_front"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_PREFERRED = ("topology.bandwidth", "topology.latency", "world_size", "workload.name")


def pareto_front(cost: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both ``cost`` and ``time``, by cost.

    Examples
    --------
    >>> pareto_front(np.array([1.0, 2.0, 3.0, 2.5]), np.array([5.0, 2.0, 1.0, 3.0])).tolist()
    [0, 1, 2]
    """
    order = np.lexsort((time, cost))
    front, best = [], np.inf
    for i in order:
        if time[i] < best:
            front.append(int(i))
            best = time[i]
    return np.array(front, dtype=int)


def _marker_field(runs: pd.DataFrame, fields: list[str]) -> str | None:
    ordered = [f for f in _PREFERRED if f in fields] + [f for f in fields if f not in _PREFERRED]
    for field in ordered:
        if runs[field].map(str).nunique() > 1:
            return field
    return None


@styled
def pareto(
    df: pd.DataFrame,
    target: float | None = None,
    x: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Each run's time to ``target`` against its MB sent by then, and the Pareto front.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    target
        The loss (return) to reach; by default the ``target_loss`` (``target_return``) the
        runs were made with.
    x
        The field that picks each point's marker; by default the first configuration field
        that varies (bandwidth, latency, ranks, workload ...).
    ax
        Axes to draw on; a new figure when omitted.
    """
    runs = to_target(df, target)
    level = float(runs["target"].iloc[0])
    if x is not None:
        x = require_field(df, x)
    field = x or _marker_field(runs, config_fields(df))
    values = list(dict.fromkeys(runs[field].map(str))) if field else []
    fig, ax = new_axes(ax)
    handles = []
    for s in series(df, across=[field] if field else []):
        mine = runs[runs.index.isin(s.runs) & runs["reached"]]
        # Without a marker field every point is a circle: one group (grouping by "run" would
        # be ambiguous, as "run" is the index as well as a column).
        groups = mine.groupby(mine[field].map(str), sort=False) if field else [("", mine)]
        for value, group in groups:
            marker = _MARKERS[values.index(value) % len(_MARKERS)] if field else "o"
            ax.scatter(
                group["bytes_to_target"] / 1e6,
                group["time_to_target"],
                color=[s.colour],
                marker=marker,
                edgecolors="black" if s.real else "none",  # real runs: outlined
                zorder=3,
            )
        handles.append(Line2D([], [], marker="o", ls="", color=s.colour, label=s.label))
    done = runs[runs["reached"]]
    if len(done):
        cost = done["bytes_to_target"].to_numpy(float) / 1e6
        time = done["time_to_target"].to_numpy(float)
        front = pareto_front(cost, time)
        ax.step(cost[front], time[front], where="post", color="black", lw=1, label="Pareto front")
        handles.append(Line2D([], [], color="black", lw=1, label="Pareto front"))
        if cost.min() > 0 and cost.max() > 30 * cost.min():
            ax.set_xscale("log")
    if field:
        for value in values:
            original = runs.loc[runs[field].map(str) == value, field].iloc[0]
            marker = _MARKERS[values.index(value) % len(_MARKERS)]
            name = field_value(field, original)
            handles.append(Line2D([], [], marker=marker, ls="", color="0.5", label=name))
    ax.set_xlabel("MB sent (all ranks) until the target")
    ax.set_ylabel(f"{clock(runs['backend'])} time to {reach_label(plotted_metric(df), level)} (s)")
    title = network_title(runs)
    missed = int((~runs["reached"]).sum())
    if missed:
        title += f"\n{missed} of {len(runs)} runs did not reach the target (not shown)"
    ax.set_title(title)
    ax.legend(handles=handles)
    return fig
