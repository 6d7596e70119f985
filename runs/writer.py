"""Write a run directory as the run goes: ``run.json`` at once, metrics as they come."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from runs.schema import COMPUTE_FILE, METRICS_FILE, RUN_FILE, TRACE_FILE, check_out

if TYPE_CHECKING:
    from runs.trace import Trace

__all__ = ["RunWriter", "versions"]


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for ``run.json``."""
    found = {"python": platform.python_version()}
    for name in ("commsim", "torch", "simpy", "numpy", "networkx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class Finished(Protocol):
    """What :meth:`RunWriter.finish` writes of a run (a :class:`runs.RunResult`), named here
    so that the writer does not depend on the result, which is saved by it."""

    summary: dict[str, Any]
    metrics: pd.DataFrame
    compute: pd.DataFrame | None
    trace: Trace | None


class RunWriter:
    """Writes a run directory as the run goes, so a crash or interrupt loses nothing.

    ``run.json`` is written at once with ``status: "running"``; :meth:`flush` rewrites the
    metrics (throttled to one write per ``every`` wall seconds); :meth:`finish` and
    :meth:`fail` write the final state (and ``trace.json``, when there is a trace), the
    record last, so that a finished record means every file is there. Used as a context
    manager, any exception (an interrupt too) is recorded as a failure with the rows
    measured so far, then re-raised.
    """

    def __init__(
        self,
        directory: str | Path,
        config: dict[str, Any],
        every: float = 2.0,
        record: dict[str, Any] | None = None,
    ) -> None:
        check_out(directory)
        self.directory = Path(directory)
        #: Extra top-level keys of ``run.json`` (an experiment file's contents, its key).
        self.record = dict(record or {})
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
            self.fail(self._rows, exc)  # an interrupt is recorded as one (see fail)

    def _write_record(self, status: str, summary: dict[str, Any], error: str | None = None) -> None:
        record = {
            "status": status,
            "config": self.config,
            "summary": summary,
            "versions": versions(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.record,
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

    def finish(self, result: Finished) -> None:
        self._write_metrics(result.metrics)
        if result.compute is not None:
            result.compute.to_csv(self.directory / COMPUTE_FILE, index=False)
        if result.trace is not None:
            result.trace.write(self.directory / TRACE_FILE)
        self._write_record("finished", result.summary)
        self._finished = True

    def fail(
        self,
        rows: list[dict[str, Any]],
        error: BaseException,
        trace: Trace | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Keep what was measured (and the timeline and summary so far, if given) and say why
        the run stopped: ``status`` is ``interrupted`` for a ``KeyboardInterrupt`` (Ctrl-C,
        or SIGTERM where the run turns it into one), else ``failed``."""
        try:
            # An interrupt that reaches the writer before any row was handed to it (a real
            # launcher flushes none as it goes) must not replace what is on disk with nothing.
            if rows or not (self.directory / METRICS_FILE).exists():
                self._write_metrics(pd.DataFrame(rows))
        except (MemoryError, ImportError):
            # Out of memory, pandas may not even load its parquet engine: the rows flushed
            # last stay on disk, and the record below still says why the run stopped.
            pass
        if trace is not None:
            trace.write(self.directory / TRACE_FILE)
        interrupted = isinstance(error, KeyboardInterrupt)
        said = str(error) or ("interrupted" if interrupted else "")
        status = "interrupted" if interrupted else "failed"
        self._write_record(status, summary or {}, f"{type(error).__name__}: {said}")
        self._finished = True
