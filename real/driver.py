"""Real's loop around the one program driver: wait on each yielded handle, time the waits.

:class:`strategies.driver.ProgramDriver` advances the program (a failed handle's error thrown
in at its ``yield``, anything but a handle refused, the program closed at its ``yield`` once
the run has stopped), as it does in ``sim``; this module blocks the rank's thread between two
advances (:meth:`real.runtime.RealRuntime.wait`) and splits the rank's wall-clock time.

A rank's time is compute or communication (a wall-clock wait cannot tell a peer's lateness
from transfer time); the communication it waited on that moved while it computed is also
booked as overlapped (:mod:`runs.overlap`). Compute is the program's own work between two yields, and the part of
each wait in which one of its gradients was computing (:mod:`real.compute`), or all of a
wait on its own work alone (a gradient, ``w.compute``); the rest of a wait is communication. With a :class:`runs.trace.Trace`, the same parts are its spans.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from real.runtime import RealRuntime
from runs.overlap import comm_leaves
from runs.trace import Trace
from strategies.base import Program
from strategies.comm import CommTimeout
from strategies.context import RoleContext
from strategies.driver import Ended, ProgramDriver
from strategies.handles import Handle

__all__ = ["drive"]


def drive(
    runtime: RealRuntime,
    ctx: RoleContext,
    program: Program,
    timeout: float,
    tick: Callable[[], None] | None = None,
) -> Ended:
    """Run a role program until it ends (``"finished"``) or the run stops (``"stopped"``).

    A failed handle's error is thrown into the program at its ``yield``; an operation that
    does not finish within ``timeout`` seconds raises :class:`~strategies.comm.CommTimeout`
    there, naming what the rank waited on. ``tick`` is called at each ``yield``, on this
    thread, and its time counts with the wait's, not as the program's compute (the rank
    hands in its events as it goes there).
    """
    driver = ProgramDriver(program, ctx.rank, ctx.role, runtime.stopped)
    runtime.timer.begin()
    mark = runtime.now()  # when the program's own work since its last yield began
    # What the program records before its first yield is stamped with its start (a restarted
    # rank restores its state there, long after the run began).
    runtime.resumed_at = max(runtime.resumed_at, mark)
    item = driver.advance()
    overlap, own = runtime.overlap, mark  # when the program's own work began
    while isinstance(item, Handle):
        runtime.compute_time += runtime.timer.end()
        waited = time.perf_counter()
        yielded = runtime.now()
        overlap.computing(ctx.rank, own, yielded)
        runtime.took_gradients()
        if tick is not None:  # at the yield: the backend's own work, timed with the wait
            tick()
        if not item.done:
            runtime.wait(item, timeout)
        wait = time.perf_counter() - waited
        resumed = runtime.now()
        runtime.timer.begin()
        computing = runtime.gradients.busy(yielded, resumed)
        if item.kind == "compute":  # a wait on the rank's own work alone: compute throughout
            computing = [(yielded, resumed)]
        gradient = min(sum(until - since for since, until in computing), wait)
        runtime.compute_time += gradient
        runtime.comm_time += wait - gradient
        own = resumed
        for since, until in computing:
            overlap.computing(ctx.rank, since, until)
        for label, since, until in comm_leaves(item):
            overlap.communicating(ctx.rank, since, until, label)
        # Before the program resumes: a gradient is recorded before the step that applies it
        # (the same stamp when the program waited on it alone), with the compute time so far.
        runtime.took_gradients()
        if runtime.trace is not None:
            _spans(runtime.trace, runtime.rank, item, mark, yielded, resumed, computing)
            mark = resumed
        if not item.done:
            if runtime.stopped():
                item = driver.advance()  # closes the program at its yield
                continue
            item = driver.advance(
                error=CommTimeout(
                    f"rank {runtime.rank} waited {timeout:g} s on {item.describe()}; every rank "
                    "must make matching calls (collectives in the same order; a send completes "
                    "only once its recv is posted), or raise real.run's timeout for longer "
                    "operations"
                )
            )
            continue
        if runtime.signal.faults is not None and item.failed:
            runtime.signal.faults.met(item.error, ctx.step)  # (a crash's detection, as sim's)
        # An older handle yielded late must not move the stamp back: a rank's events stay in
        # its own order on the shared time line.
        finished = item.finished_at if item.finished_at is not None else runtime.now()
        runtime.resumed_at = max(runtime.resumed_at, finished)
        item = driver.resume(item)
    runtime.took_gradients()
    runtime.release()
    return item


def _spans(
    trace: Trace,
    rank: int,
    item: Handle[Any],
    mark: float,
    yielded: float,
    resumed: float,
    computing: list[tuple[float, float]],
) -> None:
    """The program's own work since ``mark`` (compute), then the wait at its yield: compute
    while a gradient ran, communication (named by what it waited on) in between."""
    trace.span(rank, "compute", "compute", mark, yielded)
    at = yielded
    for since, until in computing:
        trace.span(rank, "comm", item.label, at, since)
        trace.span(rank, "compute", "compute_gradients", since, until)
        at = until
    trace.span(rank, "comm", item.label, at, resumed)
