"""Reading a ``trace`` straggler's step times: a CSV with a ``seconds`` column, or a real
run's or a ``commsim calibrate`` directory, whose ``compute.csv`` it reads.

A file with a ``rank`` column is per rank (replayed in order); one with a ``gradient``
column (a run's file) has a row per gradient, its micro-batches included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runs.schema import COMPUTE_FILE

__all__ = ["MAX_SECONDS", "read_trace", "trace_file"]

#: The longest one micro-batch's compute (or one server step) may take: a day. More is a unit
#: mistake (milliseconds written as seconds), and makes a run's time meaningless.
MAX_SECONDS = 86400.0


def trace_file(path: str | Path) -> Path:
    """The CSV a ``trace`` straggler reads: ``path`` itself, or a run or calibration
    directory's ``compute.csv``.

    >>> import tempfile
    >>> trace_file(tempfile.gettempdir()).name, trace_file("times.txt").name
    ('compute.csv', 'times.txt')
    """
    path = Path(path)
    return path / COMPUTE_FILE if path.is_dir() else path


def read_trace(path: str | Path) -> tuple[dict[int, np.ndarray] | np.ndarray, bool]:
    """The step times (per rank, when the file has ranks) and whether a row is a gradient
    (a run's ``compute.csv`` has a ``gradient`` column) rather than a micro-batch."""
    import pandas as pd

    given, path = path, trace_file(path)
    if not path.is_file():
        if Path(given).is_dir():
            raise ValueError(
                f"compute trace path={str(given)!r} has no {COMPUTE_FILE}; give a real run's "
                "directory, a 'commsim calibrate' directory, or a CSV of step times"
            )
        raise ValueError(f"compute trace={str(path)!r} does not exist; give a CSV of step times")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(f"compute trace {path} is not a readable CSV: {reason}") from None
    if "seconds" not in table.columns:
        raise ValueError(f"compute trace {path} needs a 'seconds' column (and optionally 'rank')")
    if table.empty:
        raise ValueError(f"compute trace {path} has no rows; give one step time per row")
    seconds = pd.to_numeric(table["seconds"], errors="coerce")
    bad = ~((seconds > 0) & (seconds <= MAX_SECONDS))  # NaN, inf, text: all bad
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(
            f"compute trace path={str(path)!r}: row {row + 2} has seconds="
            f"{table['seconds'].tolist()[row]!r}; "
            f"every step time must be a number of seconds in (0, {MAX_SECONDS:g}]"
        )
    table["seconds"] = seconds
    per_gradient = "gradient" in table.columns
    if "rank" in table.columns:
        ranks_column = pd.to_numeric(table["rank"], errors="coerce")
        bad = ~((ranks_column >= 0) & (ranks_column % 1 == 0))
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValueError(
                f"compute trace path={str(path)!r}: row {row + 2} has rank="
                f"{table['rank'].tolist()[row]!r}; "
                "ranks are integers from 0"
            )
        table["rank"] = ranks_column.astype(int)
        if per_gradient:  # a run's file: replayed in the order it computed
            table = table.sort_values(["rank", "gradient"], kind="stable")
        ranks = {int(r): g["seconds"].to_numpy(float) for r, g in table.groupby("rank")}
        return ranks, per_gradient
    return table["seconds"].to_numpy(float), per_gradient
