"""What failures cost: time to a target loss or return (left; :mod:`studies.plot.targets`)
and goodput (right) against the mean time between failures, one line per series (a strategy
with its recovery policy, e.g. ``allreduce(fault_tolerance=quorum)``), from a sweep over
``faults.events[0].mtbf``.

A run's MTBF is the smallest ``mtbf`` of its schedule's random crashes (``config.faults``, in
seconds, per rank). No run is dropped silently: runs that never reached the target are a
hollow circle at the top edge of the time panel, and runs that failed (a fault their policy
does not survive: ``status`` ``failed``; even one whose last evaluation, made as it failed,
was under the target) a cross there and on the goodput panel's zero line, each annotated
``failed k/n`` or ``not reached k/n``; runs without random crashes are counted in the title.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from studies.plot.labels import clock, field_axis, network_title
from studies.plot.metric import plotted_metric, reach_label
from studies.plot.series import runs_of, series
from studies.plot.style import styled
from studies.plot.targets import to_target

__all__ = ["EVENT_MTBF", "MTBF", "faults", "mtbf_of"]

#: The column :func:`faults` adds: each run's MTBF in seconds (NaN without random crashes).
MTBF = "faults.mtbf"
_LABEL = "mean time between failures per rank (s)"
#: The columns (and sweep fields) of a random crash event's mtbf: ``faults.events[0].mtbf``.
EVENT_MTBF = re.compile(r"faults\.events\[\d+\]\.mtbf")


def mtbf_of(df: pd.DataFrame) -> pd.Series:
    """Each row's MTBF: the smallest ``mtbf`` of its run's random crash events (the columns
    ``faults.events[i].mtbf`` that :func:`studies.load.load` makes of ``config.faults``); NaN
    for a run without them.

    Examples
    --------
    >>> mtbf_of(pd.DataFrame({"faults.events[0].mtbf": [30.0, None, None],
    ...                       "faults.events[1].mtbf": [10.0, 5.0, None]})).tolist()
    [10.0, 5.0, nan]
    """
    columns = [c for c in df.columns if EVENT_MTBF.fullmatch(str(c))]
    if not columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return df[columns].apply(pd.to_numeric, errors="coerce").min(axis=1)


def _draw_misses(
    ax: Axes, misses: list[tuple[float, tuple[float, float, float], str, str]], y: float
) -> None:
    for value, rgb, marker, text in misses:
        face = "none" if marker == "o" else rgb
        ax.scatter([value], [y], marker=marker, s=60, facecolors=face, edgecolors=[rgb])
        ax.annotate(text, (value, y), textcoords="offset points", xytext=(6, 4), fontsize=7)


@styled
def faults(
    df: pd.DataFrame,
    target: float | None = None,
    ax: tuple[Axes, Axes] | None = None,
) -> Figure:
    """Time to ``target`` and goodput against the MTBF, one line per series.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load` of runs with random crashes
        (``[[faults.events]] kind = "crash"``, ``mtbf = ...``), typically a sweep over
        ``faults.events[0].mtbf`` and the strategies or recovery policies to compare.
    target
        The loss (return) to reach; by default the ``target_loss`` (``target_return``) the
        runs were made with.
    ax
        Two axes (time to target, goodput); a new figure with both when omitted.

    Examples
    --------
    >>> rows = pd.DataFrame({
    ...     "run": ["a", "a", "b", "b"], "kind": "eval", "backend": "sim",
    ...     "strategy.name": "allreduce", "status": ["finished"] * 2 + ["failed"] * 2,
    ...     "faults.events[0].kind": "crash", "faults.events[0].mtbf": [10.0] * 2 + [1.0] * 2,
    ...     "time": [0, 2.0, 0, 1.0], "step": [0, 4, 0, 2], "samples": 0, "bytes": 0,
    ...     "loss": [1.0, 0.2, 1.0, 0.8], "summary.goodput": [50.0, 50.0, None, None]})
    >>> left, right = faults(rows, target=0.5).axes
    >>> left.lines[0].get_xdata().tolist(), left.lines[0].get_ydata().tolist()
    ([10.0], [2.0])
    >>> [t.get_text() for t in left.texts], [t.get_text() for t in right.texts]
    (['failed 1/1'], ['failed 1/1'])
    """
    df = df.assign(**{MTBF: mtbf_of(df)})
    reached = to_target(df, target)
    level = float(reached["target"].iloc[0])
    placed = reached[reached[MTBF].notna()]
    if placed.empty:
        raise ValueError(
            "no run has random crashes (a crash event with an mtbf), so there is no MTBF to "
            'draw against; make them with [[faults.events]] kind = "crash", mtbf = "300s" and '
            "sweep faults.events[0].mtbf"
        )
    if ax is None:
        fig, (time_ax, good_ax) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    else:
        time_ax, good_ax = ax
        figure = time_ax.get_figure()
        assert isinstance(figure, Figure)
        fig = figure
    positions = pd.Series(field_axis(time_ax, MTBF, placed[MTBF]), index=placed.index)
    field_axis(good_ax, MTBF, placed[MTBF])
    failed = (
        placed["status"].eq("failed")
        if "status" in placed
        else pd.Series(False, index=placed.index)
    )
    # A failed run is drawn as failed, even where its last evaluation (made as it failed)
    # was under the target: what it shows is that the policy did not survive this rate.
    placed = placed.assign(time_to_target=placed["time_to_target"].where(~failed))
    goodput = pd.to_numeric(
        placed.get("summary.goodput", pd.Series(np.nan, index=placed.index)), errors="coerce"
    )
    top_misses: list[tuple[float, tuple[float, float, float], str, str]] = []
    zero_misses: list[tuple[float, tuple[float, float, float], str, str]] = []
    for s in series(df, across=[MTBF]):
        runs = placed[placed.index.isin(s.runs)]
        if runs.empty:
            continue
        xs, means, goods = [], [], []
        for value, group in runs.groupby(positions[runs.index], sort=True):
            x = float(value)
            times = group["time_to_target"].dropna()
            if len(times):
                xs.append(x)
                means.append(float(times.mean()))
            lost = group[group["time_to_target"].isna()]
            crashed = int(failed[lost.index].sum())
            if crashed:
                top_misses.append((x, s.colour, "X", f"failed {crashed}/{len(group)}"))
            if len(lost) > crashed:
                top_misses.append(
                    (x, s.colour, "o", f"not reached {len(lost) - crashed}/{len(group)}")
                )
            ran = goodput[group.index][~failed[group.index]].dropna()
            if len(ran):
                goods.append((x, float(ran.mean())))
            if failed[group.index].any():
                n = int(failed[group.index].sum())
                zero_misses.append((x, s.colour, "X", f"failed {n}/{len(group)}"))
        every_run_failed = bool(failed[runs.index].all())
        label = (
            s.label if xs else f"{s.label} ({'failed' if every_run_failed else 'never reached'})"
        )
        time_ax.plot(xs, means, color=s.colour, linestyle=s.linestyle, marker="o", label=label)
        good_ax.plot(
            [g[0] for g in goods],
            [g[1] for g in goods],
            color=s.colour,
            linestyle=s.linestyle,
            marker="o",
            label=s.label,
        )
    handles, _ = time_ax.get_legend_handles_labels()
    if top_misses:
        reached_times = placed["time_to_target"].dropna()
        top = 1.15 * float(reached_times.max()) if len(reached_times) else 1.0
        _draw_misses(time_ax, top_misses, top)
        time_ax.set_ylim(0, top * 1.1)
        for marker, text in (("o", "not reached"), ("X", "failed")):
            if any(m[2] == marker for m in top_misses):
                face = "none" if marker == "o" else "grey"
                handles.append(
                    Line2D([], [], marker=marker, ls="", mfc=face, color="grey", label=text)
                )
    _draw_misses(good_ax, zero_misses, 0.0)
    good_ax.set_ylim(bottom=0)
    when = clock(placed["backend"]) if "backend" in placed else "simulated"
    time_ax.set_ylabel(f"{when} time to {reach_label(plotted_metric(df), level)} (s)")
    good_ax.set_ylabel("goodput (committed samples/s)")
    for axes in (time_ax, good_ax):
        axes.set_xlabel(_LABEL)
    notes = [network_title(runs_of(df))]
    unplaced = reached.index[reached[MTBF].isna()]
    if len(unplaced):
        notes.append(f"{len(unplaced)} run(s) without random crashes not shown")
    fig.suptitle("\n".join(notes))
    time_ax.legend(handles=handles, title="mean over seeds")
    good_ax.set_title("failed runs: ✕ at zero")
    return fig
