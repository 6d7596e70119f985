"""A real rank's gradients, computed beside its communication.

``w.compute_gradients()`` on ``real`` returns at once with a pending handle, as in ``sim``: the
forward and backward passes run on the rank's compute thread (one per rank, one gradient at a
time, in call order, as one device runs them), and on a GPU on a CUDA stream of their own, so
that the program's communication proceeds beside them. A gradient is computed from the
parameters as they were at the call (a snapshot, copied into a second replica of the model),
so a program that loads or mixes parameters while its gradient computes gets the numbers
``sim`` gets, which computes at the call. A gradient starts when the program next waits:
on the compute thread if it waits on anything else, on the program's own thread if it waits
on that gradient first (the same code, on the same replica and stream, so the same result,
without two thread hand-offs a step). A program runs only between two waits, so this is
when it would start at the call, give or take the program's own work before its yield.

The compute thread keeps each gradient's span (when it started and finished on the rank's
clock): a gradient's handle carries it (``started_at``, ``finished_at``), and the driver books
the part of a wait in which a gradient ran as compute (and ``compute.csv`` with it).
"""

from __future__ import annotations

import bisect
import copy
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from strategies.context import GradientWork
from strategies.handles import Handle
from strategies.replica import Replica

__all__ = ["GradientThread"]


class GradientThread:
    """One rank's compute thread.

    Parameters
    ----------
    clock
        The rank's clock (seconds on the run's shared time line).
    device
        Where the rank computes; on a GPU each gradient runs on the thread's own stream.
    """

    def __init__(self, clock: Callable[[], float], device: torch.device) -> None:
        self._clock = clock
        self._device = device
        self._cuda = device.type == "cuda"
        self._stream: Any = torch.cuda.Stream(device) if self._cuda else None
        self._shadow: Replica | None = None
        self._lock = threading.Lock()
        #: Gradients not started yet, oldest first, and whether one is running: one at a
        #: time, on the compute thread or on a program's thread that waits for it.
        self._queue: deque[tuple[Handle[torch.Tensor], Callable[[], None]]] = deque()
        self._running = False
        self._turn = threading.Condition(threading.Lock())
        #: Each gradient's ``[started, finished]`` (finished is None while it runs), oldest
        #: first, until a wait past its end has booked it.
        self._spans: list[list[float | None]] = []
        self._free_at = -math.inf  # when the last gradient ended
        self._ready: list[tuple[float, int]] = []  # (finished at, samples), not yet taken
        self._thread: threading.Thread | None = None
        #: A transient straggler (:mod:`real.slowdowns`): the factor in force at a time on
        #: the rank's clock, and the wait for the extra time (it ends early at a stop).
        #: None: never slowed, nothing measured or waited.
        self.slowdown: Callable[[float], float] | None = None
        self.pause: Callable[[float], None] = time.sleep

    def submit_buckets(
        self,
        replica: Replica,
        work: GradientWork,
        bounds: list[tuple[int, int]],
        passes: int = 1,
    ) -> list[Handle[torch.Tensor]]:
        """:meth:`submit`, with one handle per bucket ``bounds[i]`` (slices of the flat
        gradient): each finishes with its slice once autograd's post-accumulate hook has
        fired ``passes`` times (once per micro-batch's backward) for each of its parameters,
        while backward goes on; a bucket some parameter of which got no gradient finishes
        with the whole gradient."""
        parts: list[Handle[torch.Tensor]] = [
            Handle("compute", f"gradient bucket {i + 1} of {len(bounds)}")
            for i in range(len(bounds))
        ]
        self.submit(replica, work, _BucketSpec(bounds, parts, passes))
        return parts

    def submit(
        self,
        replica: Replica,
        work: GradientWork,
        buckets: _BucketSpec | None = None,
        what: str = "compute_gradients",
    ) -> Handle[torch.Tensor]:
        """Compute ``work`` on a snapshot of ``replica``'s parameters as they are now; the
        handle's value is the flat gradient."""
        handle: Handle[torch.Tensor] = Handle("compute", what)
        shadow = self._shadow_of(replica)
        snapshot = replica.flat.detach().clone()
        ready = None
        if self._cuda:  # the snapshot is queued on the caller's stream: start after it
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self._device))
            consumer = torch.cuda.current_stream(self._device)
        else:
            consumer = None

        called = self._clock()

        def job() -> None:
            # As in sim, a gradient starts at the call, or when the one before it ends: the
            # thread's hand-off is the gradient's time, not a wait on peers.
            started = max(called, self._free_at)
            with self._lock:
                span: list[float | None] = [started, None]
                self._spans.append(span)
            hooks = None
            if buckets is not None:
                hooks = _BucketHooks(shadow, buckets, started, self._clock, self._stream, consumer)
            try:
                began = time.perf_counter()
                grads, samples = self._run(replica, shadow, work, snapshot, ready, consumer)
                if self.slowdown is not None:  # a slowed rank: factor x its measured compute
                    factor = self.slowdown(started)
                    if factor > 1.0:
                        self.pause((factor - 1.0) * (time.perf_counter() - began))
            except BaseException as exc:  # the program sees it at its yield
                with self._lock:
                    span[1] = self._free_at = self._clock()
                if hooks is not None:
                    hooks.close(None, exc, span[1])
                handle.fail(exc, at=span[1])
                return
            at = self._clock()
            # A bucketed gradient's samples count from its last bucket's hand-out: its step
            # may be applied (and stamped) before this thread gets here.
            counted = at if hooks is None or hooks.done_at is None else min(at, hooks.done_at)
            with self._lock:
                span[1] = self._free_at = at
                self._ready.append((counted, samples))
            if hooks is not None:
                hooks.close(grads, None, at)
            handle.resolve(grads, at=at, started_at=started)

        with self._turn:
            self._queue.append((handle, job))
        return handle

    def start(self) -> None:
        """Let the compute thread take the gradients queued so far (the program waits on
        something else: they go on beside it)."""
        with self._turn:
            if not self._queue:
                return
            self._turn.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _run(
        self,
        replica: Replica,
        shadow: Replica,
        work: GradientWork,
        snapshot: torch.Tensor,
        ready: Any,
        consumer: Any,
    ) -> tuple[torch.Tensor, int]:
        if not self._cuda:
            shadow.load(snapshot)
            grads, samples, _ = work(shadow)
            _copy_buffers(shadow.model, replica.model)
            return grads, samples
        with torch.cuda.stream(self._stream):
            self._stream.wait_event(ready)
            snapshot.record_stream(self._stream)  # freed here, made on the caller's stream
            shadow.load(snapshot)
            grads, samples, _ = work(shadow)
            _copy_buffers(shadow.model, replica.model)
            done = torch.cuda.Event()
            done.record(self._stream)
        done.synchronize()  # the handle finishes when the device has
        grads.record_stream(consumer)  # used on the caller's stream from here on
        return grads, samples

    def _shadow_of(self, replica: Replica) -> Replica:
        """The second replica the gradients are computed on (made at the first gradient: a
        copy of the model with parameters and gradients of its own)."""
        if self._shadow is None:
            self._shadow = Replica(copy.deepcopy(replica.model))
        return self._shadow

    def run_here(self, handle: Handle[Any]) -> bool:
        """Compute ``handle``'s gradient on the calling thread, if it is the next one and
        none is running (a program that yields a gradient at once waits for it anyway: this
        spares two thread hand-offs a step); returns whether it did."""
        with self._turn:
            if self._running or not self._queue or self._queue[0][0] is not handle:
                return False
            _, job = self._queue.popleft()
            self._running = True
        self._run_job(job)
        return True

    def _loop(self) -> None:
        while True:
            with self._turn:
                while self._running or not self._queue:
                    self._turn.wait()
                _, job = self._queue.popleft()
                self._running = True
            self._run_job(job)

    def _run_job(self, job: Callable[[], None]) -> None:
        try:
            job()
        finally:
            with self._turn:
                self._running = False
                if self._queue:  # the compute thread's turn (waking it for nothing costs)
                    self._turn.notify()

    def take_finished(self) -> list[tuple[float, int]]:
        """The gradients finished since the last call: when each did, and its samples."""
        with self._lock:
            ready, self._ready = self._ready, []
        return ready

    def busy(self, since: float, until: float) -> list[tuple[float, float]]:
        """The parts of ``[since, until]`` in which a gradient was computing, in order; spans
        that ended by ``until`` are forgotten (the waits that ask come in time order)."""
        parts = []
        with self._lock:
            for started, finished in self._spans:
                assert started is not None
                end = until if finished is None else min(finished, until)
                begin = max(started, since)
                if end > begin:
                    parts.append((begin, end))
            self._spans = [s for s in self._spans if s[1] is None or s[1] > until]
        return parts


class _BucketSpec:
    """What :meth:`GradientThread.submit_buckets` asks of a gradient: its buckets' slices,
    their handles, and how many backward passes make it (micro-batches)."""

    __slots__ = ("bounds", "handles", "passes")

    def __init__(
        self, bounds: list[tuple[int, int]], handles: list[Handle[torch.Tensor]], passes: int
    ) -> None:
        self.bounds, self.handles, self.passes = bounds, handles, passes


class _BucketHooks:
    """Autograd hooks on the replica a gradient is computed on, finishing each bucket's
    handle once its parameters' gradients are accumulated for the last time (DDP's
    ``Reducer`` marks a bucket ready the same way)."""

    def __init__(
        self,
        shadow: Replica,
        spec: _BucketSpec,
        started: float,
        clock: Callable[[], float],
        stream: Any,
        consumer: Any,
    ) -> None:
        self._shadow, self._spec, self._started, self._clock = shadow, spec, started, clock
        self._stream, self._consumer = stream, consumer
        params = [p for p in shadow.model.parameters() if p.requires_grad]
        # The buckets by where they start, to find the one holding a parameter's elements.
        by_start = sorted(range(len(spec.bounds)), key=lambda i: spec.bounds[i][0])
        starts = [spec.bounds[i][0] for i in by_start]
        self._left = [0] * len(spec.bounds)
        #: When the last bucket was handed out (backward's end): the gradient's samples exist
        #: from then on, and the program may apply it before this thread has finished.
        self.done_at: float | None = None
        self._hooks = []
        offset = 0
        for p in params:
            index = by_start[bisect.bisect_right(starts, offset) - 1]
            self._left[index] += spec.passes
            self._hooks.append(
                p.register_post_accumulate_grad_hook(functools.partial(self._fired, index))
            )
            offset += p.numel()

    def _fired(self, index: int, _: torch.Tensor) -> None:
        self._left[index] -= 1
        if self._left[index] == 0:
            a, b = self._spec.bounds[index]
            self._finish(index, self._shadow.grad[a:b])

    def _finish(self, index: int, source: torch.Tensor) -> None:
        handle = self._spec.handles[index]
        if handle.done:
            return
        part = source.clone()
        if self._stream is not None:  # the handle finishes when the device has the slice
            done = torch.cuda.Event()
            done.record(self._stream)
            done.synchronize()
            part.record_stream(self._consumer)
        at = self._clock()
        handle.resolve(part, at=at, started_at=self._started)
        if all(h.done for h in self._spec.handles):
            self.done_at = at

    def close(
        self, grads: torch.Tensor | None, error: BaseException | None, at: float | None
    ) -> None:
        """Remove the hooks; finish the buckets still pending (a parameter without a
        gradient: the whole gradient has it as zeros) or fail them with ``error``."""
        for hook in self._hooks:
            hook.remove()
        for index, (a, b) in enumerate(self._spec.bounds):
            handle = self._spec.handles[index]
            if handle.done:
                continue
            if error is not None or grads is None:
                handle.fail(error or RuntimeError("the gradient was not computed"), at=at)
            else:
                self._finish(index, grads[a:b])


def _copy_buffers(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """The model's buffers (batch-norm statistics) as the forward passes left them: they
    evolve in the replica the gradients are computed on, and the program's model shows them."""
    with torch.no_grad():
        for mine, theirs in zip(target.buffers(), source.buffers()):
            mine.copy_(theirs)
