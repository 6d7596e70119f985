"""Load run directories (``run.json`` + ``metrics.parquet``) into one tidy table for plots.

:func:`load` finds every run directory under the paths or globs it is given and returns their
metrics rows, each with its run's record flattened into columns, so runs of any backend,
strategy and network sit side by side and can be sliced with plain pandas:

* metrics columns as written (:mod:`runs.schema`): ``kind``, ``time``, ``step``, ``samples``,
  ``bytes``, ``loss``, ``staleness``, ``rank``, ``compute_time`` ... (``role`` where a backend
  records it);
* the run's ``config`` in dotted columns exactly as nested in ``run.json``: ``backend``
  (``"sim"``, ``"real-gloo"`` ...), ``seed``, ``world_size``, ``strategy.name``,
  ``strategy.mode``, ``topology.bandwidth`` (bytes/s), ``workload.name`` ... (a config key
  that is also a metrics column is renamed ``config.<key>``; empty mappings give no column,
  lists become tuples so that columns stay hashable, and a list of tables a column per
  entry's key, indexed as a sweep names it: ``faults.events[0].mtbf``);
* ``experiment.<section>.<key>`` for a top-level ``"experiment"`` record, when ``run.json``
  has one (the experiment file that produced the run); it never replaces a ``config`` column,
  whose values are the ones the backend resolved (bandwidth in bytes/s, not ``"1Gbps"``);
* ``summary.<name>`` for each summary field (``summary.final_loss``,
  ``summary.time_to_target`` ...; ``summary.metric``, for runs evaluated by another metric
  than the loss: :mod:`runs.metric`);
* ``run`` (the run directory, as a string), ``name`` (the experiment's ``run.name`` when
  recorded, else the directory's name), ``status`` (``finished``, ``failed``,
  ``interrupted``, ``running``) and ``error`` (the failure's one line, or ``None``).

A run without metrics rows (it failed before its first evaluation) still gets one row, with
``kind`` missing, so that no run is dropped without a trace. A run directory that cannot be
read (a corrupt ``run.json``, a ``config`` that is not a table, text in a ``loss`` column) is
skipped with a :class:`LoadWarning` naming it and why (``commsim plot`` prints it in one line).
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.schema import COLUMNS, COMMON, METRICS_FILE, RUN_FILE

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LoadError",
    "LoadWarning",
    "RunRecord",
    "find_runs",
    "flatten",
    "from_results",
    "load",
    "load_runs",
    "read_run",
    "run_columns",
]

Paths = str | Path | Iterable[str | Path]

_GLOB_CHARS = frozenset("*?[")
#: Columns the metrics table may have; a config key with one of these names is renamed.
_METRIC_NAMES = frozenset(c for columns in COLUMNS.values() for c in columns) | {"role"}
#: Run-level columns this module adds itself.
_RUN_COLUMNS = ("run", "name", "status", "error")


# pandas is imported where a table is made, not with this module: `import studies` (and so
# `commsim --help`) binds `studies.load` to the function below and should not wait for it.


def _empty_run() -> pd.DataFrame:
    """The one row of a run without metrics: the common columns, unmeasured."""
    import pandas as pd

    return pd.DataFrame({"kind": [None], **{c: [float("nan")] for c in COMMON[1:]}})


def _no_metrics() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


class LoadError(ValueError):
    """A path that names no run directory, or a run directory that cannot be read."""


class LoadWarning(UserWarning):
    """A run directory skipped because it cannot be read (the message names it and why)."""


@dataclass
class RunRecord:
    """One run directory's record: where it is, what ``run.json`` says, and its metrics."""

    path: Path
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    experiment: dict[str, Any] | None = None
    error: str | None = None
    metrics: pd.DataFrame = field(default_factory=_no_metrics, repr=False)

    @property
    def name(self) -> str:
        """The experiment's run name when recorded, else the directory's name."""
        run = (self.experiment or {}).get("run")
        if isinstance(run, Mapping) and run.get("name"):
            return str(run["name"])
        return self.path.name

    def columns(self) -> dict[str, Any]:
        """The run-level columns :func:`load` adds to each of this run's rows."""
        return run_columns(
            self.config,
            self.summary,
            experiment=self.experiment,
            run=str(self.path),
            name=self.name,
            status=self.status,
            error=self.error,
        )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level with dotted keys; lists become tuples (hashable).

    Examples
    --------
    >>> flatten({"strategy": {"name": "parameter_server", "mode": "ssp"}, "seed": 0,
    ...          "compute": {"slowdown": {}, "options": {"sigma": [1, 2]}}})
    {'strategy.name': 'parameter_server', 'strategy.mode': 'ssp', 'seed': 0, 'compute.options.sigma': (1, 2)}
    >>> flatten({"faults": {"events": [{"kind": "crash", "mtbf": 30.0, "ranks": [0, 1]}]}})
    {'faults.events[0].kind': 'crash', 'faults.events[0].mtbf': 30.0, 'faults.events[0].ranks': (0, 1)}
    """
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        elif (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(item, Mapping) for item in value)
        ):
            # A list of tables (a fault schedule's events): a column per entry's key, named
            # as a sweep or --set names it (``faults.events[0].mtbf``); a tuple of dicts would
            # be a column that cannot be hashed, compared or drawn.
            for index, item in enumerate(value):
                flat.update(flatten(item, f"{dotted}[{index}]."))
        elif isinstance(value, list | tuple):
            flat[dotted] = tuple(value)
        else:
            flat[dotted] = value
    return flat


def run_columns(
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    experiment: Mapping[str, Any] | None = None,
    run: str,
    name: str,
    status: str = "finished",
    error: str | None = None,
) -> dict[str, Any]:
    """The run-level columns of one run (see the module docstring for the conventions)."""
    columns = {}
    for key, value in flatten(config).items():
        # A config key named like a metrics column would overwrite the measurements.
        top = key.split(".", 1)[0]
        columns[f"config.{key}" if top in _METRIC_NAMES or top in _RUN_COLUMNS else key] = value
    if experiment:
        columns.update(flatten(experiment, "experiment."))
    columns.update(flatten(summary, "summary."))
    columns.update({"run": run, "name": name, "status": status, "error": error})
    return columns


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _runs_in(path: Path, from_glob: bool) -> list[Path]:
    if path.is_file():
        if path.name == RUN_FILE:
            return [path.parent]
        if from_glob:  # a glob like results/* also matches figures and tables: skip them
            return []
        raise LoadError(
            f"{str(path)!r} is a file, not a run directory (a directory with {RUN_FILE})"
        )
    if not path.exists():
        raise LoadError(f"{str(path)!r} does not exist")
    if (path / RUN_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob(RUN_FILE))
    if not found and not from_glob:
        raise LoadError(
            f"{str(path)!r} is not a run directory and holds none (no {RUN_FILE} at any depth)"
        )
    return found


def find_runs(paths: Paths) -> list[Path]:
    """Run directories named by ``paths``: run directories, directories holding run
    directories at any depth, or globs (``**`` recurses); in order, without repeats.

    Raises :class:`LoadError` (one line) when a path does not exist or holds no run, or when
    a glob matches nothing.

    Examples
    --------
    >>> find_runs("no/such/results-*")
    Traceback (most recent call last):
    ...
    studies.load.LoadError: nothing matched 'no/such/results-*'
    """
    items: list[Any]
    if isinstance(paths, str | os.PathLike):
        items = [paths]
    elif isinstance(paths, Iterable) and not isinstance(paths, bytes | Mapping):
        items = list(paths)
    else:
        items = [paths]
    if not items:
        raise LoadError("no paths given; name run directories, directories of runs or globs")
    for item in items:
        if not isinstance(item, str | os.PathLike):
            what = f"paths={item!r}" if item is paths else f"{item!r} in paths"
            raise LoadError(
                f"{what}: name run directories, directories of runs or globs as strings or "
                "pathlib.Paths"
            )
    found: dict[Path, None] = {}
    for item in items:
        text = str(item)
        if _is_glob(text):
            matches = sorted(glob.glob(text, recursive=True))
            runs = [run for match in matches for run in _runs_in(Path(match), from_glob=True)]
            if not runs:
                what = "nothing matched" if not matches else "no run directory matched"
                raise LoadError(f"{what} {text!r}")
        else:
            runs = _runs_in(Path(item), from_glob=False)
        found.update(dict.fromkeys(runs))
    return list(found)


def read_run(path: str | Path) -> RunRecord:
    """Read one run directory's ``run.json`` and metrics (:class:`LoadError`, one line
    naming the file, if either is unreadable or not a run's)."""
    import pandas as pd

    from runs.run import read_metrics, read_record

    path = Path(path)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise LoadError(f"{str(path)!r} is not a run directory (no {RUN_FILE})")
    metrics_file = path / METRICS_FILE
    try:
        record = read_record(run_file)
        metrics = read_metrics(metrics_file) if metrics_file.is_file() else pd.DataFrame()
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    return RunRecord(
        path=path,
        status=record.get("status") or "unknown",
        config=record["config"],
        summary=record["summary"],
        experiment=record.get("experiment"),
        error=record.get("error"),
        metrics=metrics,
    )


def load_runs(paths: Paths) -> list[RunRecord]:
    """Every run directory named by ``paths`` (see :func:`find_runs`), read.

    A run directory that cannot be read (a corrupt record or metrics file) is skipped with a
    warning naming it and why, so one broken run does not hide a study; if no run can be
    read, :class:`LoadError` says why the first could not."""
    records, skipped = [], []
    for path in find_runs(paths):
        try:
            records.append(read_run(path))
        except LoadError as exc:
            skipped.append(exc)
    if skipped and not records:
        raise skipped[0]
    for reason in skipped:
        warnings.warn(f"skipped a run that cannot be read: {reason}", LoadWarning, stacklevel=3)
    return records


def _frame(parts: list[tuple[pd.DataFrame, dict[str, Any]]]) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for metrics, columns in parts:
        rows = metrics.reset_index(drop=True) if len(metrics) else _empty_run()
        run_level = pd.DataFrame([columns] * len(rows), index=rows.index)
        frames.append(pd.concat([rows, run_level], axis=1))
    # Runs differ in columns (a workload's accuracy, a strategy's logs): concat aligns them.
    return pd.concat(frames, ignore_index=True, sort=False)


def load(paths: Paths) -> pd.DataFrame:
    """Metrics rows of every run directory found, with each run's record as columns.

    ``paths`` is a path or glob, or several: a run directory, a directory holding run
    directories at any depth, or a glob (``results/**/bw=*``). Column conventions are in the
    module docstring; ``backend`` tells ``sim`` rows from ``real`` ones.

    Examples
    --------
    >>> import tempfile, sim
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.run("allreduce", "quadratic", "ring:n=2", steps=4, eval_every=2,
    ...                 out=f"{tmp}/study/ring")
    ...     df = load(tmp)
    >>> df[df["kind"] == "eval"][["step", "backend", "strategy.name", "topology.family"]]
       step backend strategy.name topology.family
    0     0     sim     allreduce            ring
    3     2     sim     allreduce            ring
    6     4     sim     allreduce            ring
    >>> df["name"].iloc[0], df["status"].iloc[0], int(df["summary.steps"].iloc[0])
    ('ring', 'finished', 4)
    """

    return _frame([(record.metrics, record.columns()) for record in load_runs(paths)])


def from_results(results: Mapping[str, Any]) -> pd.DataFrame:
    """The table :func:`load` would give for in-memory :class:`runs.RunResult` objects.

    Each result's key is its ``run`` and ``name`` (for notebooks that never wrote a run
    directory).

    Examples
    --------
    >>> import sim
    >>> result = sim.run("allreduce", "quadratic", "ring:n=2", steps=2, eval_every=2)
    >>> df = from_results({"ring": result})
    >>> list(df[df["kind"] == "eval"]["step"]), df["run"].iloc[0], df["backend"].iloc[0]
    ([0, 2], 'ring', 'sim')
    """

    parts = [
        (result.metrics, run_columns(result.config, result.summary, run=label, name=label))
        for label, result in results.items()
    ]
    if not parts:
        raise LoadError("no results given")
    return _frame(parts)
