"""Loss against time and against bytes: one line per series, seeds averaged.

The curve is of the runs' own metric (:mod:`studies.plot.metric`): the held-out loss, or, for
runs of a reinforcement-learning workload, the mean return (higher is better, said on the
axis); runs of different metrics are refused in one line.

Simulated runs are solid and real ones dashed, on the same axes. Where a series has several
seeds its line is the mean over them and a band spans their minimum to maximum; each run is
interpolated onto the union of the runs' x values, and a run that stopped earlier (on its
target) holds its last value. On loss against time, a run's faults (its ``fault`` rows: a
crash, a restart, a rejoin ...) are markers at their times along the bottom of the axes
(:data:`FAULT_MARKERS`); runs without faults get none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from studies.plot.labels import network_title, time_label
from studies.plot.metric import metric_label, plotted_metric
from studies.plot.series import Series, runs_of, series, timing_only_reason
from studies.plot.style import colour, new_axes, styled

__all__ = ["FAULT_MARKERS", "loss_vs_bytes", "loss_vs_time"]

#: Bytes are drawn on a log axis when the largest is this many times the smallest non-zero.
LOG_SPAN = 30.0

#: How a ``fault`` row is marked on a loss-against-time figure, by its ``event``: a tick at
#: its time along the bottom of the axes, in its series' colour; an event not named here
#: (a link going down, a slowed rank) is a plain tick.
FAULT_MARKERS = {"crash": "x", "restart": "^", "rejoin": "o", "lost": "v"}
_OTHER_FAULT = "|"
_HOLLOW = frozenset({"o", "^", "v"})


def _curve(rows: pd.DataFrame, x: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    evals = rows[(rows["kind"] == "eval") & rows[metric].notna()].sort_values(["step", x])
    values = evals[x].to_numpy(dtype=float)
    return values / 1e6 if x == "bytes" else values, evals[metric].to_numpy(dtype=float)


@dataclass
class _Line:
    """One series' curve: the mean over its runs, and their minimum and maximum."""

    series: Series
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int


def _curves(df: pd.DataFrame, x: str, metric: str) -> list[_Line]:
    """Each series' line: x values, mean, minimum and maximum over its seeds' runs."""
    lines = []
    for s in series(df):
        curves = [_curve(rows, x, metric) for _, rows in s.rows.groupby("run", sort=False)]
        curves = [(cx, cy) for cx, cy in curves if len(cx)]
        if not curves:
            continue
        if len(curves) == 1:
            cx, cy = curves[0]
            lines.append(_Line(s, cx, cy, cy, cy, 1))
            continue
        grid = np.unique(np.concatenate([cx for cx, _ in curves]))
        ys = np.array([np.interp(grid, cx, cy) for cx, cy in curves])
        lines.append(_Line(s, grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0), len(ys)))
    return lines


def _same(a: _Line, b: _Line) -> bool:
    return all(
        len(u) == len(v) and np.allclose(u, v, equal_nan=True)
        for u, v in zip((a.x, a.mean, a.low, a.high), (b.x, b.mean, b.low, b.high))
    )


def _merged(lines: list[_Line]) -> list[tuple[str, tuple[float, float, float], _Line]]:
    """Lines of one strategy configuration that are the same curve (traffic and loss of a
    synchronous strategy do not depend on the network) as one line, named by every variant:
    ``allreduce, 100 Mbit/s = 1 Gbit/s``."""
    groups: list[list[_Line]] = []
    for line in lines:
        s = line.series
        for group in groups:
            first = group[0].series
            if (first.name, first.real) == (s.name, s.real) and _same(group[0], line):
                group.append(line)
                break
        else:
            groups.append([line])
    drawn = []
    for group in groups:
        members = [line.series for line in group]
        s = members[0]
        if len(members) == 1:
            drawn.append((s.label, s.colour, group[0]))
            continue
        label = ", ".join([s.name, " = ".join(", ".join(m.details) for m in members)])
        label += " (real)" if s.real else ""
        # All of a strategy's lines in one: its own colour, not the shade of one variant.
        every = all(line.series in members for line in lines if line.series.strategy == s.strategy)
        drawn.append((label, colour(s.strategy) if every else s.colour, group[0]))
    return drawn


def _metric(df: pd.DataFrame, metric: str | None) -> tuple[str, str]:
    """The column to draw and its axis label: ``metric``, else the runs' own."""
    if metric is None:
        own = plotted_metric(df)
        return own.name, metric_label(own)
    return metric, f"held-out {metric}"


def _draw(df: pd.DataFrame, x: str, ax: Axes, metric: str) -> tuple[list[float], bool]:
    reason = timing_only_reason(df)
    if reason is not None:
        raise ValueError(reason)
    if metric not in df:
        raise ValueError(
            f"the runs have no {metric!r} column; plot 'loss', 'accuracy' or 'return' (the "
            "one they have), or leave metric out: the runs' own"
        )
    lines = _curves(df, x, metric)
    if x == "bytes":
        drawn = _merged(lines)
    else:
        drawn = [(line.series.label, line.series.colour, line) for line in lines]
    averaged = False
    for label, rgb, line in drawn:
        style: dict[str, Any] = {"color": rgb, "linestyle": line.series.linestyle, "label": label}
        if line.runs == 1:
            ax.plot(line.x, line.mean, marker=".", markersize=3, **style)
        else:
            averaged = True
            ax.plot(line.x, line.mean, **style)
            ax.fill_between(line.x, line.low, line.high, color=rgb, alpha=0.2, lw=0)
    return [float(v) for line in lines for v in line.x], averaged


def _finish(df: pd.DataFrame, ax: Axes, label: str, averaged: bool) -> None:
    ax.set_ylabel(label)
    ax.set_title(network_title(runs_of(df)))
    ax.legend(title="mean over seeds, band min–max" if averaged else None)


@styled
def loss_vs_time(df: pd.DataFrame, ax: Axes | None = None, metric: str | None = None) -> Figure:
    """Held-out ``metric`` of the global model against time, one line per series.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    ax
        Axes to draw on; a new figure when omitted.
    metric
        An evaluation column: ``"loss"``, ``"accuracy"``, ``"return"``; by default the runs'
        own metric (the loss, or a reinforcement-learning workload's mean return).

    Examples
    --------
    >>> evals = pd.DataFrame({"run": "r", "kind": "eval", "backend": "sim",
    ...                       "strategy.name": "allreduce", "step": [0, 1], "time": [0, 1.5],
    ...                       "bytes": [0, 8], "loss": [2.0, 1.0]})
    >>> ax = loss_vs_time(evals).axes[0]
    >>> ax.get_xlabel(), [line.get_label() for line in ax.lines], ax.lines[0].get_xdata().tolist()
    ('simulated time (s)', ['allreduce'], [0.0, 1.5])
    """
    fig, ax = new_axes(ax)
    column, label = _metric(df, metric)
    _, averaged = _draw(df, "time", ax, column)
    ax.set_xlabel(time_label(runs_of(df).get("backend", pd.Series(["sim"]))))
    _finish(df, ax, label, averaged)
    _fault_markers(df, ax)
    return fig


def _fault_markers(df: pd.DataFrame, ax: Axes) -> None:
    """Each ``fault`` row (a crash, a restart, a rejoin ...) as a marker at its time along the
    bottom of ``ax``, one row of markers per series in its colour, one shape per event;
    nothing at all for runs without faults."""
    if "event" not in df or not (df["kind"] == "fault").any():
        return
    shapes: dict[str, str] = {}
    row = 0
    for s in series(df):
        rows = s.rows[s.rows["kind"] == "fault"]
        if rows.empty:
            continue
        # x in data, y in axes fractions: the markers stay at the bottom whatever the loss.
        where = blended_transform_factory(ax.transData, ax.transAxes)
        for event, group in rows.groupby(rows["event"].map(str), sort=True):
            shape = FAULT_MARKERS.get(event, _OTHER_FAULT)
            shapes[event] = shape
            # Hollow shapes take an edge colour; line markers (x, |) only a colour.
            colours: dict[str, Any] = (
                {"facecolors": "none", "edgecolors": [s.colour]}
                if shape in _HOLLOW
                else {"c": [s.colour]}
            )
            ax.scatter(
                group["time"].to_numpy(dtype=float),
                np.full(len(group), 0.03 + 0.04 * row),
                marker=shape,
                s=28,
                linewidths=1.0,
                transform=where,
                clip_on=False,
                zorder=3,
                **colours,
            )
        row += 1
    handles, _ = ax.get_legend_handles_labels()
    for event, shape in shapes.items():
        handles.append(
            Line2D([], [], marker=shape, ls="", color="grey", mfc="none", label=f"fault: {event}")
        )
    legend = ax.get_legend()
    ax.legend(handles=handles, title=legend.get_title().get_text() if legend else None)


@styled
def loss_vs_bytes(df: pd.DataFrame, ax: Axes | None = None, metric: str | None = None) -> Figure:
    """Held-out ``metric`` (by default the runs' own) against MB sent by all ranks; a log axis (linear from zero to the
    smallest traffic, so that the start is drawn) when the runs' traffic spans more than
    :data:`LOG_SPAN` times (compressed and local strategies send far less). Lines of one
    strategy configuration that are the same curve (a synchronous strategy's traffic and loss
    do not depend on the network) are drawn once, named by all of them.

    Examples
    --------
    >>> evals = pd.DataFrame({"run": "r", "kind": "eval", "backend": "sim",
    ...                       "strategy.name": "allreduce", "step": [0, 1, 2],
    ...                       "time": [0, 1, 2], "bytes": [0, 1e6, 1e8], "loss": [2, 1, 0.5]})
    >>> loss_vs_bytes(evals).axes[0].get_xlabel()
    'MB sent (all ranks), log scale above 1'
    """
    fig, ax = new_axes(ax)
    column, label = _metric(df, metric)
    xs, averaged = _draw(df, "bytes", ax, column)
    positive = [v for v in xs if v > 0]
    if positive and max(positive) > LOG_SPAN * min(positive):
        # Logarithmic from the smallest non-zero traffic on, linear below it: the start (and
        # a local strategy's steps before its first exchange), at zero bytes, stay drawn.
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlim(left=0)
        ax.set_xlabel(f"MB sent (all ranks), log scale above {min(positive):.2g}")
    else:
        ax.set_xlabel("MB sent (all ranks)")
    _finish(df, ax, label, averaged)
    return fig
