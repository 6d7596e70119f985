"""Time to a target loss against a swept field (bandwidth, workers ...), per series.

The target is a level of the runs' metric (:mod:`studies.plot.targets`): a loss reached at or
below it, or a reinforcement-learning workload's mean return reached at or above it.

Each point is the mean over the seeds that reached the target, with error bars from their
minimum to their maximum. Seeds that did not reach it are never dropped silently: a hollow
marker at the top of the axes, annotated ``missed/total``, stands for them.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from studies.plot.labels import clock, field_axis, network_title
from studies.plot.metric import plotted_metric, reach_label
from studies.plot.series import require_field, runs_of, series
from studies.plot.style import new_axes, styled
from studies.plot.targets import to_target

__all__ = ["time_to_target"]


@styled
def time_to_target(
    df: pd.DataFrame,
    x: str = "topology.bandwidth",
    target: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Time to reach ``target`` loss against field ``x``, one line per series.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    x
        The swept configuration column (``topology.bandwidth``, ``world_size`` ...).
    target
        The loss (return) to reach; by default the ``target_loss`` (``target_return``) the
        runs were made with.
    ax
        Axes to draw on; a new figure when omitted.
    """
    x = require_field(df, x)
    reached = to_target(df, target)
    level = float(reached["target"].iloc[0])
    fig, ax = new_axes(ax)
    placed = reached[reached[x].notna()]
    positions = pd.Series(field_axis(ax, x, placed[x]), index=placed.index)
    missed: list[tuple[float, tuple[float, float, float], str]] = []
    for s in series(df, across=[x]):
        runs = placed[placed.index.isin(s.runs)]
        if runs.empty:
            continue
        means, xs, lows, highs = [], [], [], []
        for value, group in runs.groupby(positions[runs.index], sort=True):
            times = group["time_to_target"].dropna()
            if len(times):
                xs.append(float(value))
                means.append(times.mean())
                lows.append(times.mean() - times.min())
                highs.append(times.max() - times.mean())
            if len(times) < len(group):
                missed.append((float(value), s.colour, f"{len(group) - len(times)}/{len(group)}"))
        bars = ax.errorbar(
            xs,
            means,
            yerr=[lows, highs],
            color=s.colour,
            linestyle=s.linestyle,
            marker="o",
            capsize=3,
            label=s.label,
        )
        if not xs:  # keep the series in the legend even when no seed reached the target
            bars.set_label(f"{s.label} (never reached)")
    handles, _ = ax.get_legend_handles_labels()
    if missed:
        reached_times = placed["time_to_target"].dropna()
        top = 1.15 * float(reached_times.max()) if len(reached_times) else 1.0
        for value, colour, text in missed:
            ax.scatter([value], [top], marker="o", s=60, facecolors="none", edgecolors=[colour])
            ax.annotate(text, (value, top), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.set_ylim(0, top * 1.1)
        hollow = "not reached (seeds missed/total, drawn at the top)"
        handles.append(Line2D([], [], marker="o", ls="", mfc="none", color="grey", label=hollow))
    reach = reach_label(plotted_metric(df), level)
    ax.set_ylabel(f"{clock(placed['backend'])} time to {reach} (s)")
    notes = [network_title(runs_of(df))]
    unplaced = reached.index[reached[x].isna()]
    if len(unplaced):  # real runs have no topology: say so rather than drop them unseen
        notes.append(f"{len(unplaced)} run(s) without {x} not shown")
    ax.set_title("\n".join(notes))
    ax.legend(handles=handles, title="mean over seeds, bars min–max")
    return fig
