"""What a run records, in one format for ``sim`` and ``real``: the row schema of the metrics
table, :class:`RunResult`, the summary, and the run directory (``run.json`` +
``metrics.parquet``) written as the run goes. This package depends on pandas alone."""

from runs.run import METRICS_FILE, RUN_FILE, RunResult, summarize
from runs.schema import COLUMNS, KINDS, row
from runs.writer import RunWriter, versions

__all__ = [
    "COLUMNS",
    "KINDS",
    "METRICS_FILE",
    "RUN_FILE",
    "RunResult",
    "RunWriter",
    "row",
    "summarize",
    "versions",
]
