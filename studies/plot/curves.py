"""Loss against time and against bytes: one line per series, seeds averaged.

Simulated runs are solid and real ones dashed, on the same axes. Where a series has several
seeds its line is the mean over them and a band spans their minimum to maximum; each run is
interpolated onto the union of the runs' x values, and a run that stopped earlier (on its
target) holds its last value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from studies.plot.labels import network_title, time_label
from studies.plot.series import runs_of, series
from studies.plot.style import new_axes, styled

__all__ = ["loss_vs_bytes", "loss_vs_time"]

#: Bytes are drawn on a log axis when the largest is this many times the smallest non-zero.
LOG_SPAN = 30.0


def _curve(rows: pd.DataFrame, x: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    evals = rows[(rows["kind"] == "eval") & rows[metric].notna()].sort_values(["step", x])
    values = evals[x].to_numpy(dtype=float)
    return values / 1e6 if x == "bytes" else values, evals[metric].to_numpy(dtype=float)


def _draw(df: pd.DataFrame, x: str, ax: Axes, metric: str) -> tuple[list[float], bool]:
    if metric not in df:
        raise ValueError(f"the runs have no {metric!r} column; plot 'loss' or 'accuracy'")
    xs: list[float] = []
    averaged = False
    for s in series(df):
        curves = [_curve(rows, x, metric) for _, rows in s.rows.groupby("run", sort=False)]
        curves = [(cx, cy) for cx, cy in curves if len(cx)]
        if not curves:
            continue
        style = {"color": s.colour, "linestyle": s.linestyle, "label": s.label}
        if len(curves) == 1:
            cx, cy = curves[0]
            ax.plot(cx, cy, marker=".", markersize=3, **style)
        else:
            averaged = True
            grid = np.unique(np.concatenate([cx for cx, _ in curves]))
            ys = np.array([np.interp(grid, cx, cy) for cx, cy in curves])
            ax.plot(grid, ys.mean(axis=0), **style)
            ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=s.colour, alpha=0.2, lw=0)
        xs += [float(v) for cx, _ in curves for v in cx]
    return xs, averaged


def _finish(df: pd.DataFrame, ax: Axes, metric: str, averaged: bool) -> None:
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title(network_title(runs_of(df)))
    ax.legend(title="mean over seeds, band min–max" if averaged else None)


@styled
def loss_vs_time(df: pd.DataFrame, ax: Axes | None = None, metric: str = "loss") -> Figure:
    """Held-out ``metric`` of the global model against time, one line per series.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load`.
    ax
        Axes to draw on; a new figure when omitted.
    metric
        An evaluation column: ``"loss"`` or ``"accuracy"``.

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
    _, averaged = _draw(df, "time", ax, metric)
    ax.set_xlabel(time_label(runs_of(df).get("backend", pd.Series(["sim"]))))
    _finish(df, ax, metric, averaged)
    return fig


@styled
def loss_vs_bytes(df: pd.DataFrame, ax: Axes | None = None, metric: str = "loss") -> Figure:
    """Held-out ``metric`` against MB sent by all ranks; a log axis when the runs' traffic
    spans more than :data:`LOG_SPAN` times (compressed and local strategies send far less).

    Examples
    --------
    >>> evals = pd.DataFrame({"run": "r", "kind": "eval", "backend": "sim",
    ...                       "strategy.name": "allreduce", "step": [0, 1, 2],
    ...                       "time": [0, 1, 2], "bytes": [0, 1e6, 1e8], "loss": [2, 1, 0.5]})
    >>> loss_vs_bytes(evals).axes[0].get_xlabel()
    'MB sent (all ranks), log scale'
    """
    fig, ax = new_axes(ax)
    xs, averaged = _draw(df, "bytes", ax, metric)
    positive = [v for v in xs if v > 0]
    if positive and max(positive) > LOG_SPAN * min(positive):
        # The start, at zero bytes, cannot be drawn on a log axis: it is masked.
        ax.set_xscale("log", nonpositive="mask")
        ax.set_xlabel("MB sent (all ranks), log scale")
    else:
        ax.set_xlabel("MB sent (all ranks)")
    _finish(df, ax, metric, averaged)
    return fig
