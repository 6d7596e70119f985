"""Where the time goes: compute, communication and idle shares per series and rank role.

Each rank's time is split into its three parts (shares of their sum), averaged over the
ranks of one role (``worker`` or ``server``, from the ``role`` column of rank rows; all ranks
are workers where it is absent) and over seeds. Servers get a bar of their own, below their
series' workers. Real runs do not measure idle time: it counts as zero there.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from studies.plot.labels import network_title
from studies.plot.series import runs_of, series
from studies.plot.style import PHASE_COLOURS, new_axes, styled

__all__ = ["breakdown", "shares"]

_PARTS = {"compute": "compute_time", "communication": "comm_time", "idle": "idle_time"}


def shares(ranks: pd.DataFrame) -> pd.DataFrame:
    """Mean share of compute, communication and idle time per role of ``ranks`` (rank rows).

    Examples
    --------
    >>> ranks = pd.DataFrame({"compute_time": [3.0, 3.0], "comm_time": [1.0, 1.0],
    ...                       "idle_time": [0.0, 1.0]})
    >>> shares(ranks).round(3)
            compute  communication   idle
    role
    worker    0.675          0.225  0.100
    """
    parts = ranks[list(_PARTS.values())].astype(float).fillna(0.0).to_numpy()
    totals = parts.sum(axis=1, keepdims=True)
    fractions = pd.DataFrame(
        parts / np.where(totals > 0, totals, 1.0), columns=list(_PARTS), index=ranks.index
    )
    role = ranks["role"].fillna("worker") if "role" in ranks else "worker"
    return fractions.assign(role=role).groupby("role").mean()


@styled
def breakdown(df: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Stacked bars of compute, communication and idle shares, one per series and role.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load` (its ``rank`` rows are used).
    ax
        Axes to draw on; a new figure when omitted.
    """
    ranks = df[df["kind"] == "rank"]
    if ranks.empty:
        raise ValueError("breakdown needs rank rows (kind == 'rank'); the runs have none")
    labels, rows = [], []
    for s in series(ranks):
        table = shares(s.rows)
        for role in sorted(table.index, key=lambda r: (r != "worker", r)):
            labels.append(f"{s.label} · {role}s" if len(table) > 1 or role != "worker" else s.label)
            rows.append(table.loc[role].to_numpy())
    values = np.array(rows)
    fig, ax = new_axes(ax, size=(8, 0.45 * len(labels) + 1.8))
    left = np.zeros(len(labels))
    for j, (name, colour) in enumerate(PHASE_COLOURS.items()):
        ax.barh(labels, values[:, j], left=left, color=colour, label=name)
        left += values[:, j]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of rank time (mean over ranks, seeds)")
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    # Long bar labels leave the axes narrow: wrap the title rather than clip it.
    ax.set_title(textwrap.fill(network_title(runs_of(df)), 50))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    return fig
