"""The results format both backends write: ``run.json`` plus a tidy ``metrics.parquet``.

It lives beside the strategy interface because it is the other contract the two backends
share: a simulated and a real run of the same config produce the same columns, so a study
can load and plot them side by side.

Metrics columns (one row per observation; columns that do not apply are NaN):

* ``kind``: ``"eval"`` (global model evaluated), ``"update"`` (one applied global update),
  ``"worker"`` (one rank's time breakdown, at the end), ``"log"`` (strategy-specific values).
* ``time`` (seconds: simulated in ``sim``, wall-clock in ``real``), ``update``, ``samples``,
  ``bytes`` (bytes sent so far), ``rank``.
* ``loss``, ``accuracy`` (eval rows), ``staleness`` (update rows), ``compute_time``,
  ``comm_time``, ``idle_time`` (worker rows), plus any logged names.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RunResult", "RunWriter", "summarize", "versions"]

_COMMON = ("kind", "time", "update", "samples", "bytes")
_COLUMNS = {
    "eval": (*_COMMON, "loss"),
    "update": (*_COMMON, "staleness"),
    "worker": (*_COMMON, "rank", "compute_time", "comm_time", "idle_time"),
}

RUN_FILE = "run.json"
METRICS_FILE = "metrics.parquet"


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for ``run.json``."""
    found = {"python": platform.python_version()}
    for name in ("commsim", "torch", "simpy", "numpy", "networkx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass
class RunResult:
    """One run: its resolved config, a summary, and the tidy metrics table."""

    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Final flat parameters of the global model (kept in memory, not written to disk).
    parameters: Any = None

    @property
    def evals(self) -> pd.DataFrame:
        """The evaluation rows: loss (and accuracy) of the global model over time and bytes."""
        return self._kind("eval")

    @property
    def updates(self) -> pd.DataFrame:
        """One row per global update, with its staleness."""
        return self._kind("update")

    @property
    def workers(self) -> pd.DataFrame:
        """Per-rank compute, communication and idle time."""
        return self._kind("worker")

    def _kind(self, kind: str) -> pd.DataFrame:
        if self.metrics.empty:
            return self.metrics
        rows = self.metrics[self.metrics["kind"] == kind]
        # Drop the other kinds' columns, but keep this kind's own even when unmeasured (NaN),
        # so sim and real results have the same columns.
        keep = [c for c in rows.columns if c in _COLUMNS.get(kind, ()) or rows[c].notna().any()]
        return rows[keep].reset_index(drop=True)

    def save(self, directory: str | Path) -> Path:
        """Write ``run.json`` and ``metrics.parquet`` into ``directory`` (created if needed)."""
        writer = RunWriter(directory, self.config)
        writer.finish(self)
        return writer.directory

    @classmethod
    def load(cls, directory: str | Path) -> RunResult:
        """Read a run directory written by :meth:`save` or :class:`RunWriter`."""
        directory = Path(directory)
        run_file = directory / RUN_FILE
        if not run_file.is_file():
            raise FileNotFoundError(f"{run_file} does not exist; point at a run directory")
        record = json.loads(run_file.read_text())
        metrics_file = directory / METRICS_FILE
        metrics = pd.read_parquet(metrics_file) if metrics_file.is_file() else pd.DataFrame()
        return cls(record.get("config", {}), record.get("summary", {}), metrics)


def summarize(
    metrics: pd.DataFrame,
    *,
    stop_reason: str | None,
    updates: int,
    samples: int,
    nbytes: float,
    time: float,
    wall_time: float,
    target_loss: float | None = None,
) -> dict[str, Any]:
    """The summary both backends write: final loss, counts, rates, staleness, time to target.

    ``time`` is simulated seconds for ``sim`` and wall-clock seconds of training for ``real``.
    """
    evals = metrics[metrics["kind"] == "eval"] if not metrics.empty else metrics
    has_staleness = not metrics.empty and "staleness" in metrics
    staleness = metrics[metrics["kind"] == "update"]["staleness"] if has_staleness else []
    summary: dict[str, Any] = {
        "stop_reason": stop_reason,
        "updates": int(updates),
        "samples": int(samples),
        "bytes": float(nbytes),
        "time": float(time),
        "updates_per_s": updates / time if time > 0 else math.nan,
        "samples_per_s": samples / time if time > 0 else math.nan,
        "staleness_mean": float(staleness.mean()) if len(staleness) else math.nan,
        "staleness_max": float(staleness.max()) if len(staleness) else math.nan,
        "wall_time": float(wall_time),
    }
    if len(evals):
        last = evals.iloc[-1]
        summary["final_loss"] = float(last["loss"])
        if "accuracy" in evals and pd.notna(last.get("accuracy")):
            summary["final_accuracy"] = float(last["accuracy"])
    if target_loss is not None:
        summary["target_loss"] = target_loss
        hit = evals[evals["loss"] <= target_loss] if len(evals) else evals
        first = hit.iloc[0] if len(hit) else None
        for key in ("time", "update", "samples", "bytes"):
            summary[f"{key}_to_target"] = None if first is None else float(first[key])
    return summary


class RunWriter:
    """Writes a run directory as the run goes, so a crash or interrupt loses nothing.

    ``run.json`` is written at once with ``status: "running"``; :meth:`flush` rewrites the
    metrics (throttled to one write per ``every`` wall seconds); :meth:`finish` and
    :meth:`fail` write the final state. Used as a context manager, any exception (an
    interrupt too) is recorded as a failure with the rows measured so far, then re-raised.
    """

    def __init__(self, directory: str | Path, config: dict[str, Any], every: float = 2.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.every = every
        self._last_flush = 0.0
        self._rows: list[dict[str, Any]] = []
        self._finished = False
        self._write_record("running", {})

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not self._finished:
            self.fail(self._rows, exc)

    def _write_record(self, status: str, summary: dict[str, Any], error: str | None = None) -> None:
        record = {
            "status": status,
            "config": self.config,
            "summary": summary,
            "versions": versions(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if error:
            record["error"] = error
        tmp = self.directory / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str, allow_nan=True) + "\n")
        tmp.replace(self.directory / RUN_FILE)

    def _write_metrics(self, metrics: pd.DataFrame) -> None:
        tmp = self.directory / (METRICS_FILE + ".tmp")
        metrics.to_parquet(tmp, index=False)
        tmp.replace(self.directory / METRICS_FILE)

    def flush(self, rows: list[dict[str, Any]], force: bool = False) -> None:
        """Rewrite the metrics so far, unless the last write was under ``every`` seconds ago."""
        self._rows = rows
        now = time.monotonic()
        if force or now - self._last_flush >= self.every:
            self._write_metrics(pd.DataFrame(rows))
            self._last_flush = now

    def finish(self, result: RunResult) -> None:
        self._write_metrics(result.metrics)
        self._write_record("finished", result.summary)
        self._finished = True

    def fail(self, rows: list[dict[str, Any]], error: BaseException) -> None:
        """Keep what was measured and say why the run stopped."""
        self._write_metrics(pd.DataFrame(rows))
        self._write_record("failed", {}, f"{type(error).__name__}: {error}")
        self._finished = True
