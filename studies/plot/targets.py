"""Time, bytes and steps to a target, one row per run, from the evaluation rows.

The target is a level of the runs' metric (:mod:`studies.plot.metric`: a held-out loss, or a
reinforcement-learning workload's mean return): the one given, else the one the runs were
made with (their ``summary.target_loss``, ``summary.target_return``); a run reaches it at its
first evaluation with ``loss <= target`` (``return >= target``: higher is better). Computed
from the metrics rather than read from the summary, so real runs (which do not stop on a
target) and a target other than the one a run stopped on work the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studies.plot.metric import plotted_metric
from studies.plot.series import runs_of, timing_only_reason

__all__ = ["resolve_target", "to_target"]


def resolve_target(df: pd.DataFrame, target: float | None = None) -> float:
    """``target``, else the one target of the runs' metric (``summary.target_loss``,
    ``summary.target_return``) the runs share.

    Examples
    --------
    >>> resolve_target(pd.DataFrame({"run": ["a"], "summary.target_loss": [0.5]}))
    0.5
    >>> resolve_target(pd.DataFrame({"run": ["a"]}))
    Traceback (most recent call last):
    ...
    ValueError: no target loss: pass target= (--target), or make the runs with target_loss
    >>> resolve_target(pd.DataFrame({"run": ["a"], "summary.metric": ["return"]}))
    Traceback (most recent call last):
    ...
    ValueError: no target return: pass target= (--target), or make the runs with target_return
    """
    reason = timing_only_reason(df)
    if reason is not None:
        raise ValueError(reason)
    metric = plotted_metric(df)
    if target is not None:
        if not math.isfinite(target):
            raise ValueError(f"target={target!r} must be a finite {metric.name}")
        return float(target)
    runs = runs_of(df)
    column = f"summary.{metric.target_key}"
    recorded = sorted(
        {float(v) for v in pd.to_numeric(runs.get(column), errors="coerce").dropna()}
        if column in runs
        else set()
    )
    if not recorded:
        raise ValueError(
            f"no target {metric.name}: pass target= (--target), or make the runs with "
            f"{metric.target_key}"
        )
    if len(recorded) > 1:
        raise ValueError(
            f"the runs were made with different target {metric.name}s {recorded}; pass "
            "target= (--target)"
        )
    return recorded[0]


def to_target(df: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """One row per run (indexed by ``run``): its run-level columns, ``target``, ``reached``,
    and ``time_to_target``, ``bytes_to_target``, ``samples_to_target``, ``step_to_target``
    (NaN where not reached).

    Examples
    --------
    >>> df = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 2, "kind": "eval",
    ...                    "time": [0, 1, 2, 0, 1], "bytes": [0, 10, 20, 0, 5],
    ...                    "samples": 0, "step": [0, 1, 2, 0, 1], "loss": [3, 1, 0.5, 3, 2]})
    >>> to_target(df, target=1)[["reached", "time_to_target", "bytes_to_target"]]
       reached  time_to_target  bytes_to_target
    run
    a     True             1.0             10.0
    b    False             NaN              NaN
    """
    level = resolve_target(df, target)
    metric = plotted_metric(df)
    runs = runs_of(df).copy()
    values = (
        pd.to_numeric(df[metric.name], errors="coerce")
        if metric.name in df
        else pd.Series(np.nan, index=df.index)
    )
    # NaN compares false either way: an evaluation without a value never reaches the target.
    reached = values >= level if metric.maximize else values <= level
    evals = df[(df["kind"] == "eval") & reached]
    first = evals.groupby("run", sort=False).first()
    runs["target"] = level
    runs["reached"] = runs.index.isin(first.index)
    for key in ("time", "bytes", "samples", "step"):
        runs[f"{key}_to_target"] = (
            first[key].reindex(runs.index).astype(float).to_numpy(dtype=np.float64)
        )
    return runs
