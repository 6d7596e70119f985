"""A finished run's result, assembled once for both backends: the ledger's rows and counts,
the backend's time and bytes, the trace and the compute times become a
:class:`runs.RunResult`.
"""

from __future__ import annotations

from typing import Any

from runs import RunResult, Trace, summarize
from strategies.ledger import Ledger

__all__ = ["result_of", "summary_of"]


def summary_of(
    ledger: Ledger,
    *,
    time: float,
    nbytes: float,
    wall_time: float,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """The run's summary from its ledger (``stop_reason``: the ledger's unless given, e.g.
    ``"interrupted"``): steps, samples of applied gradients and the discarded ones, the final
    loss (or the workload's own metric, :mod:`runs.metric`), ``*_to_target`` when the run
    had a target."""
    import pandas as pd

    summary = summarize(
        pd.DataFrame(ledger.rows),
        stop_reason=ledger.stop_reason if stop_reason is None else stop_reason,
        steps=ledger.step,
        samples=ledger.samples,
        nbytes=nbytes,
        time=time,
        wall_time=wall_time,
        discarded_samples=ledger.discarded_samples,
        metric=ledger.metric,
        target=ledger.target,
    )
    if ledger.with_faults:
        summary.update(ledger.faults.summary(samples=ledger.samples, time=time))
    return summary


def result_of(
    ledger: Ledger,
    config: dict[str, Any],
    *,
    time: float,
    nbytes: float,
    wall_time: float,
    trace: Trace | None,
    compute: Any = None,
) -> RunResult:
    """The :class:`runs.RunResult` of a finished ledger: its rows, summary and global
    parameters, with the run's ``trace`` and per-gradient ``compute`` times."""
    import pandas as pd

    return RunResult(
        config,
        summary_of(ledger, time=time, nbytes=nbytes, wall_time=wall_time),
        pd.DataFrame(ledger.rows),
        parameters=ledger.global_parameters(),
        trace=trace,
        compute=compute,
    )
