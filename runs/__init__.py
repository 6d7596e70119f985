"""What a run records, in one format for ``sim`` and ``real``: the row schema of the metrics
table, :class:`RunResult`, the summary, the run's timeline (:class:`Trace`, Chrome trace
events) and the run directory (``run.json`` + ``metrics.parquet`` written as the run goes,
``trace.json`` at its end; a simulated run adds ``links.parquet`` and ``topology.json``).

The schema is plain Python; the table and files need pandas, imported on first use, so that
the rank processes of a real run (which only record rows) start without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from runs.schema import (
    COLUMNS,
    COMPUTE_FILE,
    KINDS,
    LINKS_FILE,
    METRICS_FILE,
    RUN_FILE,
    TOPOLOGY_FILE,
    TRACE_FILE,
    check_out,
    new_run_directory,
    row,
)
from runs.trace import Trace

__all__ = [
    "COLUMNS",
    "COMPUTE_FILE",
    "KINDS",
    "LINKS_FILE",
    "METRICS_FILE",
    "RUN_FILE",
    "RunResult",
    "RunWriter",
    "TOPOLOGY_FILE",
    "TRACE_FILE",
    "Trace",
    "check_out",
    "new_run_directory",
    "row",
    "gradient_times",
    "read_metrics",
    "read_record",
    "summarize",
    "versions",
]

_LAZY = {
    "RunResult": "runs.run",
    "summarize": "runs.run",
    "gradient_times": "runs.run",
    "read_metrics": "runs.run",
    "read_record": "runs.run",
    "RunWriter": "runs.writer",
    "versions": "runs.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runs' has no attribute {name!r}")
