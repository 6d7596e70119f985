"""Time, bytes and steps to a target loss, one row per run, from the evaluation rows.

The target is the one given, else the ``target_loss`` the runs were made with (their
``summary.target_loss``); a run reaches it at its first evaluation with ``loss <= target``.
Computed from the metrics rather than read from the summary, so real runs (which do not
stop on a target) and a target other than the one a run stopped on work the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studies.plot.series import runs_of, timing_only_reason

__all__ = ["resolve_target", "to_target"]


def resolve_target(df: pd.DataFrame, target: float | None = None) -> float:
    """``target``, else the one ``summary.target_loss`` the runs share.

    Examples
    --------
    >>> resolve_target(pd.DataFrame({"run": ["a"], "summary.target_loss": [0.5]}))
    0.5
    >>> resolve_target(pd.DataFrame({"run": ["a"]}))
    Traceback (most recent call last):
    ...
    ValueError: no target loss: pass target= (--target), or make the runs with target_loss
    """
    reason = timing_only_reason(df)
    if reason is not None:
        raise ValueError(reason)
    if target is not None:
        if not math.isfinite(target):
            raise ValueError(f"target={target!r} must be a finite loss")
        return float(target)
    runs = runs_of(df)
    recorded = sorted(
        {float(v) for v in pd.to_numeric(runs.get("summary.target_loss"), errors="coerce").dropna()}
        if "summary.target_loss" in runs
        else set()
    )
    if not recorded:
        raise ValueError(
            "no target loss: pass target= (--target), or make the runs with target_loss"
        )
    if len(recorded) > 1:
        raise ValueError(
            f"the runs were made with different target losses {recorded}; pass target= (--target)"
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
    runs = runs_of(df).copy()
    evals = df[(df["kind"] == "eval") & (pd.to_numeric(df["loss"], errors="coerce") <= level)]
    first = evals.groupby("run", sort=False).first()
    runs["target"] = level
    runs["reached"] = runs.index.isin(first.index)
    for key in ("time", "bytes", "samples", "step"):
        runs[f"{key}_to_target"] = (
            first[key].reindex(runs.index).astype(float).to_numpy(dtype=np.float64)
        )
    return runs
