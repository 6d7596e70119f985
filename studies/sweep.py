"""Sweeps: every point of an experiment's ``[sweep]``, each run once, resumable.

A sweep's directory holds one run directory per point, named by the point's
:meth:`~studies.experiment.Experiment.key` (a hash of everything that decides its results),
and an index::

    DIR/
      sweep.json        the index: the experiment, counts, and per run its key, name, swept
                        values, status, error, summary and run directory (rewritten, atomically,
                        as each run ends)
      runs/<key>/       run.json, metrics.parquet ... (studies.experiment.run_experiment)

Runs whose ``run.json`` says ``finished`` with the same key are kept, not rerun: an
interrupted or failed sweep resumes by running it again, and points shared with another
sweep into the same directory are run once. Failed, unfinished and new runs are run. A
failing run is recorded (its ``run.json`` and the index say why) and the sweep goes on.

Where runs execute is an executor (:mod:`studies.executors`): in this process, ``jobs``
local worker processes, or a Dask cluster. Every run uses one torch thread, so its metrics
are bit-identical whichever executor ran it.

Examples
--------
>>> import tempfile
>>> experiment = {
...     "run": {"name": "quad", "steps": 4, "eval_every": 2},
...     "workload": "quadratic", "topology": "ring:n=2",
...     "sweep": {"grid": {"optimizer.lr": [0.05, 0.1]}, "seeds": [0, 1]}}
>>> tmp = tempfile.TemporaryDirectory()
>>> out = tmp.name
>>> result = run_sweep(experiment, out)
>>> result.ok, [run.status for run in result.runs]
(True, ['finished', 'finished', 'finished', 'finished'])
>>> result.runs[1].name, result.runs[1].values
('quad optimizer.lr=0.05 seed=1', {'optimizer.lr': 0.05, 'run.seed': 1})
>>> result.table()[["optimizer.lr", "run.seed", "status", "steps"]]
   optimizer.lr  run.seed    status  steps
0          0.05         0  finished      4
1          0.05         1  finished      4
2          0.10         0  finished      4
3          0.10         1  finished      4
>>> again = run_sweep(experiment, out, overrides=["sweep.seeds=[0, 1, 2]"])
>>> [run.reused for run in again.runs]
[True, True, False, True, True, False]
>>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runs.schema import RUN_FILE
from studies.executors import (
    Executor,
    check_executor,
    make_executor,
    mark_interrupted,
    one_line,
    record_failure,
    run_point,
)
from studies.experiment import (
    Experiment,
    ExperimentError,
    expand,
    load_experiment,
    sweep_values,
)
from studies.plugins import import_modules

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from runs import RunResult

__all__ = [
    "INDEX_FILE",
    "RUNS_DIR",
    "SweepError",
    "SweepResult",
    "SweepRun",
    "load_sweep",
    "plan",
    "run_sweep",
]

#: The index of a sweep directory.
INDEX_FILE = "sweep.json"
#: The folder of a sweep directory that holds one run directory per key.
RUNS_DIR = "runs"

#: A run's states: waiting to run, running now, ended (with or without an error), stopped
#: by an interrupt of the sweep (its ``run.json`` says so too; a rerun of the sweep runs it).
STATUSES = ("pending", "running", "finished", "failed", "interrupted")


class SweepError(RuntimeError):
    """Every run of a sweep failed: one line naming the first failed run and its error.

    The sweep's directory records every run (``sweep.json``, each ``run.json``), as for a
    sweep with some failures; :attr:`result` is what :func:`run_sweep` would have returned.
    """

    def __init__(self, message: str, result: SweepResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class SweepRun:
    """One point of a sweep: what it sets, where its run directory is, how it ended."""

    key: str
    name: str
    #: The swept fields' values, by field path (``run.seed`` for the seeds).
    values: dict[str, Any]
    directory: Path
    status: str = "pending"
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    #: Finished by an earlier invocation and kept, not rerun.
    reused: bool = False
    #: Seconds this run took (None when kept or not run).
    wall_s: float | None = None
    experiment: Experiment | None = field(default=None, repr=False, compare=False)

    def result(self) -> RunResult:
        """The run's config, summary and metrics, read from its directory."""
        from runs import RunResult

        return RunResult.load(self.directory)

    def to_json(self, root: Path) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "values": self.values,
            "status": self.status,
            "error": self.error,
            "reused": self.reused,
            "wall_s": self.wall_s,
            "dir": _relative(self.directory, root),
            "summary": _plain(self.summary),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], root: Path) -> SweepRun:
        return cls(
            key=data["key"],
            name=data["name"],
            values=dict(data.get("values") or {}),
            directory=root / data["dir"],
            status=data.get("status", "pending"),
            error=data.get("error"),
            summary=dict(data.get("summary") or {}),
            reused=bool(data.get("reused", False)),
            wall_s=data.get("wall_s"),
        )


@dataclass
class SweepResult:
    """A sweep's runs (in sweep order) and where they are.

    ``ok`` is True when every run finished; :meth:`table` has one row per run,
    :meth:`load` every run's metrics rows (``studies.load.load``).
    """

    out: Path
    runs: list[SweepRun]
    #: The base experiment's ``run.name`` (each run's name starts with it).
    name: str = ""

    @property
    def finished(self) -> list[SweepRun]:
        return [run for run in self.runs if run.status == "finished"]

    @property
    def failed(self) -> list[SweepRun]:
        return [run for run in self.runs if run.status == "failed"]

    @property
    def ok(self) -> bool:
        return all(run.status == "finished" for run in self.runs)

    @property
    def index(self) -> Path:
        return self.out / INDEX_FILE

    def table(self) -> pd.DataFrame:
        """One row per run: ``key``, ``name``, a column per swept field, ``status``,
        ``error``, ``reused``, the summary's fields (``final_loss``, ``time_to_target`` ...)
        and ``dir`` (the run directory)."""
        import pandas as pd

        rows = [
            {
                "key": run.key,
                "name": run.name,
                **{path: _cell(value) for path, value in run.values.items()},
                "status": run.status,
                "error": run.error,
                "reused": run.reused,
                **run.summary,
                "dir": str(run.directory),
            }
            for run in self.runs
        ]
        return pd.DataFrame(rows)

    def load(self) -> pd.DataFrame:
        """Every run's metrics rows with its record as columns (see ``studies.load.load``)."""
        from studies.load import load

        return load([run.directory for run in self.runs if (run.directory / RUN_FILE).is_file()])


# --------------------------------------------------------------------------------------------
# Planning


def plan(experiment: Experiment, out: str | os.PathLike[str]) -> list[SweepRun]:
    """The runs of a sweep into ``out``, each ``pending``, in :func:`expand`'s order.

    Raises
    ------
    ExperimentError
        When two points are the same run (the same key), e.g. a value listed twice.
    """
    root = Path(out)
    points = expand(experiment)
    runs: list[SweepRun] = []
    seen: dict[str, str] = {}
    for point, values in zip(points, sweep_values(experiment), strict=True):
        key = point.key()
        if key in seen:
            raise ExperimentError(
                f"sweep: points {seen[key]!r} and {point.run.name!r} are the same run "
                f"(key {key}); remove the repeated value"
            )
        seen[key] = point.run.name
        runs.append(
            SweepRun(
                key=key,
                name=point.run.name,
                values=values,
                directory=root / RUNS_DIR / key,
                experiment=point,
            )
        )
    return runs


def _keep_finished(run: SweepRun) -> None:
    """Mark ``run`` finished (and kept) when its directory holds a finished run of its key."""
    try:
        record = json.loads((run.directory / RUN_FILE).read_text())
    except (OSError, ValueError):
        return
    if (
        isinstance(record, dict)
        and record.get("status") == "finished"
        and record.get("experiment_key") == run.key
    ):
        run.status, run.reused = "finished", True
        run.summary = _plain(record.get("summary") or {})


# --------------------------------------------------------------------------------------------
# The index


def _plain(value: Any) -> Any:
    """JSON without NaN (standard JSON has none): NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> Any:
    """A swept value as a table cell that can be grouped on: a table (a strategy with its
    arguments) as ``name(key=value,...)``, a list as a tuple.

    Examples
    --------
    >>> _cell({"name": "local_sgd", "period": 4}), _cell([1, 2]), _cell(0.1)
    ('local_sgd(period=4)', (1, 2), 0.1)
    """
    if isinstance(value, Mapping):
        args = ",".join(f"{k}={_cell(v)}" for k, v in value.items() if k != "name")
        name = str(value.get("name", ""))
        return f"{name}({args})" if args else name
    if isinstance(value, list):
        return tuple(_cell(v) for v in value)
    return value


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _write_index(root: Path, experiment: Experiment, runs: list[SweepRun]) -> None:
    counts = {status: sum(run.status == status for run in runs) for status in STATUSES}
    document = {
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": counts,
        "experiment": experiment.to_dict(),
        "runs": [run.to_json(root) for run in runs],
    }
    # Write beside, then rename: a reader (or a kill) never sees half an index.
    tmp = root / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    tmp.replace(root / INDEX_FILE)


def load_sweep(out: str | os.PathLike[str]) -> SweepResult:
    """A sweep directory's runs as its index last recorded them.

    Raises
    ------
    FileNotFoundError
        When ``out`` has no ``sweep.json``.
    ValueError
        When its ``sweep.json`` is not a sweep's index (one line, naming it).
    """
    root = Path(out)
    index = root / INDEX_FILE
    if not index.is_file():
        raise FileNotFoundError(
            f"{index} does not exist; point at a directory `commsim sweep` wrote"
        )
    try:
        document = json.loads(index.read_text())
        runs = [SweepRun.from_json(run, root) for run in document["runs"]]
        return SweepResult(root, runs, name=document["experiment"]["run"]["name"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else exc or type(exc).__name__
        raise ValueError(
            f"{index} is not a sweep's index ({reason}); run the sweep again to rewrite it"
        ) from None


# --------------------------------------------------------------------------------------------
# Running


class _Bar:
    """The progress bar: runs done of all, running and failed; quiet when disabled."""

    def __init__(self, enabled: bool, console: Console | None, runs: list[SweepRun]) -> None:
        self.runs = runs
        self.progress: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[running]} running, {task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=console,
                # Redrawn by the sweep's own loop (see _execute): no refresh thread, so that
                # a worker pool made again after a worker died forks no held lock.
                auto_refresh=False,
            )
            self.task = self.progress.add_task("sweep", total=len(runs), running=0, failed=0)

    @contextlib.contextmanager
    def shown(self) -> Iterator[_Bar]:
        if self.progress is None:
            yield self
            return
        with self.progress:
            self.update()
            yield self

    def update(self) -> None:
        if self.progress is None:
            return
        status = [run.status for run in self.runs]
        done = status.count("finished") + status.count("failed") + status.count("interrupted")
        self.progress.update(
            self.task,
            completed=done,
            running=status.count("running"),
            failed=status.count("failed"),
            refresh=True,  # a run that starts and ends between two ticks is still seen
        )

    def ended(self, run: SweepRun) -> None:
        self.update()
        if self.progress is not None and run.status == "failed":
            from rich.markup import escape

            self.progress.console.print(
                f"[red]failed[/red] {escape(run.name)}: {escape(str(run.error))}", soft_wrap=True
            )


def _script_hint() -> str:
    """Why workers die at once when the sweep is started from a script's top level."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    # Not a notebook or an interpreter (no file), `commsim sweep` (a console script, no .py)
    # or `python -m ...` (a package's guarded __main__.py).
    if script is None or not script.endswith(".py") or script.endswith("__main__.py"):
        return ""
    return (
        f"; worker processes start by importing {Path(script).name}: if it calls run_sweep "
        'at its top level, put that under `if __name__ == "__main__":` (or use jobs=1)'
    )


def _outcome(run: SweepRun, future: Future[Any], spawned: bool = True) -> None:
    """Record how ``run`` ended from its future (a lost worker is a failure, recorded too).
    ``spawned``: its worker was started by importing the main script (not forked), which
    may be why it was lost."""
    try:
        outcome = future.result()
    except Exception as exc:  # the worker died or was lost: the run did not end by itself
        hint = _script_hint() if spawned else ""
        error = RuntimeError(f"the worker running it was lost ({one_line(exc)}){hint}")
        outcome = {"status": "failed", "error": one_line(error), "summary": {}, "wall_s": None}
        if run.experiment is not None:
            with contextlib.suppress(OSError, ValueError):
                record_failure(run.directory, run.experiment, error)
    run.status, run.error = outcome["status"], outcome["error"]
    run.summary, run.wall_s = _plain(outcome["summary"]), outcome["wall_s"]
    if run.status == "finished" and not (run.directory / RUN_FILE).is_file():
        # A Dask worker on another machine wrote it where this one cannot see it.
        run.status = "failed"
        run.error = (
            f"finished on a worker, but {run.directory} is not visible here; give --out a "
            "directory every worker shares"
        )


#: Seconds between two redraws of the progress bar while no run ends.
TICK = 0.5


def _execute(
    todo: list[SweepRun],
    executor: Executor,
    on_end: Callable[[SweepRun], None],
    on_start: Callable[[SweepRun], None],
    on_tick: Callable[[], None] = lambda: None,
    imports: tuple[str, ...] = (),
) -> None:
    """Run ``todo`` on ``executor``, at most ``slots`` at once, calling back as each starts
    and ends, and every :data:`TICK` seconds in between."""
    queue = deque(todo)
    running: dict[Future[Any], SweepRun] = {}
    while queue or running:
        while queue and len(running) < executor.slots:
            run = queue.popleft()
            run.status = "running"
            on_start(run)
            future = executor.submit(run_point, run.experiment, str(run.directory), imports)
            running[future] = run
        done, _ = wait(running, timeout=TICK, return_when=FIRST_COMPLETED)
        if not done:
            on_tick()
        for future in done:
            run = running.pop(future)
            _outcome(run, future, spawned=getattr(executor, "method", None) == "spawn")
            on_end(run)


def run_sweep(
    source: str | os.PathLike[str] | Mapping[str, Any] | Experiment,
    out: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    executor: str | Executor = "local",
    overrides: Iterable[str] = (),
    progress: bool = False,
    console: Console | None = None,
    imports: Iterable[str] = (),
) -> SweepResult:
    """Run every point of an experiment's sweep into ``out`` (see the module docstring).

    Parameters
    ----------
    source
        An experiment file (TOML), a dict with its sections, or an :class:`Experiment`;
        without a ``[sweep]`` it is one run.
    out
        The sweep directory: ``runs/<key>/`` per run and the index ``sweep.json``.
    jobs
        Runs at once. Locally: 1 (the default) runs them in this process, ``N`` in ``N``
        worker processes; on Dask, the cluster's worker threads unless given.
    executor
        ``"local"``, ``"dask://HOST:PORT"``, or an executor object
        (:mod:`studies.executors`; then ``jobs`` is its own, and it is not closed here).
    overrides
        ``"section.field=value"`` strings, as ``--set`` (``sweep.seeds=[0, 1, 2]`` too).
    progress
        Show a progress bar (runs done, running, failed) on ``console``.
    imports
        Modules to import first, here and in each worker, that register strategies or
        workloads the experiment names (``--import``; see :mod:`studies.plugins`).

    Returns
    -------
    SweepResult
        Every run's status, error and summary; failed runs do not raise, unless all did.

    Raises
    ------
    SweepError
        When every run failed (none finished, now or before): one line naming the first
        failed run and why; the index and run directories are written as usual.
    ExperimentError
        An invalid experiment or sweep (before anything runs).
    ExecutorError
        A bad executor string or ``jobs``, Dask not installed, or no scheduler answering.
    OSError
        When ``out`` cannot be written.
    KeyboardInterrupt
        After stopping the running runs and writing the index (where they are
        ``interrupted``, as their ``run.json`` is): run it again to resume.
    """
    imports = tuple(imports)
    import_modules(imports)
    experiment = load_experiment(source, overrides)
    owned = isinstance(executor, str)
    if isinstance(executor, str):
        check_executor(executor, jobs)  # a typo fails before anything is written
    root = Path(out)
    runs = plan(experiment, root)
    for run in runs:
        _keep_finished(run)
    root.mkdir(parents=True, exist_ok=True)
    _write_index(root, experiment, runs)
    todo = [run for run in runs if run.status != "finished"]
    if not todo:
        return SweepResult(root, runs, name=experiment.run.name)
    runner = make_executor(executor, jobs) if isinstance(executor, str) else executor
    bar = _Bar(progress, console, runs)

    def ended(run: SweepRun) -> None:
        _write_index(root, experiment, runs)  # each result is on disk as soon as it ends
        bar.ended(run)

    try:
        with bar.shown():
            _execute(
                todo,
                runner,
                on_end=ended,
                on_start=lambda run: bar.update(),
                on_tick=bar.update,
                imports=imports,
            )
    except BaseException as exc:
        runner.abort()
        for run in runs:
            if run.status == "running":
                _stopped(run, exc)
        _write_index(root, experiment, runs)
        raise
    finally:
        if owned:
            runner.close()
    result = SweepResult(root, runs, name=experiment.run.name)
    if runs and len(result.failed) == len(runs):
        first = result.failed[0]
        raise SweepError(
            f"all {len(runs)} runs of sweep {experiment.run.name!r} failed; the first, "
            f"{first.name!r}: {first.error} (each run.json says why; {result.index} indexes them)",
            result,
        )
    return result


def _stopped(run: SweepRun, exc: BaseException) -> None:
    """Say in the index what a run cut short by the sweep's interrupt is, as its ``run.json``
    says it (rewriting a record its stopped worker left ``running`` as ``interrupted``)."""
    _keep_finished(run)  # it ended just before the interrupt was seen
    if run.status == "finished":
        return
    said = one_line(exc) if str(exc) else "KeyboardInterrupt: the sweep was interrupted"
    record = mark_interrupted(run.directory, run.experiment, said)
    run.status = str(record.get("status", "interrupted"))
    run.error = record.get("error") or said
    run.reused = False
