"""Speed-up against the number of ranks (or another scaled field), per series.

Speed-up at ``x`` is the time to target at the smallest ``x`` of the series over the time at
``x`` (each the mean over the seeds that reached the target), or, without a target, the mean
samples per second at ``x`` over that at the smallest ``x``. The ideal line is
``x / x_min``; where it rises far above every series, the axes fit the series and the ideal
leaves them (the legend says how high it goes) rather than squash the series flat. The
baseline (``2 ranks``, ``100 Mbit/s``) is named in the y label, or per series when series
start from different values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from studies.plot.labels import axis_values, field_value, network_title
from studies.plot.metric import plotted_metric, reach_label
from studies.plot.series import require_field, runs_of, series
from studies.plot.style import new_axes, styled
from studies.plot.targets import resolve_target, to_target

__all__ = ["speedup"]

_METRICS = ("auto", "time_to_target", "throughput")


@styled
def speedup(
    df: pd.DataFrame,
    x: str = "world_size",
    target: float | None = None,
    metric: str = "auto",
    ax: Axes | None = None,
) -> Figure:
    """Speed-up over the smallest ``x`` of each series, with the ideal (linear) line.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    x
        A numeric configuration column: ``world_size`` (ranks), ``topology.n`` ...
    target
        The loss (return) to reach; by default the ``target_loss`` (``target_return``) the
        runs were made with.
    metric
        ``"time_to_target"``, ``"throughput"`` (``summary.samples_per_s``), or ``"auto"``:
        time to target when a target is known, else throughput.
    ax
        Axes to draw on; a new figure when omitted.
    """
    x = require_field(df, x)
    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r} is unknown; use one of {', '.join(_METRICS)}")
    if metric == "auto":
        # Whether a target is known depends on the runs' metric: runs that mix metrics are
        # refused here too (throughput, which reads none, is there to ask for by name).
        plotted_metric(df)
        try:
            resolve_target(df, target)
            metric = "time_to_target"
        except ValueError:
            metric = "throughput"
    if metric == "time_to_target":
        runs = to_target(df, target)
        runs["_value"] = runs["time_to_target"]
        what = f"time to {reach_label(plotted_metric(df), float(runs['target'].iloc[0]))}"
    else:
        runs = runs_of(df).copy()
        if "summary.samples_per_s" not in runs:
            raise ValueError("throughput needs summary.samples_per_s; the runs have no summary")
        runs["_value"] = pd.to_numeric(runs["summary.samples_per_s"], errors="coerce")
        what = "samples per second"
    runs = runs[runs[x].notna()]
    positions, axis_label, numeric = axis_values(x, runs[x])
    if not numeric:
        raise ValueError(f"x={x!r} is not numeric; speed-up needs a count such as world_size")
    runs["_x"] = positions
    fig, ax = new_axes(ax)
    lowest = float(np.nanmin(positions)) if len(positions) else 1.0
    missing, baselines, tops = [], [], [1.0]
    drawn = []
    for s in series(df, across=[x]):
        mine = runs[runs.index.isin(s.runs)]
        if mine.empty:
            continue
        # Means over the seeds that have a value (reached the target, for times).
        means = mine.groupby("_x", sort=True)["_value"].mean()
        missing += [f"{s.label} at {v:g}" for v, m in means.items() if not np.isfinite(m)]
        means = means[np.isfinite(means)]
        if means.empty:
            continue
        ratio = means.iloc[0] / means if metric == "time_to_target" else means / means.iloc[0]
        # The baseline as the runs recorded it (2 ranks, 100 Mbit/s), not the axis number.
        baseline = field_value(x, mine.loc[mine["_x"] == means.index[0], x].iloc[0])
        drawn.append((s, means.index, ratio, baseline))
        baselines.append(baseline)
        tops.append(float(ratio.max()))
    shared = len(set(baselines)) <= 1
    for s, where, ratio, baseline in drawn:
        ax.plot(
            where,
            ratio,
            color=s.colour,
            linestyle=s.linestyle,
            marker="o",
            label=s.label if shared else f"{s.label} (over {baseline})",
        )
    xs = np.unique(positions)
    ideal = xs / lowest
    top = max(tops)
    label = "ideal (linear)"
    if len(ideal) and ideal.max() > 2 * top:
        # A linear ideal far above every series would squash them onto the x axis: the axes
        # fit the data, and the ideal leaves them (its top said in the legend).
        ax.set_ylim(0, 1.3 * top)
        label = f"ideal (linear, up to ×{ideal.max():.3g}: leaves the axes)"
    ax.plot(xs, ideal, color="0.4", linestyle=":", label=label)
    ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.set_xlabel(axis_label)
    over = f" over {baselines[0]}" if shared and baselines else ""
    ax.set_ylabel(f"speed-up{over} in {what} (×)")
    title = network_title(runs_of(df))
    if missing:  # runs that never reached the target have no time to compare
        title += "\nno seed reached the target: " + "; ".join(missing)
    ax.set_title(title)
    ax.legend()
    return fig
