"""The simulated runtime: a context's backend in simulated time, and the driver of programs.

Contexts call :class:`SimRuntime` (the ``strategies.Runtime`` protocol) to compute, step,
log, sleep and read the clock; it reports steps and samples to the run's
:class:`strategies.ledger.Ledger`, which owns progress and rows. :meth:`SimRuntime.drive`
runs a role program as a SimPy process around the backend-free
:class:`strategies.driver.ProgramDriver` (which advances it, throws a failed handle's error
in, refuses what is not a handle and closes it at a stop): it waits on each yielded handle
as a SimPy event, and splits each rank's time into compute, communication and idle; with a
:class:`runs.trace.Trace`, it also records when (the spans of the run's timeline).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any

import simpy
import torch

from runs.overlap import Overlap, comm_leaves
from runs.trace import Trace
from sim.compute import ComputeModel
from sim.ops import busy_time, wait_spans
from strategies.buckets import ready_fractions
from strategies.context import GradientWork, RoleContext, ServerContext, WorkerContext
from strategies.driver import ProgramDriver
from strategies.events import Computed, Held, Logged, Lost, Restored, Settled, Stepped
from strategies.handles import Handle
from strategies.ledger import Ledger
from strategies.snapshots import RankState

__all__ = ["SPIN_LIMIT", "SimRuntime"]

#: Resumes of one program at one simulated instant before it is taken for a polling loop.
SPIN_LIMIT = 100_000


def _part(a: int, b: int, grads: torch.Tensor) -> torch.Tensor:
    """A bucket's slice ``[a, b)`` of a flat gradient, as a tensor of its own (a program may
    reduce it in place)."""
    return grads[a:b].clone()


class SimRuntime:
    """One simulated run's side of every context.

    Parameters
    ----------
    env
        The SimPy environment (the clock).
    compute
        The resolved compute model.
    ledger
        The run's ledger (owns steps, stop conditions and rows).
    accumulate
        Micro-batches per gradient (scales compute time).
    trace
        Where each wait's compute, communication and idle spans go (None: not recorded).
    """

    def __init__(
        self,
        env: simpy.Environment,
        compute: ComputeModel,
        ledger: Ledger,
        accumulate: int = 1,
        trace: Trace | None = None,
    ) -> None:
        self.env = env
        self.compute_model = compute
        self.ledger = ledger
        self.accumulate = accumulate
        self.trace = trace
        self._busy_until: dict[int, float] = {}
        self._local: dict[int, Handle[Any]] = {}  # a rank's own work that holds its next calls
        #: Each rank's compute seconds per gradient, in order (a run's ``compute.csv``).
        self.gradient_seconds: dict[int, list[float]] = {}
        self._times: dict[int, list[float]] = {}  # rank -> [compute, comm, idle]
        #: When each rank computed and its communication moved (overlapped communication).
        self.overlap = Overlap(labelled=trace is not None)
        self._roles: dict[int, str] = {}
        self._blocked: dict[int, tuple[Handle[Any], float]] = {}
        #: Programs still running: when none is, the run is over, whatever timers remain
        #: (a timeout that lost its race leaves one behind).
        self.running = 0
        #: Each rank's process count: a crash starts a new one, and work the dead process
        #: started (a gradient still computing) never lands.
        self.incarnation: dict[int, int] = {}
        #: Compute slowdowns in force (a transient straggler): rank -> factor.
        self.slowdown: dict[int, float] = {}
        #: Seconds to write or read ``n`` bytes of checkpoint (the fault schedule's storage).
        self.storage: Callable[[float], float] = lambda n: 0.05 + n / 1e9
        #: Each rank's last checkpoint (``w.save_checkpoint``): it outlives the rank.
        self.checkpoints: dict[int, RankState] = {}

    # -- strategies.Runtime protocol ------------------------------------------------------
    def stopped(self) -> bool:
        # Read before every resume of every program (and by ``w.done``): the ledger's field,
        # not its property, is one call fewer each time.
        return self.ledger.stop_reason is not None

    def now(self) -> float:
        return float(self.env.now)

    def computed(
        self,
        ctx: WorkerContext,
        work: GradientWork,
        share: float = 1.0,
        what: str = "compute_gradients",
    ) -> Handle[torch.Tensor]:
        grads, samples, seconds = self._gradient(ctx, work, share)
        # Samples count when the gradient exists, not when it starts.
        return self._occupy(ctx.rank, seconds, grads, what, samples)

    def _gradient(
        self, ctx: WorkerContext, work: GradientWork, share: float = 1.0
    ) -> tuple[torch.Tensor, int, float]:
        # Computed at the call (the same numbers as real's snapshot); it takes simulated time.
        grads, samples, _ = work(ctx.replica)
        seconds = self.compute_model.step_time(ctx.rank, ctx.gradients - 1, self.accumulate)
        if share != 1.0:  # a part of a step (experience collected, or learnt from)
            seconds *= share
        rank = ctx.rank
        if self.slowdown:
            seconds *= self.slowdown.get(rank, 1.0)
        self.gradient_seconds.setdefault(rank, []).append(seconds)
        return grads, samples, seconds

    def computed_in_buckets(
        self, ctx: WorkerContext, work: GradientWork, bounds: list[tuple[int, int]]
    ) -> list[Handle[torch.Tensor]]:
        # The gradient as `computed` makes it (the same numbers, time, device and samples);
        # its buckets finish during it, each at its share of the last micro-batch's backward.
        rank = ctx.rank
        now = self.env.now
        start = max(now, self._busy_until.get(rank, now))
        grads, samples, seconds = self._gradient(ctx, work)
        whole = self._occupy(rank, seconds, grads, "compute_gradients", samples)
        fractions = ready_fractions(bounds, ctx.numel)
        life = self.incarnation.get(rank, 0) if self.incarnation else 0
        handles: list[Handle[torch.Tensor]] = []
        for i, ((a, b), fraction) in enumerate(zip(bounds, fractions)):
            what = f"gradient bucket {i + 1} of {len(bounds)}"
            if i == len(bounds) - 1:  # the last is ready with the whole gradient, exactly
                handles.append(whole.then(functools.partial(_part, a, b), what))
                continue
            handle: Handle[torch.Tensor] = Handle("compute", what)
            ready = start + seconds * (1.0 - (1.0 - fraction) / self.accumulate)
            self.env.timeout(ready - now).callbacks.append(
                functools.partial(self._bucket_ready, handle, rank, life, start, grads[a:b])
            )
            handles.append(handle)
        return handles

    def _bucket_ready(
        self,
        handle: Handle[torch.Tensor],
        rank: int,
        life: int,
        start: float,
        part: torch.Tensor,
        _: Any,
    ) -> None:
        if self.incarnation and self.incarnation.get(rank, 0) != life:
            return  # its process crashed: the work died with it
        handle.resolve(part.clone(), at=self.env.now, started_at=start)

    def compute(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        return self._occupy(ctx.rank, seconds, None, f"compute {seconds:g} s", 0)

    def _occupy(
        self, rank: int, seconds: float, value: Any, what: str, samples: int
    ) -> Handle[Any]:
        handle: Handle[Any] = Handle("compute", what)
        now = self.env.now
        # A rank has one device: work started while other work runs queues behind it
        # (max(now, busy), as a comparison: this runs once per gradient).
        busy = self._busy_until.get(rank, now)
        start = busy if busy > now else now
        self._busy_until[rank] = start + seconds
        self.overlap.computing(rank, start, start + seconds)
        life = self.incarnation.get(rank, 0) if self.incarnation else 0

        def finish(_: Any) -> None:
            if self.incarnation and self.incarnation.get(rank, 0) != life:
                return  # its process crashed: the work died with it
            at = self.env.now
            if samples:
                self.ledger.record(Computed(float(at), rank, samples))
            handle.resolve(value, at=at, started_at=start)

        delay = seconds if start == now else start + seconds - now  # exact when not queued
        self.env.timeout(delay).callbacks.append(finish)
        return handle

    def occupy(self, rank: int, seconds: float, what: str) -> Handle[None]:
        """``seconds`` of work on ``rank``'s device that its program did not ask for (writing
        or reading a checkpoint): its next computation queues behind it."""
        return self._occupy(rank, seconds, None, what, 0)

    def sleep(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        handle: Handle[None] = Handle("idle", f"sleep {seconds:g} s")
        start = self.env.now
        self.env.timeout(seconds).callbacks.append(
            lambda _: handle.resolve(None, at=self.env.now, started_at=start)
        )
        return handle

    def settled(self, ctx: RoleContext) -> None:
        if ctx.rank in self.ledger.owner_set:
            self.ledger.record(Settled(float(self.env.now), ctx.rank, ctx.parameters))

    def stepped(self, ctx: RoleContext, staleness: int) -> None:
        if isinstance(ctx, ServerContext):
            # A real server averages and updates in its own thread between two calls: what
            # it starts next waits for that work (the fabric asks `local_work`).
            seconds = self.compute_model.server_step_time(ctx.numel)
            if seconds > 0:
                self._local[ctx.rank] = self._occupy(ctx.rank, seconds, None, "server step", 0)
        state = ctx.parameters if ctx.rank in self.ledger.owner_set else None
        self.ledger.record(Stepped(float(self.env.now), ctx.rank, staleness, state))

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        self.ledger.record(Logged(float(self.env.now), ctx.rank, values))

    def restored(self, ctx: RoleContext, nbytes: float) -> None:
        state = ctx.parameters if ctx.rank in self.ledger.owner_set else None
        self.ledger.record(Restored(float(self.env.now), ctx.rank, ctx.step, nbytes, state))

    def lost(self, ctx: RoleContext, steps: int, undone: bool) -> None:
        self.ledger.record(Lost(float(self.env.now), ctx.rank, steps, undone))

    def held(self, ctx: RoleContext, samples: int) -> None:
        self.ledger.record(Held(float(self.env.now), ctx.rank, samples))

    def save_checkpoint(self, ctx: RoleContext) -> Handle[None]:
        state = self.checkpoints[ctx.rank] = RankState.of(ctx)
        seconds = self.storage(state.nbytes)
        self.ledger.faults.checkpoint_time += seconds
        return self._occupy(ctx.rank, seconds, None, "checkpoint write", 0)

    def load_checkpoint(self, ctx: RoleContext) -> Handle[int | None]:
        state = self.checkpoints.get(ctx.rank)
        if state is None:
            return self._occupy(ctx.rank, 0.0, None, "checkpoint read", 0)
        state.apply(ctx)
        self.restored(ctx, 0.0)
        seconds = self.storage(state.nbytes)
        self.ledger.faults.checkpoint_time += seconds
        return self._occupy(ctx.rank, seconds, state.step, "checkpoint read", 0)

    def local_work(self, rank: int) -> Handle[Any] | None:
        """The rank's own work still running (a server's step), which its next
        communication call must wait for; None when there is none."""
        work = self._local.get(rank)
        if work is None or work.done:
            return None
        return work

    # -- driving programs -----------------------------------------------------------------
    def drive(
        self, ctx: RoleContext, program: Generator[Any, Any, None]
    ) -> Generator[simpy.Event, Any, None]:
        """The SimPy process body running one role program and timing its waits."""
        rank = ctx.rank
        times = self._times.setdefault(rank, [0.0, 0.0, 0.0])
        self._roles[rank] = ctx.role
        driver = ProgramDriver(program, rank, ctx.role, self.stopped)
        self.running += 1
        # Read once: this loop runs twice per worker step (a compute and a collective).
        env, blocked, trace, overlap = self.env, self._blocked, self.trace, self.overlap
        # A program resuming forever at one instant never ends.
        instant, resumes = env.now, 0
        item = driver.advance()
        while isinstance(item, Handle):
            start = env.now
            if not item.done:
                wake = env.event()
                # The handle finishing succeeds the event with the handle as its value,
                # which nothing reads: the program resumes from the handle's outcome.
                item.add_callback(wake.succeed)
                blocked[rank] = (item, start)
                try:
                    yield wake
                except simpy.Interrupt:  # the rank crashed (see crash)
                    self._crashed(ctx, driver, times, item, start)
                    return
                del blocked[rank]
            now = env.now
            if item.children:
                self._account(times, item, start, now)
                self._moved(rank, item)
            else:  # one handle (almost every wait): _account and _moved, inlined
                kind, since, until = item.kind, item.started_at, item.finished_at
                active = 0.0
                if since is not None and until is not None:
                    if kind == "comm":
                        overlap.communicating(rank, since, until, item.label)
                    # max(start, since), min(now, until), without the two calls per wait.
                    since = since if since > start else start
                    until = until if until < now else now
                    if until > since:
                        active = until - since
                compute = active if kind == "compute" else 0.0
                moving = (active if kind in ("compute", "comm") else 0.0) - compute
                times[0] += compute
                times[1] += moving
                times[2] += now - start - compute - moving
            if trace is not None:
                self._spans(trace, rank, item, start, now)
            if now == instant:
                resumes += 1
                if resumes > SPIN_LIMIT:
                    raise RuntimeError(
                        f"rank {rank}'s {ctx.role} program resumed {SPIN_LIMIT} times at "
                        f"t={instant:.6g}s without simulated time passing: it polls with "
                        "zero-length waits; yield the handle it waits for instead"
                    )
            else:
                instant, resumes = now, 0
            # driver.resume(item), one call fewer per wait: the handle's outcome, passed on.
            item = driver.advance(*item.outcome())
        if item == "finished":
            self.running -= 1

    def crash(self, rank: int, process: simpy.Process) -> bool:
        """Crash ``rank`` now: its program is closed at its ``yield`` (its ``finally`` blocks
        run), its work in progress never lands. False if its program had already ended."""
        if not process.is_alive:
            return False
        self.incarnation[rank] = self.incarnation.get(rank, 0) + 1
        self._busy_until.pop(rank, None)
        self._local.pop(rank, None)
        process.interrupt("crash")
        return True

    def _crashed(
        self,
        ctx: RoleContext,
        driver: ProgramDriver,
        times: list[float],
        item: Handle[Any],
        start: float,
    ) -> None:
        """The end of a crashed rank's program: its wait so far is idle, its program closed."""
        del self._blocked[ctx.rank]
        times[2] += self.env.now - start
        if self.trace is not None:
            self.trace.span(ctx.rank, "idle", item.label, start, self.env.now)
        self.running -= 1
        driver.close()

    def _moved(self, rank: int, item: Handle[Any]) -> None:
        """Book when the communication ``rank`` waited on moved (for the overlap)."""
        if item.children:
            for label, since, until in comm_leaves(item):
                self.overlap.communicating(rank, since, until, label)
        elif item.kind == "comm" and item.started_at is not None and item.finished_at is not None:
            self.overlap.communicating(rank, item.started_at, item.finished_at, item.label)

    @staticmethod
    def _account(times: list[float], item: Handle[Any], start: float, end: float) -> None:
        if item.children:
            # A wait on several handles may overlap computing and communicating: computing
            # counts first, then data moving, and the rest of the wait is idle.
            compute = busy_time(item, start, end, ("compute",))
            moving = busy_time(item, start, end, ("compute", "comm")) - compute
        else:
            # One handle (almost every wait): busy_time's interval union, in the same float
            # operations, without building it.
            active = 0.0
            if item.started_at is not None and item.finished_at is not None:
                since, until = max(start, item.started_at), min(end, item.finished_at)
                if until > since:
                    active = until - since
            compute = active if item.kind == "compute" else 0.0
            moving = (active if item.kind in ("compute", "comm") else 0.0) - compute
        times[0] += compute
        times[1] += moving
        times[2] += end - start - compute - moving

    @staticmethod
    def _spans(trace: Trace, rank: int, item: Handle[Any], start: float, end: float) -> None:
        """The wait :meth:`_account` books, as spans on ``rank``'s track of ``trace``."""
        if not end > start:
            return
        if item.children:
            for category, since, until in wait_spans(item, start, end):
                trace.span(rank, category, item.label, since, until)
            return
        began, ended = item.started_at, item.finished_at
        if began is not None and ended is not None:
            # max(start, began), min(end, ended), in the same comparisons as drive's.
            since = began if began > start else start
            until = ended if ended < end else end
            if until > since:
                # Waiting for the operation to start (a peer to join), the operation, then
                # waiting after it; a sleep is idle throughout.
                kind = item.kind if item.kind in ("compute", "comm") else "idle"
                label = item.label
                if since > start:  # (an empty span is not recorded: skip the call)
                    trace.span(rank, "idle", label, start, since)
                trace.span(rank, kind, label, since, until)
                if end > until:
                    trace.span(rank, "idle", label, until, end)
                return
        trace.span(rank, "idle", item.label, start, end)

    # -- at the end -----------------------------------------------------------------------
    def waiting(self) -> dict[int, Handle[Any]]:
        """What each blocked rank waits on, by rank."""
        return {rank: item for rank, (item, _) in sorted(self._blocked.items())}

    def record_rank_times(self) -> None:
        """Give the ledger every rank's compute / communication / idle time up to now.

        A rank still waiting when the run stops has its wait split as usual if the operation
        has finished at this instant; an unfinished computation counts as compute, and an
        unfinished communication as idle (how much of its data moved is not known).
        """
        now = self.env.now
        for rank in sorted(self._times):
            times = list(self._times[rank])
            if rank in self._blocked:
                item, start = self._blocked[rank]
                if not item.done and item.kind == "compute":
                    times[0] += now - start
                    if self.trace is not None:
                        self.trace.span(rank, "compute", item.label, start, now)
                else:
                    self._account(times, item, start, now)
                    self._moved(rank, item)
                    if self.trace is not None:
                        self._spans(self.trace, rank, item, start, now)
            overlap = self.overlap.seconds(rank)
            if self.trace is not None and overlap > 0:  # its second track: what overlapped
                for label, since, until in self.overlap.pieces(rank):
                    self.trace.overlapped(rank, label, since, until)
            self.ledger.rank_times(rank, *times, role=self._roles[rank], overlap=overlap)
