"""Where a sweep's runs execute: in this process, in local worker processes, or on Dask.

An executor runs :func:`run_point` (one experiment into its run directory) and hands back a
``concurrent.futures.Future`` of its outcome. ``slots`` is how many runs it takes at once: a
sweep submits no more than that, so it knows which runs are running, and a run that is
submitted has started.

* ``"local"`` with one job: :class:`InProcessExecutor`, the runs one after another in this
  process (no start-up cost; a debugger works);
* ``"local"`` with ``jobs=N``: :class:`LocalExecutor`, ``N`` worker processes, forked on
  Linux (so a plain script needs no ``__main__`` guard; see :func:`start_method`);
* ``"dask://HOST:PORT"``: :class:`DaskExecutor`, the workers of a ``distributed`` scheduler
  (``pip install 'commsim[dask]'``); they write the run directories themselves, so the sweep's
  directory must be on a file system they share.

Every run uses one torch thread, whichever executor runs it: results do not depend on the
thread count (a matrix product may add in another order with more threads), and ``N`` runs
at once use ``N`` cores.

Examples
--------
>>> executor = make_executor("local", jobs=1)
>>> type(executor).__name__, executor.slots
('InProcessExecutor', 1)
>>> make_executor("ray://head:10001")
Traceback (most recent call last):
...
studies.executors.ExecutorError: executor 'ray://head:10001': use 'local' or 'dask://HOST:PORT' (e.g. dask://127.0.0.1:8786)
>>> make_executor("local", jobs=0)
Traceback (most recent call last):
...
studies.executors.ExecutorError: jobs=0: give the number of runs to make at once, 1 or more
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from studies.experiment import Experiment

__all__ = [
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "InProcessExecutor",
    "LocalExecutor",
    "check_executor",
    "make_executor",
    "mark_interrupted",
    "one_line",
    "record_failure",
    "run_point",
    "start_method",
]

DASK_HINT = "pip install 'commsim[dask]'"
#: Seconds a stopped worker has to end (a real run in it writes what it measured) before
#: it is killed.
ABORT_GRACE = 10.0


class ExecutorError(ValueError):
    """An executor that cannot be used: one line naming it and the fix."""


class Executor(Protocol):
    """Runs functions somewhere and says how many at once."""

    #: How many runs it makes at once.
    slots: int

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Start ``fn(*args)``; its future resolves with the return value."""
        ...

    def abort(self) -> None:
        """Stop what is running now (on an interrupt); the executor is not used again."""
        ...

    def close(self) -> None:
        """Release the workers once every submitted call has ended."""
        ...


# --------------------------------------------------------------------------------------------
# One run


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``.

    Examples
    --------
    >>> one_line(ValueError("servers=4 leaves no worker\\nmore detail"))
    'ValueError: servers=4 leaves no worker'
    """
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_point(
    experiment: Experiment, directory: str, imports: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run one experiment (a sweep point) into ``directory``, on one torch thread, once the
    modules ``imports`` (a user's strategies, :mod:`studies.plugins`) are imported here.

    A failed run does not raise: its run directory records the error (written here when the
    run failed before its own record was started), and so does the outcome.

    Returns
    -------
    dict
        ``status`` (``"finished"`` or ``"failed"``), ``error`` (one line, or None),
        ``summary`` (the run's summary) and ``wall_s`` (seconds it took).
    """
    from studies.experiment import run_experiment
    from studies.plugins import import_modules

    path = Path(directory)
    if path.exists():  # an earlier attempt that failed or was cut short: start afresh
        shutil.rmtree(path)
    start = time.perf_counter()
    try:
        import_modules(imports)  # already imported in a forked worker: nothing to do
        with _one_torch_thread():
            result = run_experiment(experiment, path)
    except Exception as exc:
        record_failure(path, experiment, exc)
        return {
            "status": "failed",
            "error": one_line(exc),
            "summary": {},
            "wall_s": time.perf_counter() - start,
        }
    return {
        "status": "finished",
        "error": None,
        "summary": dict(result.summary),
        "wall_s": time.perf_counter() - start,
    }


def record_failure(path: Path, experiment: Experiment, exc: BaseException) -> None:
    """Write a failed ``run.json`` when the run failed before its writer recorded anything
    (a bad combination that only the backend sees, such as more servers than ranks)."""
    import json

    from runs import RUN_FILE, RunWriter

    with contextlib.suppress(OSError, ValueError):
        record = json.loads((path / RUN_FILE).read_text())
        if isinstance(record, dict) and record.get("status") == "failed":
            return
    record = {"experiment": experiment.to_dict(), "experiment_key": experiment.key()}
    RunWriter(path, config={}, record=record).fail([], exc)


def mark_interrupted(path: Path, experiment: Experiment | None, said: str) -> dict[str, Any]:
    """Make the ``run.json`` of a run that its sweep's interrupt cut short say so, and return
    it: a record left ``running`` (its worker was stopped before it could write) becomes
    ``interrupted``, one that says how the run ended (``finished``, ``failed``,
    ``interrupted``) is kept, and a run that wrote nothing gets an ``interrupted`` record.
    ``said``: the error to record (``"KeyboardInterrupt: ..."``)."""
    import json

    from runs import RUN_FILE, RunWriter

    file = path / RUN_FILE
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("status") not in (None, "running"):
        return record
    if isinstance(record, dict):
        record.update(status="interrupted", error=said)
        tmp = path / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str, allow_nan=True) + "\n")
        tmp.replace(file)
        return record
    extra = (
        {}
        if experiment is None
        else {
            "experiment": experiment.to_dict(),
            "experiment_key": experiment.key(),
        }
    )
    reason = said.removeprefix("KeyboardInterrupt:").strip()
    RunWriter(path, config={}, record=extra).fail([], KeyboardInterrupt(reason))
    return {"status": "interrupted", "error": f"KeyboardInterrupt: {reason}"}


# --------------------------------------------------------------------------------------------
# Executors


class InProcessExecutor:
    """Runs each call now, in this process: one at a time, no start-up cost."""

    slots = 1

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # an interrupt is not a result: it stops the sweep
            future.set_exception(exc)
        return future

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the sweep's process dies (even by SIGKILL),
    so that no orphan keeps writing a run directory that a resumed sweep rewrites."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the call: nothing will signal us
        os._exit(1)


def _init_worker() -> None:
    # Ctrl-C reaches every process of the terminal's group; the sweep alone decides what
    # stops (it terminates the workers, whose runs are then rerun on resume).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    import torch

    torch.set_num_threads(1)


def start_method() -> str:
    """How :class:`LocalExecutor` starts its workers: ``"fork"`` where that is safe, else
    ``"spawn"``.

    ``spawn`` (and ``forkserver``, whose workers are prepared the same way) starts each
    worker by importing the main script again: a ``run_sweep(..., jobs=2)`` at a script's
    top level then runs again in every worker, which dies of it before running anything.
    A forked worker imports nothing: it is a copy of this process, with everything it has
    registered (a strategy defined in the script, modules given to ``--import``), so a
    plain script, a notebook and ``commsim sweep`` all work, and nothing is pickled but
    the experiment. Fork is safe here on Linux because

    * the workers are forked at once, when the executor is made, before the sweep starts
      a thread of its own (the progress bar), so no lock of ours is held across the fork;
    * each worker sets torch to one thread before its first operation, as torch's own
      ``DataLoader`` does in the workers it forks: torch's thread pool, which does not
      survive a fork, is never entered (CPU ops with one thread run inline);
    * a worker never touches a GPU: CUDA cannot be used in a forked child, so a process
      that has initialised CUDA gets spawned workers instead.

    Elsewhere (macOS, whose system libraries are not fork-safe, and Windows, which has no
    fork) the workers are spawned: a script then needs ``if __name__ == "__main__":``, and
    a sweep whose every run died of it raises, saying so.

    Examples
    --------
    >>> start_method() in ("fork", "spawn")
    True
    """
    if not sys.platform.startswith("linux"):
        return "spawn"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        return "spawn"
    return "fork"


class LocalExecutor:
    """``jobs`` worker processes on this machine (forked or spawned, see
    :func:`start_method`; one torch thread each).

    A worker that dies (killed, out of memory) fails the calls it had; the next call gets a
    new pool. Usable as a context manager, which closes it.
    """

    def __init__(self, jobs: int, method: str | None = None) -> None:
        _check_jobs(jobs)
        self.slots = jobs
        #: ``"fork"`` or ``"spawn"`` (:func:`start_method` unless given).
        self.method = method or start_method()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=multiprocessing.get_context(self.method),
            initializer=_init_worker,
        )
        if self.method == "fork":
            # A forking pool forks every worker at its first call: make that now, while
            # this process has no thread of the sweep's (see start_method).
            pool.submit(int).result()
        return pool

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        try:
            return self._pool.submit(fn, *args)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args)

    def abort(self) -> None:
        # The processes are known (and older Pythons have no public way to stop a running
        # call): each is stopped, and waited for, so that the runs they leave are recorded
        # as interrupted only once nothing writes them any more.
        processes = list(getattr(self._pool, "_processes", {}).values())
        terminate = getattr(self._pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
        else:
            for process in processes:
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(ABORT_GRACE)
            if process.is_alive():
                process.kill()
                process.join()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """The workers of a Dask ``distributed`` scheduler at ``address`` (``HOST:PORT`` or a
    full ``tcp://`` / ``tls://`` address).

    ``slots`` is ``jobs``, or the cluster's worker threads when ``jobs`` is None. The
    connection waits Dask's ``distributed.comm.timeouts.connect`` (30 s by default).
    """

    def __init__(self, address: str, jobs: int | None = None) -> None:
        if jobs is not None:
            _check_jobs(jobs)
        try:
            import distributed
        except ImportError:
            raise ExecutorError(
                f"executor 'dask://{address}': Dask is not installed; {DASK_HINT}"
            ) from None
        self.address = address if "://" in address else f"tcp://{address}"
        try:
            self.client = distributed.Client(self.address, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExecutorError(
                f"executor 'dask://{address}': no Dask scheduler answered at {self.address} "
                f"({reason}); start one (`dask scheduler`) or check HOST:PORT"
            ) from None
        threads = sum(self.client.nthreads().values())
        self.slots = jobs if jobs is not None else max(1, threads)
        self._futures: set[Any] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        # pure=False: a rerun of a failed run must run again, not reuse the cached outcome.
        remote = self.client.submit(fn, *args, pure=False, key=f"commsim-run-{uuid.uuid4().hex}")
        self._futures.add(remote)
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()

        def settle(done: Any) -> None:
            self._futures.discard(done)
            try:
                future.set_result(done.result())
            except BaseException as exc:  # a lost worker, a cancelled task
                future.set_exception(exc)

        remote.add_done_callback(settle)
        return future

    def abort(self) -> None:
        # Dask cannot stop a task that has started; those finish and write their runs.
        with contextlib.suppress(Exception):
            self.client.cancel(list(self._futures))
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_jobs(jobs: Any) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ExecutorError(f"jobs={jobs!r}: give the number of runs to make at once, 1 or more")


def check_executor(spec: str, jobs: int | None = None) -> None:
    """Check an executor string and ``jobs`` without starting anything."""
    if jobs is not None:
        _check_jobs(jobs)
    if spec == "local":
        return
    if spec.startswith("dask://"):
        address = spec.removeprefix("dask://")
        host, _, port = address.rpartition(":")
        if "://" in address or (host and port.isdigit()):
            return
        raise ExecutorError(
            f"executor {spec!r}: give the scheduler's address as dask://HOST:PORT "
            "(e.g. dask://127.0.0.1:8786)"
        )
    raise ExecutorError(
        f"executor {spec!r}: use 'local' or 'dask://HOST:PORT' (e.g. dask://127.0.0.1:8786)"
    )


def make_executor(spec: str, jobs: int | None = None) -> Executor:
    """The executor an ``--executor`` string names.

    Parameters
    ----------
    spec
        ``"local"`` or ``"dask://HOST:PORT"``.
    jobs
        Runs at once: locally 1 (in this process) unless given; on Dask, the cluster's
        worker threads unless given.

    Raises
    ------
    ExecutorError
        A bad string or ``jobs``, Dask not installed, or no scheduler at the address.
    """
    check_executor(spec, jobs)
    if spec == "local":
        return InProcessExecutor() if jobs in (None, 1) else LocalExecutor(jobs)
    return DaskExecutor(spec.removeprefix("dask://"), jobs)
