"""Finishing handles from the library's work: inline waits, futures and waiter threads.

Collectives on the CPU are finished *inline* by the thread that waits for them: the handle
stays with the transport, and when the program yields it, the runtime asks the transport to
wait (:meth:`Completion.finish_inline`: gloo's ``work.wait``, in slices, so the runtime
still sees the run's stop and its own timeout) and finish it (copy back, a mean's division)
on the rank's own thread. Resolving from the library's future instead costs a callback on
gloo's thread and a ``threading.Event`` hand-off back to the rank, about 0.2 ms a step, 10%
of a small model's step (``benchmarks/real_overhead.py``). Whatever else may need such a
handle to finish by itself (``wait_any``/``wait_all``, ``then``, a different handle yielded
first) gets it through :meth:`Completion.release_inline`, which hands every collective
still held to the library's future; after each inline wait, collectives the library has
finished meanwhile are resolved too, so ``handle.done`` is never stale for long.

Point-to-point operations resolve from waiter threads, as gloo has no futures for them.
NCCL's futures and ``work.wait()`` do not wait for the GPU (``wait`` only orders the
*current stream* after NCCL's), so on a GPU a waiter thread polls ``work.is_completed()``
(the end of the GPU work, seen from the host) before calling ``wait()`` (which raises the
library's error), then copies results back and synchronises an event on its current stream
before it resolves the handle. It does not call ``wait()`` first: that would stall the shared
default stream, and with it the program's compute and staging copies, until the peer sends (a
deadlock for a receive posted before a send).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from real.transport.staging import Staging
from strategies.comm import CommError
from strategies.handles import Handle

__all__ = ["Completion"]

#: How long a channel's gloo envelope receive may wait for its sender (as good as forever).
_PATIENT = timedelta(days=365)
#: Polling an NCCL operation's completion: first and longest pause, in seconds.
_POLL_FIRST, _POLL_MAX = 2e-5, 1e-3


@dataclass
class _Inline:
    """A collective the waiting thread finishes (see the module's notes)."""

    work: Any
    finish: Callable[[], Any]
    started: float


class Completion(Staging):
    """How the transport's handles finish (a part of :class:`~real.transport.TorchTransport`).

    ``_held``: collectives held for the waiting thread, in the order they were started; only
    the rank's own thread (the program's) touches it."""

    _clock: Callable[[], float]
    _held: dict[Handle[Any], _Inline]
    inline: bool

    def _settle(self, works: list[Any], *, patient: bool = False) -> None:
        """Block this thread until ``works`` have finished; raise the library's error."""
        if self._cuda:
            # NCCL's wait() would only make the current stream wait: poll the GPU's progress.
            delay = _POLL_FIRST
            while not all(work.is_completed() for work in works):
                time.sleep(delay)
                delay = min(2 * delay, _POLL_MAX)
            for work in works:
                work.wait()
            return
        for work in works:
            if patient:
                work.wait(_PATIENT)
            else:
                work.wait()

    def _complete_later(
        self, work: Any, handle: Handle[Any], finish: Callable[[], Any], started: float
    ) -> None:
        """Finish a collective's ``handle`` with ``finish()`` once ``work`` is done: by a
        waiter thread on a GPU, inline on the CPU, or by the library's future."""
        if self._cuda:
            self._on_waiter([work], handle, finish, started, handle.describe())
        elif self.inline:
            self._held[handle] = _Inline(work, finish, started)
        else:
            self._on_future(work, handle, finish, started)

    def _on_future(
        self, work: Any, handle: Handle[Any], finish: Callable[[], Any], started: float
    ) -> None:
        def done(future: Any) -> None:
            try:
                future.value()  # raises the library's error, if any
                value = finish()
            except Exception as exc:  # the program receives it at its yield
                handle.fail(self._failure(handle, handle.describe(), exc), at=self._clock())
                return
            handle.resolve(value, at=self._clock(), started_at=started)

        work.get_future().add_done_callback(done)

    def _on_waiter(
        self,
        works: list[Any],
        handle: Handle[Any],
        finish: Callable[[], Any],
        started: float,
        failed: str,
    ) -> None:
        """Resolve ``handle`` with ``finish()`` from a thread, once ``works`` have finished."""

        def wait() -> None:
            try:
                self._settle(works)
                value = finish()
                self._synchronize()
            except Exception as exc:
                handle.fail(self._failure(handle, failed, exc), at=self._clock())
                return
            handle.resolve(value, at=self._clock(), started_at=started)

        self._thread(wait)

    def _failure(self, handle: Handle[Any], what: str, exc: BaseException) -> CommError:
        """The error the program receives for an operation the library failed."""
        return CommError(f"{what} failed: {exc}")

    # -- inline completion (CPU collectives) ----------------------------------------------
    def holds(self, handle: Handle[Any]) -> bool:
        """Whether ``handle`` is a collective waiting for :meth:`finish_inline`."""
        return handle in self._held

    def finish_inline(self, handle: Handle[Any], seconds: float) -> bool:
        """Wait up to ``seconds`` for the held collective ``handle``; if the library has
        finished it, finish ``handle`` (and every other held one already finished) on this
        thread. Returns whether ``handle`` is done (resolved, or failed with the library's
        error as a :class:`~strategies.comm.CommError`)."""
        held = self._held[handle]
        try:
            held.work.wait(timedelta(seconds=seconds))
        except Exception:
            # A wait that timed out raises too, and leaves the operation running; one
            # that failed has completed (the error is reported by _complete below).
            if not held.work.is_completed():
                return False
        self._complete(handle)
        for other in [h for h, op in self._held.items() if op.work.is_completed()]:
            self._complete(other)
        return True

    def release_inline(self) -> None:
        """Hand every held collective to the library's completion callback, so that it
        finishes by itself (for ``wait_any``, ``then``, a program that ends holding it)."""
        held, self._held = self._held, {}
        for handle, op in held.items():
            self._on_future(op.work, handle, op.finish, op.started)

    def _complete(self, handle: Handle[Any]) -> None:
        op = self._held.pop(handle)
        try:
            op.work.wait()  # finished: returns at once, or raises the library's error
            value = op.finish()
        except Exception as exc:  # the program receives it at its yield
            handle.fail(self._failure(handle, handle.describe(), exc), at=self._clock())
            return
        handle.resolve(value, at=self._clock(), started_at=op.started)
