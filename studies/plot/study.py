"""The figures a study is looked at through, chosen from what its runs hold.

A sweep over the network or the workers is read through loss against time and bytes, the time
to the target loss against each swept field, and the Pareto front of time against bytes to
target (and, for a sweep over failure rates, ``faults.events[i].mtbf``, time to target and
goodput against the MTBF); :func:`study_figures` draws those that the runs can support and says why it skipped
the others, so that ``commsim sweep`` can end with figures instead of a table alone.

Examples
--------
>>> figure_fields(["topology.bandwidth", "strategy", "run.seed", "topology.n"])
['topology.bandwidth', 'topology.n']
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from studies.plot.breakdown import breakdown
from studies.plot.curves import loss_vs_bytes, loss_vs_time
from studies.plot.faults import EVENT_MTBF as _EVENT_MTBF
from studies.plot.faults import faults
from studies.plot.pareto import pareto
from studies.plot.series import require_field
from studies.plot.time_to_target import time_to_target

__all__ = ["figure_fields", "study_figures"]

# Fields that name a series (strategy, workload) or are averaged over (seeds): never an axis.
_NOT_AN_AXIS = ("strategy", "workload", "run.seed")


def figure_fields(swept: Sequence[str]) -> list[str]:
    """The swept fields worth an x axis of their own, in the order swept."""
    return [
        field
        for field in dict.fromkeys(swept)
        if not any(field == part or field.startswith(f"{part}.") for part in _NOT_AN_AXIS)
    ]


def _column(df: pd.DataFrame, field: str) -> str | None:
    """The loaded column of an experiment field (:func:`require_field`'s choice), or None
    when it is missing or no strategy's runs take two values of it: a field zipped with the
    strategy (a parameter server's extra host) is part of what names a line, not an axis."""
    try:
        column = require_field(df, field)
    except ValueError:
        return None
    values = df.groupby("strategy.name")[column].nunique(dropna=True)
    return column if len(values) and values.max() > 1 else None


def study_figures(
    df: pd.DataFrame,
    out: str | Path,
    swept: Sequence[str] = (),
    target: float | None = None,
    suffix: str = ".png",
) -> list[Path]:
    """Draw a study's figures into directory ``out``; return the files written.

    Parameters
    ----------
    df
        A table from :func:`studies.load.load` (e.g. ``SweepResult.load()``).
    out
        The directory the figures go to (made when missing).
    swept
        The fields the study varies (``topology.bandwidth`` ...): one time-to-target figure
        each, except the strategy, workload and seed, which lines and error bars show.
    target
        The target loss (or return, for runs evaluated by their return); by default the one
        the runs were made with. Without either, the time-to-target and Pareto figures are
        skipped.
    suffix
        ``.png``, ``.pdf`` or ``.svg``.

    Figures the runs cannot support (no run reached the target, nothing varies along a
    field) are skipped with a warning naming why; the others are still written.
    """
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    # The target the runs were made with: a loss, or (reinforcement learning) a return.
    has_target = target is not None or any(
        key in df and df[key].notna().any() for key in ("target_loss", "target_return")
    )
    plans: list[tuple[str, Callable[[], Figure]]] = [
        ("loss-vs-time", lambda: loss_vs_time(df)),
        ("loss-vs-bytes", lambda: loss_vs_bytes(df)),
    ]
    if has_target:
        fields = figure_fields(swept)
        if any(_EVENT_MTBF.fullmatch(field) for field in fields):
            # Failure rates get the faults figure (time to target and goodput, failed runs
            # marked), not a plain time-to-target one.
            fields = [field for field in fields if not _EVENT_MTBF.fullmatch(field)]
            plans.append(("faults", lambda: faults(df, target=target)))
        for field in fields:
            column = _column(df, field)
            if column is not None:
                plans.append(
                    (
                        f"time-to-target-{field.rsplit('.', 1)[-1]}",
                        functools.partial(time_to_target, df, x=column, target=target),
                    )
                )
        plans.append(("pareto", lambda: pareto(df, target=target)))
    plans.append(("breakdown", lambda: breakdown(df)))
    written = []
    for name, draw in plans:
        try:
            figure = draw()
        except ValueError as exc:
            warnings.warn(f"{name}: skipped: {exc}", stacklevel=2)
            continue
        path = directory / f"{name}{suffix}"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
