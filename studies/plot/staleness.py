"""How stale updates are: the distribution of the ``staleness`` of global steps per series.

Staleness is the number of versions an update's model was behind when it was applied
(``step`` rows); synchronous strategies are all at zero. Bars are shares of each series'
steps, so runs of different lengths compare; the series' bars stand side by side at each
staleness, so that series with the same distribution (every synchronous one) stay visible.
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
    """Bars of the share of global steps at each staleness, side by side, one per series.

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
    fig, ax = new_axes(ax)
    drawn = series(steps)
    # Side by side, not overlaid: synchronous series all stand at zero, and one outline
    # would hide the others.
    width = 0.8 / len(drawn)
    for i, s in enumerate(drawn):
        values = s.rows["staleness"].to_numpy(dtype=float)
        shares = np.bincount(np.rint(values).astype(int), minlength=top + 1) / len(values)
        where = np.flatnonzero(shares)
        ax.bar(
            where + (i - (len(drawn) - 1) / 2) * width,
            shares[where],
            width=width,
            color=(*s.colour, 0.45),
            edgecolor=s.colour,
            linewidth=1.4,
            linestyle=s.linestyle,
            label=f"{s.label} (mean {values.mean():.2g})",
        )
    if top <= 20:  # whole versions; matplotlib picks ticks for long tails
        ax.set_xticks(range(top + 1))
    ax.set_xlim(-0.6, top + 0.6)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("staleness of each global step's update (versions behind)")
    ax.set_ylabel("share of global steps")
    title = network_title(runs_of(df))
    if top == 0:
        title += "\nevery global step at staleness 0: synchronous updates"
    ax.set_title(title)
    # Below the axes: inside, it would sit on the bars (all at share 1 when synchronous).
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(2, len(drawn)))
    return fig
