"""Cost-versus-convergence figures: loss against simulated (or wall) time and against bytes.

Every function takes results keyed by a label, draws on a given axes (or makes a figure) and
returns the figure, so notebooks can compose them and the CLI can save them.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from runs import RunResult

__all__ = ["loss_curves", "time_breakdown", "comparison"]

_XLABEL = {
    "time": "time (s)",
    "bytes": "MB sent (all ranks)",
    "step": "global steps",
    "samples": "samples processed",
}


def loss_curves(
    results: Mapping[str, RunResult], x: str = "time", ax: Axes | None = None, metric: str = "loss"
) -> Figure:
    """Held-out ``metric`` of the global model against ``x`` for each run.

    Examples
    --------
    >>> import pandas as pd
    >>> evals = pd.DataFrame({"kind": "eval", "time": [0, 1], "bytes": [0, 8], "loss": [2, 1]})
    >>> fig = loss_curves({"run": RunResult({}, {}, evals)}, x="bytes")
    >>> fig.axes[0].get_xlabel()
    'MB sent (all ranks)'
    """
    if x not in _XLABEL:
        raise ValueError(
            f"x={x!r} is not a metrics column to plot against; use one of {list(_XLABEL)}"
        )
    fig, ax = _figure(ax)
    positive = []
    for label, result in results.items():
        evals = result.evals
        values = evals[x] / 1e6 if x == "bytes" else evals[x]
        ax.plot(values, evals[metric], marker=".", markersize=3, label=label)
        positive += [float(v) for v in values if v > 0]
    # Compressed and local strategies send orders of magnitude less: a log axis keeps
    # every curve readable (the start, at zero bytes, is left out).
    if x == "bytes" and positive and max(positive) > 30 * min(positive):
        ax.set_xscale("log", nonpositive="mask")
        ax.set_xlabel(f"{_XLABEL[x]}, log scale")
    else:
        ax.set_xlabel(_XLABEL[x])
    ax.set_ylabel(f"held-out {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def time_breakdown(results: Mapping[str, RunResult], ax: Axes | None = None) -> Figure:
    """Mean share of each rank's time spent computing, communicating and idle, per run."""
    fig, ax = _figure(ax)
    labels = list(results)
    shares = np.zeros((len(labels), 3))
    for i, label in enumerate(labels):
        workers = results[label].ranks
        parts = workers[["compute_time", "comm_time", "idle_time"]].fillna(0).to_numpy()
        totals = parts.sum(axis=1, keepdims=True)
        shares[i] = (parts / np.where(totals > 0, totals, 1)).mean(axis=0)
    left = np.zeros(len(labels))
    for j, (name, colour) in enumerate(
        [("compute", "tab:green"), ("communication", "tab:blue"), ("idle", "tab:grey")]
    ):
        ax.barh(labels, shares[:, j], left=left, color=colour, label=name)
        left += shares[:, j]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of each rank's time (mean over ranks)")
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    return fig


def comparison(results: Mapping[str, RunResult], title: str = "") -> Figure:
    """Loss versus time, loss versus bytes, and the time breakdown, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), constrained_layout=True)
    loss_curves(results, "time", axes[0])
    loss_curves(results, "bytes", axes[1])
    time_breakdown(results, axes[2])
    axes[0].set_title("convergence against time")
    axes[1].set_title("convergence against traffic")
    axes[2].set_title("where the time goes")
    if title:
        fig.suptitle(title)
    return fig


def _figure(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
        return fig, ax
    return ax.figure, ax  # type: ignore[return-value]
