"""What a person reads after a run: the summary's key figures as labelled, formatted rows.

Examples
--------
>>> import pandas as pd
>>> from runs import RunResult
>>> ranks = pd.DataFrame({"kind": "rank", "rank": [0, 1], "compute_time": [3.0, 1.0],
...                       "comm_time": [1.0, 1.0], "idle_time": [0.0, 2.0]})
>>> result = RunResult({"backend": "sim"}, {"final_loss": 0.25, "time": 4.0, "steps": 10,
...                    "bytes": 2e6, "steps_per_s": 2.5, "stop_reason": "steps"}, ranks)
>>> for label, value in summary_rows(result):
...     print(f"{label}: {value}")
final loss: 0.25
global steps: 10
simulated time (s): 4
sent (MB): 2
steps/s: 2.5
compute / comm / idle: 50% / 25% / 25%
stopped on: steps
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from runs import RunResult

__all__ = ["summary_rows", "summary_table", "time_shares"]

# (summary key, label, scale): in the order a reader asks "how good, how fast, how costly".
_ROWS: tuple[tuple[str, str, float], ...] = (
    ("final_loss", "final loss", 1.0),
    # A workload evaluated by its mean return (runs.metric) has these instead of a loss.
    ("final_return", "final return", 1.0),
    ("best_return", "best return", 1.0),
    ("final_accuracy", "final accuracy", 1.0),
    ("final_consensus", "consensus distance", 1.0),
    ("steps", "global steps", 1.0),
    ("time", "{clock} time (s)", 1.0),
    # Only a timing-only run's summary has it (its time per global step).
    ("step_time", "step time (s)", 1.0),
    ("time_to_target", "time to target (s)", 1.0),
    ("bytes_to_target", "MB to target", 1e-6),
    ("bytes", "sent (MB)", 1e-6),
    ("steps_per_s", "steps/s", 1.0),
    ("samples_per_s", "samples/s", 1.0),
    ("staleness_mean", "mean staleness", 1.0),
    ("compression_ratio", "compression ratio", 1.0),
    # A worker's peak on the compute model's device: only runs whose compute names a device.
    ("peak_memory_gb", "peak memory per worker (GB)", 1.0),
    ("device_memory_gb", "device memory (GB)", 1.0),
    # What faults cost: in the summary only of a run with a fault schedule.
    ("failures", "failures", 1.0),
    ("restarts", "restarts", 1.0),
    ("lost_steps", "lost steps", 1.0),
    ("lost_samples", "lost samples", 1.0),
    ("recovery_time", "recovery time (s)", 1.0),
    ("heal_bytes", "sent to heal (MB)", 1e-6),
    ("checkpoint_time", "checkpoint time (s)", 1.0),
    ("goodput", "goodput (committed samples/s)", 1.0),
)


def time_shares(result: RunResult, role: str | None = "worker") -> tuple[float, float, float]:
    """Mean share of compute, communication and idle time over the ranks of ``role``
    (all ranks when ``role`` is None or the rows carry no role); NaNs without rank rows."""
    ranks = result.ranks
    if ranks.empty:
        return (math.nan, math.nan, math.nan)
    if role is not None and "role" in ranks and (ranks["role"] == role).any():
        ranks = ranks[ranks["role"] == role]
    parts = ranks[["compute_time", "comm_time", "idle_time"]].fillna(0.0).to_numpy()
    totals = parts.sum(axis=1, keepdims=True)
    shares = (parts / (totals + (totals == 0))).mean(axis=0)
    return (float(shares[0]), float(shares[1]), float(shares[2]))


def summary_rows(result: RunResult) -> list[tuple[str, str]]:
    """``(label, formatted value)`` for the summary figures a run has, time shares included."""
    summary = result.summary
    clock = "simulated" if result.config.get("backend", "sim") == "sim" else "wall"
    rows = []
    for key, label, scale in _ROWS:
        value = summary.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if key.endswith("_to_target") and _has_target(summary):
                rows.append((label, "not reached"))
            continue
        rows.append((label.format(clock=clock), _format(value * scale)))
    for role in ("worker", "server"):
        if role == "server" and not _has_role(result, "server"):
            continue
        shares = time_shares(result, role)
        if not math.isnan(shares[0]):
            label = "compute / comm / idle" + (" (servers)" if role == "server" else "")
            rows.append((label, " / ".join(f"{share:.0%}" for share in shares)))
    rows += _overlap_rows(result)
    if summary.get("stop_reason"):
        rows.append(("stopped on", str(summary["stop_reason"])))
    return rows


def _overlap_rows(result: RunResult) -> list[tuple[str, str]]:
    """Exposed and overlapped communication (the mean worker's, and the critical rank's)
    and MFU, for a run that measured them (:mod:`studies.breakdown`)."""
    from studies.breakdown import breakdown

    if result.ranks.empty or "overlap_time" not in result.ranks:
        return []
    b = breakdown(result)
    rows = []
    row = b.critical_row
    if row is not None:
        workers = b.table[b.table["role"] == "worker"]
        means = (workers["exposed_comm"].mean(), workers["overlapped_comm"].mean())
        rows.append(("comm exposed / overlapped (s)", " / ".join(_format(v) for v in means)))
        parts = [row[c] for c in ("compute", "exposed_comm", "overlapped_comm", "idle")]
        text = " / ".join("-" if math.isnan(v) else _format(float(v)) for v in parts)
        rows.append(
            ("critical rank: compute / exposed / overlapped / idle (s)", f"{b.critical}: {text}")
        )
    if b.mfu is not None:
        rows.append(("MFU", f"{b.mfu:.1%}"))
    return rows


def summary_table(result: RunResult, title: str = "") -> Table:
    """The rows of :func:`summary_rows` as a rich table."""
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for label, value in summary_rows(result):
        table.add_row(label, value)
    return table


def _has_target(summary: dict[str, Any]) -> bool:
    """Whether the run had a target (a loss, or a return: :mod:`runs.metric`)."""
    return "target_loss" in summary or "target_return" in summary


def _has_role(result: RunResult, role: str) -> bool:
    ranks = result.ranks
    return not ranks.empty and "role" in ranks and bool((ranks["role"] == role).any())


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
