"""How stale updates are: the distribution of the ``staleness`` of global steps per series.

Staleness is the number of versions an update's model was behind when it was applied
(``step`` rows); synchronous strategies are all at zero. Bars are shares of each series'
steps, so runs of different lengths compare.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from studies.plot.labels import network_title
from studies.plot.series import runs_of, series
from studies.plot.style import new_axes, styled

__all__ = ["staleness"]


@styled
def staleness(df: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Histogram (as step outlines, one per series) of the staleness of global steps.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load` (its ``step`` rows are used).
    ax
        Axes to draw on; a new figure when omitted.
    """
    steps = df[(df["kind"] == "step")]
    if "staleness" not in steps or steps["staleness"].isna().all():
        raise ValueError("staleness needs step rows with a staleness column; the runs have none")
    steps = steps[steps["staleness"].notna()]
    top = int(np.ceil(steps["staleness"].max()))
    bins = np.arange(-0.5, top + 1.5, 1.0)  # one bin per whole number of versions
    fig, ax = new_axes(ax)
    for s in series(steps):
        values = s.rows["staleness"].to_numpy(dtype=float)
        ax.hist(
            values,
            bins=bins,
            weights=np.full(len(values), 1.0 / len(values)),
            histtype="step",
            linewidth=1.8,
            color=s.colour,
            linestyle=s.linestyle,
            label=f"{s.label} (mean {values.mean():.2g})",
        )
    if top <= 20:  # whole versions; matplotlib picks ticks for long tails
        ax.set_xticks(range(top + 1))
    ax.set_xlabel("staleness of each global step's update (versions behind)")
    ax.set_ylabel("share of global steps")
    ax.set_title(network_title(runs_of(df)))
    ax.legend()
    return fig
