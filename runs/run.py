"""One run's result: resolved config, summary and the tidy metrics table (see ``schema``).

A simulated and a real run of the same config produce the same columns, so a study can load
and plot them side by side.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from runs.schema import COLUMNS, COMPUTE_FILE, METRICS_FILE, RUN_FILE
from runs.trace import Trace
from runs.writer import RunWriter

__all__ = ["RunResult", "gradient_times", "read_metrics", "read_record", "summarize"]


@dataclass
class RunResult:
    """One run: its resolved config, a summary, and the tidy metrics table."""

    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Final flat parameters of the global model (kept in memory, not written to disk).
    parameters: Any = None
    #: The run's timeline (``trace.document()`` is what ``trace.json`` holds; :meth:`load`
    #: does not read it back: it is for trace viewers).
    trace: Trace | None = None
    #: Every rank's compute seconds per gradient (``rank``, ``gradient``, ``seconds``: what
    #: ``compute.csv`` holds), or None when not recorded.
    compute: pd.DataFrame | None = None

    @property
    def evals(self) -> pd.DataFrame:
        """The evaluation rows: loss (and accuracy) of the global model over time and bytes."""
        return self._kind("eval")

    @property
    def steps(self) -> pd.DataFrame:
        """One row per global step, with the staleness of its update."""
        return self._kind("step")

    @property
    def ranks(self) -> pd.DataFrame:
        """Per-rank compute, communication and idle time."""
        return self._kind("rank")

    @property
    def logs(self) -> pd.DataFrame:
        """Values strategies logged (``w.log``), one row per call."""
        return self._kind("log")

    def _kind(self, kind: str) -> pd.DataFrame:
        if self.metrics.empty:
            return self.metrics
        rows = self.metrics[self.metrics["kind"] == kind]
        # Drop the other kinds' columns, but keep this kind's own even when unmeasured (NaN),
        # so sim and real results have the same columns.
        keep = [c for c in rows.columns if c in COLUMNS.get(kind, ()) or rows[c].notna().any()]
        return rows[keep].reset_index(drop=True)

    def save(self, directory: str | Path) -> Path:
        """Write ``run.json`` and ``metrics.parquet`` into ``directory`` (created if needed)."""
        writer = RunWriter(directory, self.config)
        writer.finish(self)
        return writer.directory

    @classmethod
    def load(cls, directory: str | Path) -> RunResult:
        """Read a run directory written by :meth:`save` or :class:`runs.RunWriter`.

        A record or metrics file that is not a run's raises a one-line ``ValueError`` naming
        the file (see :func:`read_record`, :func:`read_metrics`)."""
        directory = Path(directory)
        run_file = directory / RUN_FILE
        if not run_file.is_file():
            raise FileNotFoundError(f"{run_file} does not exist; point at a run directory")
        record = read_record(run_file)
        metrics_file = directory / METRICS_FILE
        metrics = read_metrics(metrics_file) if metrics_file.is_file() else pd.DataFrame()
        compute_file = directory / COMPUTE_FILE
        try:
            compute = pd.read_csv(compute_file) if compute_file.is_file() else None
        except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{compute_file}: cannot read the compute times: {reason}") from None
        return cls(record["config"], record["summary"], metrics, compute=compute)


#: The run record's keys that hold a table of values (absent or null: empty).
_RECORD_TABLES = ("config", "summary", "experiment")
#: Metrics columns that hold numbers (NaN where unmeasured): the schema's but the text ones,
#: ``kind``, ``role`` and ``event`` (what a fault row says happened).
_NUMERIC = frozenset(c for cols in COLUMNS.values() for c in cols) - {"kind", "role", "event"}


def read_record(path: str | Path) -> dict[str, Any]:
    """A ``run.json``, checked for the shape a run writes: an object whose ``config`` and
    ``summary`` (and ``experiment``, when there) are objects (``{}`` when absent), whose
    ``status`` and ``error`` are text; else a one-line ``ValueError`` naming the file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ValueError(f"{path}: cannot read the run record: {reason}") from None
    if not isinstance(record, dict):
        raise ValueError(
            f"{path}: a run record is a JSON object, not {type(record).__name__}; "
            "the directory is not a run's"
        )
    for key in _RECORD_TABLES:
        value = record.get(key)
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"{path}: the record's {key!r} is a {type(value).__name__}, not an object; "
                "the directory is not a run's"
            )
    for key in ("status", "error"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{path}: the record's {key!r} is {value!r}, not text")
    return {**record, "config": record.get("config") or {}, "summary": record.get("summary") or {}}


def read_metrics(path: str | Path) -> pd.DataFrame:
    """A ``metrics.parquet``, checked: the schema's measured columns hold numbers; else a
    one-line ``ValueError`` naming the file and the column."""
    path = Path(path)
    try:
        metrics = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the metrics: {exc}") from None
    for column in metrics.columns:
        if column not in _NUMERIC or pd.api.types.is_numeric_dtype(metrics[column]):
            continue
        values = metrics[column]
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        if bad.any():
            first = values[bad].iloc[0]
            raise ValueError(
                f"{path}: column {column!r} holds {first!r}, not a number; the file is not "
                "a run's metrics"
            )
        metrics[column] = numbers
    return metrics


def gradient_times(per_rank: dict[int, list[float]]) -> pd.DataFrame:
    """The ``compute.csv`` table from each rank's compute seconds per gradient, in order.

    Examples
    --------
    >>> gradient_times({1: [0.5, 0.25], 0: [0.75]}).to_dict("list")
    {'rank': [0, 1, 1], 'gradient': [0, 0, 1], 'seconds': [0.75, 0.5, 0.25]}
    """
    rows = [
        (rank, index, float(seconds))
        for rank in sorted(per_rank)
        for index, seconds in enumerate(per_rank[rank])
    ]
    return pd.DataFrame(rows, columns=["rank", "gradient", "seconds"])


def summarize(
    metrics: pd.DataFrame,
    *,
    stop_reason: str | None,
    steps: int,
    samples: float,
    nbytes: float,
    time: float,
    wall_time: float,
    target_loss: float | None = None,
    discarded_samples: float | None = None,
) -> dict[str, Any]:
    """The summary both backends write: final loss (and consensus distance, for averaged
    models), counts, rates, staleness, the compression ratio achieved, time to target.

    ``time`` is simulated seconds for ``sim`` and wall-clock seconds of training for ``real``.
    ``samples`` counts the samples of applied gradients (``strategies.counts``), the same in
    both backends; ``discarded_samples`` those computed and never counted (work after the
    stop, which depends on the backend's timing).
    """
    evals = metrics[metrics["kind"] == "eval"] if not metrics.empty else metrics
    has_staleness = not metrics.empty and "staleness" in metrics
    staleness = (
        metrics[metrics["kind"] == "step"]["staleness"]
        if has_staleness
        else pd.Series([], dtype=float)
    )
    summary: dict[str, Any] = {
        "stop_reason": stop_reason,
        "steps": int(steps),
        "samples": int(samples),
        **({} if discarded_samples is None else {"discarded_samples": int(discarded_samples)}),
        "bytes": float(nbytes),
        "time": float(time),
        "steps_per_s": steps / time if time > 0 else math.nan,
        "samples_per_s": samples / time if time > 0 else math.nan,
        "staleness_mean": float(staleness.mean()) if len(staleness) else math.nan,
        "staleness_max": float(staleness.max()) if len(staleness) else math.nan,
        "wall_time": float(wall_time),
    }
    if len(evals):
        last = evals.iloc[-1]
        if "loss" in evals:  # a reinforcement-learning run evaluates a return instead
            summary["final_loss"] = float(last["loss"])
        if "accuracy" in evals and pd.notna(last.get("accuracy")):
            summary["final_accuracy"] = float(last["accuracy"])
        if "consensus" in evals and pd.notna(last.get("consensus")):
            summary["final_consensus"] = float(last["consensus"])
    logs = metrics[metrics["kind"] == "log"] if not metrics.empty else metrics
    if "compression_ratio" in logs and logs["compression_ratio"].notna().any():
        # The ratio a strategy reported last: bytes sent over raw float32 bytes, so far.
        summary["compression_ratio"] = float(logs["compression_ratio"].dropna().iloc[-1])
    if target_loss is not None:
        summary["target_loss"] = target_loss
        hit = evals[evals["loss"] <= target_loss] if len(evals) else evals
        first = hit.iloc[0] if len(hit) else None
        for key in ("time", "step", "samples", "bytes"):
            summary[f"{key}_to_target"] = None if first is None else float(first[key])
    return summary
