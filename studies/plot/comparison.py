"""Three panels side by side: loss against time, loss against bytes, where the time goes.

The curves are of the runs' own metric (:mod:`studies.plot.metric`): the loss, or a
reinforcement-learning workload's mean return.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from studies.plot.breakdown import breakdown
from studies.plot.curves import loss_vs_bytes, loss_vs_time
from studies.plot.style import styled

__all__ = ["comparison"]


@styled
def comparison(df: pd.DataFrame, title: str = "") -> Figure:
    """Loss against time and against bytes, and the time breakdown, of the runs in ``df``.

    Examples
    --------
    >>> import sim
    >>> from studies.load import from_results
    >>> result = sim.run("allreduce", "quadratic", "ring:n=2", steps=4, eval_every=2)
    >>> fig = comparison(from_results({"ring": result}), title="two ranks")
    >>> [ax.get_title() for ax in fig.axes]
    ['convergence against time', 'convergence against traffic', 'where the time goes']
    """
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    loss_vs_time(df, ax=axes[0])
    loss_vs_bytes(df, ax=axes[1])
    breakdown(df, ax=axes[2])
    # The network is said once, in the figure title; panels say what they show.
    network = axes[0].get_title()
    for ax, name in zip(
        axes, ["convergence against time", "convergence against traffic", "where the time goes"]
    ):
        ax.set_title(name)
    fig.suptitle("\n".join(t for t in (title, network) if t))
    return fig
