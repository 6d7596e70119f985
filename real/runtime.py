"""The real runtime: one rank's side of its context, on the wall clock (its driver loop is
:mod:`real.driver`; its gradients are computed beside it by :mod:`real.compute`).

A rank records typed *events* (:mod:`strategies.events`: gradients computed, when ready;
every optimizer step applied, an owner's snapshot of the parameters at evaluation points, bytes charged,
values logged), each stamped with seconds since the ranks started together; what it records
and when it has done its share of the run follow the ledger's own rules
(:class:`strategies.rules.RunRules`). The launcher feeds every rank's events, in time order,
to the same :meth:`strategies.ledger.Ledger.record` the simulator uses, which builds the
rows. Nothing slow happens inside the timed loop.

Stopping is decided across processes, on the process group's store: an owner of the global
model that has applied ``steps`` optimizer steps adds itself to a counter, and the last one
sets the stop key. A watcher thread on every rank sees the key and wakes the driver, which
closes the program at its current ``yield`` (an operation it waited on may never complete
once peers have stopped, and is abandoned). Programs learn the stop through ``w.done`` or
at a yield, never by counting alone.

A rank that stops responding (stopped by SIGSTOP, swapped out, hung, its host cut off) is
found by its heartbeat, not by the collective timeout: every rank's watcher beats a counter
about once a second, and a rank that has waited on an operation for more than a second (or
waits for the others to leave after the stop) also reads its peers' counters; one that has
not moved for ``silence`` seconds (10 by default, well under the timeout) is the run's
failure, "rank R stopped responding: no heartbeat for N s", and the run stops. A rank waits
only on peers it needs: an asynchronous server, which takes whichever push comes first, goes
on serving the others while one worker is stalled (it waits long on nobody).

Each wait is also a span of the run's timeline (:class:`runs.trace.Trace`, when the rank has
one): the program's own work since the last yield, and the part of the wait at the yield in
which a gradient computed, are ``compute``, the rest of the wait ``comm`` (as the rank row
counts them: a wall-clock wait cannot tell a peer's lateness from transfer time; see
:mod:`real.driver`), stamped on the shared clock below.

Event times are seconds on the wall clock since rank 0's start, shared by every rank. An
optimizer step or a logged value is stamped when the program resumed, i.e.
when the last operation it waited on finished (stamped by the completion thread), so that a
step and the peers' next computations order causally even on an oversubscribed machine.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from real import checkpoints as restart_points
from real import rendezvous
from real.compute import GradientThread
from real.store import StoreTampered
from runs.overlap import Overlap
from runs.trace import Trace
from strategies.context import GradientWork, RoleContext, WorkerContext
from strategies.events import (
    Checkpointed,
    Computed,
    Event,
    Held,
    Logged,
    Lost,
    Restored,
    Sent,
    Settled,
    Stepped,
)
from strategies.handles import Handle, done
from strategies.rules import RunRules
from strategies.snapshots import RankState

__all__ = [
    "SILENCE",
    "ComputeTimer",
    "InlineCompletion",
    "RealRuntime",
    "StopSignal",
    "Timers",
]

STOP_KEY, OWNERS_KEY, STEP_KEY, BEAT_KEY = "stop", "owners_done", "step/{rank}", "beat/{rank}"
#: How often an owner publishes its step for the progress bar (a store round trip each).
PROGRESS_EVERY = 0.25
#: How often a rank's watcher looks for the stop, and beats its heartbeat.
STOP_POLL, HEARTBEAT_EVERY = 0.02, 1.0
#: The longest a rank waits on an inline collective before it looks at the stop again.
INLINE_SLICE = 0.05
#: Seconds without a heartbeat after which a rank that others wait on is reported.
SILENCE = 10.0


class InlineCompletion(Protocol):
    """What a transport offers when it lets the waiting thread finish operations
    (:class:`~real.transport.TorchTransport`: its CPU collectives)."""

    def holds(self, handle: Handle[Any]) -> bool: ...

    def finish_inline(self, handle: Handle[Any], seconds: float) -> bool: ...

    def release_inline(self) -> None: ...


class Timers:
    """One thread that resolves every sleep handle of a rank at its deadline (a thread per
    sleep would pile up: a timeout that lost its race keeps its timer for its full length)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Handle[None], float]] = []
        self._seq = 0
        self._cond = threading.Condition()
        threading.Thread(target=self._loop, daemon=True).start()

    def sleep(self, seconds: float, what: str) -> Handle[None]:
        handle: Handle[None] = Handle("idle", what)
        start = self._clock()
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (start + seconds, self._seq, handle, start))
            self._cond.notify()
        return handle

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > self._clock():
                    wait = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(wait)
                _, _, handle, start = heapq.heappop(self._heap)
            handle.resolve(None, at=self._clock(), started_at=start)


class ComputeTimer:
    """Seconds of a rank's own work between two yields.

    On the CPU, the wall clock. On a GPU, work is queued asynchronously, so the time is
    taken with CUDA events, and the device is synchronised at the yield: what follows (a
    collective, the event stamps) starts after the work really ended.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self._mark = 0.0
        self._start: Any = None

    def begin(self) -> None:
        if self._cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        self._mark = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of work since :meth:`begin`, the timer still running (on a GPU, the work
        queued so far has to finish first)."""
        if self._cuda:
            stop = torch.cuda.Event(enable_timing=True)
            stop.record()
            stop.synchronize()
            return float(self._start.elapsed_time(stop)) / 1000.0
        return time.perf_counter() - self._mark

    def end(self) -> float:
        """Seconds of work since :meth:`begin` (the timer is begun again at the next one)."""
        return self.elapsed()


class StopSignal:
    """The run's stop decision, shared by every rank through the rendezvous store.

    ``store`` is used by the rank's own thread; ``watch_store`` is a second client used only
    by the watcher thread (a store client serves one call at a time, and the watcher blocks).
    The watcher also beats a counter, ``beat/RANK``, about once a second for as long as the
    process lives: a rank whose counter stops has died (:func:`real.rendezvous.silent_ranks`)
    or stopped responding. While this rank waits (:meth:`waiting`) for more than a second,
    and once the run has stopped, the watcher reads the ``world_size`` ranks' counters too: a
    peer whose counter has not moved for ``silence`` seconds is reported as the run's
    failure, and the run stops (``math.inf``: never).
    """

    def __init__(
        self,
        store: Any,
        watch_store: Any,
        owners: int,
        steps: int = 0,
        rank: int = 0,
        world_size: int = 1,
        silence: float = SILENCE,
    ) -> None:
        self._store = store
        self._rank = rank
        self._world_size = world_size
        self.silence = silence
        #: What this rank's program waits on, and since when (``time.monotonic()``).
        self._waiting: tuple[float, Handle[Any]] | None = None
        #: Each peer's heartbeat as last read, and when it was first read at that count.
        self._heard: dict[int, tuple[int, float]] = {}
        self._reported = False
        self._beat = BEAT_KEY.format(rank=rank)
        self._rank = rank
        self._interrupted = False  # set by a signal handler (see interrupt)
        self._published = -math.inf
        self._steps_hint = steps
        self._watch = watch_store
        self._owners = owners
        self.event = threading.Event()
        self.reason: str | None = None
        self._listeners: list[threading.Event] = []
        #: The rank's fault schedule (:class:`real.crashes.RankFaults`), if the run has one:
        #: ranks the schedule killed are not silent peers, and every step is published (a
        #: restart waits for a global step).
        self.faults: Any = None
        self._thread = threading.Thread(target=self._watch_loop, daemon=True)
        self._thread.start()

    def listen(self, wake: threading.Event) -> None:
        self._listeners.append(wake)

    def waiting(self, handle: Handle[Any] | None) -> None:
        """This rank's program waits on ``handle`` from now on (None: it waits no more)."""
        self._waiting = None if handle is None else (time.monotonic(), handle)
        if self.faults is not None:  # (its quorums: whether it is blocked on one)
            self.faults.waiting = handle

    def progress(self, rank: int, step: int) -> None:
        """Publish an owner's step, at most every ``PROGRESS_EVERY`` seconds (and at the end)."""
        now = time.monotonic()
        if self.faults is not None:
            self.faults.step = step
        if (
            self.faults is not None
            or now - self._published >= PROGRESS_EVERY
            or step >= self._steps_hint
        ):
            self._published = now
            self._store.set(STEP_KEY.format(rank=rank), str(step))

    def owner_done(self) -> None:
        """This owner has applied its ``steps``; the last owner stops the run (with a fault
        schedule, the launcher stops it once every owner in the model is done)."""
        if self.faults is not None:
            self.faults.done()
        if int(self._store.add(OWNERS_KEY, 1)) >= self._owners:
            self.stop("steps")

    def stop(self, reason: str) -> None:
        self._store.set(STOP_KEY, reason)
        self._set(reason)

    def interrupt(self) -> None:
        """Stop this rank only, from a signal handler: a flag, no lock and no store call
        (the handler runs on the rank's thread, which may hold the events' locks); the
        watcher thread sets the stop within a poll, and the rank's own thread tells the
        others with :meth:`stop`."""
        self._interrupted = True

    def _set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()
            for wake in self._listeners:
                wake.set()

    def _watch_loop(self) -> None:
        # Polls rather than blocking in the store's wait: a wait that times out makes c10d log
        # a warning each time, and the loop also beats the heartbeat.
        next_beat = 0.0
        while True:
            if self._interrupted and not self.event.is_set():
                self._set("interrupted")
            try:
                if time.monotonic() >= next_beat:
                    self._watch.add(self._beat, 1)
                    next_beat = time.monotonic() + HEARTBEAT_EVERY
                    if self._listening():
                        self._look_for_silence()
                if not self.event.is_set() and self._watch.check([STOP_KEY]):
                    self._set(bytes(self._watch.get(STOP_KEY)).decode())
                faults = self.faults
                if faults is not None and not faults.requested.is_set():
                    if self._watch.check([faults.kill_key]):  # a crash at a time: now
                        # ... or a halt: a peer crashed, every rank restarts from a checkpoint
                        asked = bytes(self._watch.get(faults.kill_key)).decode()
                        faults.halting = asked == "halt"
                        faults.requested.set()
                        for wake in self._listeners:
                            wake.set()
            except StoreTampered as tampered:  # a stop the run did not sign: fail, loudly
                rendezvous.report_failure(self._watch, self._rank, str(tampered))
                self._set("failed")
            except Exception:  # the store is gone: the run is over
                return
            time.sleep(HEARTBEAT_EVERY if self.event.is_set() else STOP_POLL)

    def _listening(self) -> bool:
        """Whether to read the peers' heartbeats now: this rank has waited on an operation
        for a second or more, or the run has stopped (every rank should hand in and leave)."""
        if self._reported or self._world_size < 2 or self.silence == math.inf:
            return False
        waiting = self._waiting
        long_wait = waiting is not None and time.monotonic() - waiting[0] >= HEARTBEAT_EVERY
        return long_wait or self.event.is_set()

    def _look_for_silence(self) -> None:
        """Read every peer's heartbeat; report those silent for ``silence`` seconds. Counters,
        not clocks: a count unchanged between two reads means no beat in between, however far
        apart the reads were, and nodes' clocks need not agree."""
        peers = [r for r in range(self._world_size) if r != self._rank]
        if self.faults is not None:  # a rank the schedule killed is down, not silent
            killed = set(self.faults.down(peers))
            peers = [r for r in peers if r not in killed]
        keys = [BEAT_KEY.format(rank=r) for r in peers]
        if hasattr(self._watch, "multi_get") and self._watch.check(keys):
            counts = [int(bytes(v)) for v in self._watch.multi_get(keys)]  # one round trip
        else:  # a peer that has not beaten yet (or an older torch): one call each
            counts = [int(self._watch.add(key, 0)) for key in keys]
        now = time.monotonic()
        silent = []
        for peer, count in zip(peers, counts):
            heard = self._heard.get(peer)
            if heard is None or heard[0] != count:
                self._heard[peer] = (count, now)
            elif now - heard[1] >= self.silence:
                silent.append(peer)
        if silent:
            self._reported = True
            rendezvous.report_silence(self._watch, self._silence_message(silent))
            self._watch.set(STOP_KEY, "failed")
            self._set("failed")

    def _silence_message(self, silent: list[int]) -> str:
        """``rank R stopped responding: no heartbeat for N s (...)``, naming what this rank
        waited on."""
        waiting = self._waiting
        if len(silent) == 1:
            who = f"rank {silent[0]}"
        else:
            who = f"ranks {', '.join(map(str, silent[:-1]))} and {silent[-1]}"
        doing = (
            f"waited on {waiting[1].describe()}"
            if waiting is not None and not self.event.is_set()
            else "waited for every rank to hand in after the stop"
        )
        return (
            f"{who} stopped responding: no heartbeat for {self.silence:g} s (stopped, hung, or "
            f"cut off from the run's store; its own log may say why) while rank {self._rank} "
            f"{doing}"
        )


class RealRuntime:
    """``strategies.Runtime`` for one real rank, recording events for the ledger.

    Parameters
    ----------
    rank
        This rank.
    steps, eval_every
        The run's stop and evaluation settings (for snapshots at evaluation points).
    owners
        The ranks whose states make the global model.
    signal
        The cross-process stop.
    device
        Where the rank computes (GPU work is timed with CUDA events).
    """

    def __init__(
        self,
        rank: int,
        steps: int,
        eval_every: int,
        owners: list[int],
        signal: StopSignal,
        device: torch.device | None = None,
    ) -> None:
        self.rank = rank
        self.timer = ComputeTimer(torch.device("cpu") if device is None else device)
        #: What this rank must record and when it has done its share: the ledger's rules.
        self.rules = RunRules(steps, eval_every, tuple(owners))
        self.owner = rank in owners
        self.signal = signal
        #: The run's start on the shared wall clock (set by the launcher once ranks are ready;
        #: every rank uses rank 0's, so events of different ranks order on one time line).
        self.start = time.time()
        self.resumed_at = 0.0
        self.events: list[Event] = []
        #: Where ``w.save_checkpoint`` writes (the launcher's directory; None: not known).
        self.checkpoints: Path | None = None
        #: ``recovery="restart"``: where this rank writes the run's checkpoints, and every
        #: how many of its steps, asked at each (:mod:`real.checkpoints`); None: none.
        self.restart_points: tuple[Path, Callable[[RoleContext], int | None]] | None = None
        self._settled = -1  # the last step whose state was recorded
        self.compute_time = 0.0
        #: The rank's compute time so far at each gradient it computed, as of the yield that
        #: saw it finished (``compute.csv``: the differences are what each gradient cost,
        #: with the rank's own work around it; the sum is the rank's compute time).
        self.gradient_marks: list[float] = []
        #: Where the rank's gradients are computed, beside its communication.
        self.gradients = GradientThread(self.now, self.timer.device)
        self.comm_time = 0.0
        #: When the rank computed and its communication moved (overlapped communication),
        #: named for the trace's second track.
        self.overlap = Overlap(labelled=True)
        self.wake = threading.Event()
        signal.listen(self.wake)
        self._timers = Timers(self.now)
        #: The transport, when it finishes some operations on the waiting thread (set once
        #: both exist; None: every handle finishes by itself).
        self.inline: InlineCompletion | None = None
        #: Where this rank's spans go (None: not recorded).
        self.trace: Trace | None = None
        #: Hand in each evaluation point's state at once: the run's watcher evaluates the
        #: global model as it goes (a target: ``target_loss``,
        #: ``target_return``; :mod:`real.watch`).
        self.eager = False
        self._hand_in_now = False
        #: Hands in and kills this process (a crash the launcher asked for at a time, seen
        #: while the rank waits: it dies at that wait, as at a ``yield``); None: no faults.
        self.crash_now: Callable[[], None] | None = None

    # -- strategies.Runtime protocol ------------------------------------------------------
    def stopped(self) -> bool:
        return self.signal.event.is_set()

    def now(self) -> float:
        return time.time() - self.start

    def computed(
        self,
        ctx: WorkerContext,
        work: GradientWork,
        share: float = 1.0,
        what: str = "compute_gradients",
    ) -> Handle[torch.Tensor]:
        # On the rank's compute thread (or stream), from the parameters as they are now: the
        # program's communication proceeds beside it, as in sim. `share` is sim's: here the
        # work takes the time it takes.
        return self.gradients.submit(ctx.replica, work, what=what)

    def computed_in_buckets(
        self, ctx: WorkerContext, work: GradientWork, bounds: list[tuple[int, int]]
    ) -> list[Handle[torch.Tensor]]:
        # As `computed`; autograd's hooks finish each bucket during backward, as DDP's do.
        return self.gradients.submit_buckets(ctx.replica, work, bounds, ctx.accumulate)

    def took_gradients(self) -> None:
        """Record the gradients finished since the last call (at a yield, on the rank's own
        thread, which hands the events in): samples count when a gradient exists, and the
        rank's compute time so far marks it in ``compute.csv``."""
        for at, samples in self.gradients.take_finished():
            self.events.append(Computed(at, self.rank, samples))
            self.gradient_marks.append(self.compute_time)

    def compute(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        handle: Handle[None] = Handle("compute", f"compute {seconds:g} s")
        handle.resolve(None, at=self.now())  # the work itself already ran
        return handle

    def sleep(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        return self._timers.sleep(seconds, f"sleep {seconds:g} s")

    def settled(self, ctx: RoleContext) -> None:
        # A step's state is taken before the next step (after the communication that
        # follows it), and handed in only where an evaluation reads it.
        if self.owner and self.rules.snapshot_when_settled(ctx.step):
            self._settle(ctx, self.resumed_at)

    def ended(self, ctx: RoleContext) -> None:
        """The program ended (a failure, most likely) before settling its last step: its
        state now is that step's, if an evaluation needs it."""
        if self.owner and self._settled != ctx.step and self.rules.snapshot_when_settled(ctx.step):
            self._settle(ctx, self.now())

    def _settle(self, ctx: RoleContext, at: float) -> None:
        self._settled = ctx.step
        # Snapshots go to the CPU: the ledger evaluates them there, whatever the device.
        self.events.append(Settled(at, self.rank, ctx.parameters().cpu()))
        self.on_snapshot()

    def on_snapshot(self) -> None:
        # The run evaluates as it goes (a target): the state goes out at the next yield.
        self._hand_in_now = self.eager

    def hand_in_now(self) -> bool:
        """Whether an evaluation point's state waits to be handed in at once (``eager``);
        asking clears it."""
        now, self._hand_in_now = self._hand_in_now, False
        return now

    def stepped(self, ctx: RoleContext, staleness: int) -> None:
        self.rules.check_runaway(self.rank, ctx.step)
        # Every rank's steps are recorded: a gradient's samples count once its rank applies
        # it (strategies.counts). An owner's state is taken when it settles (before the next
        # step, or when the program ends); the last step has none to follow it: taken now.
        snapshot = None
        if self.owner and self.rules.snapshot_when_applied(ctx.step):
            snapshot = ctx.parameters().cpu()
        self.events.append(Stepped(self.resumed_at, self.rank, staleness, snapshot))
        if self.restart_points is not None:
            directory, every = self.restart_points
            interval = every(ctx)  # (None: not known yet)
            if interval is not None and ctx.step % interval == 0:
                self._write_restart_point(ctx, directory)
        if not self.owner:
            return
        self.signal.progress(self.rank, ctx.step)
        if self.rules.owner_finishes(ctx.step):
            self.signal.owner_done()

    def _write_restart_point(self, ctx: RoleContext, directory: Path) -> None:
        """This rank's part of the run's checkpoint of its step (``recovery="restart"``);
        the time it takes is the rank's, and the run's ``checkpoint_time``."""
        began = time.perf_counter()
        restart_points.write(directory, self.rank, RankState.of(ctx))
        seconds = time.perf_counter() - began
        self.events.append(Checkpointed(self.resumed_at, self.rank, ctx.step, seconds))

    def resume(self, ctx: RoleContext, directory: Path, step: int) -> None:
        """``ctx`` takes this rank's part of the run's checkpoint of ``step`` (every rank
        restarted from it; step 0: the initial state, nothing to read)."""
        if step == 0:
            return
        began = time.perf_counter()
        restart_points.read(directory, self.rank, step).apply(ctx)
        seconds = time.perf_counter() - began
        self.events.append(Checkpointed(self.now(), self.rank, step, seconds))

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        self.events.append(Logged(self.resumed_at, self.rank, dict(values)))

    def restored(self, ctx: RoleContext, nbytes: float) -> None:
        state = ctx.parameters().detach().cpu().clone() if self.owner else None
        self.events.append(Restored(self.resumed_at, self.rank, ctx.step, float(nbytes), state))
        if self.signal.faults is not None:  # in the model again: the stop waits for it
            self.signal.faults.rejoined()

    def lost(self, ctx: RoleContext, steps: int, undone: bool) -> None:
        self.events.append(Lost(self.resumed_at, self.rank, int(steps), bool(undone)))

    def held(self, ctx: RoleContext, samples: int) -> None:
        self.events.append(Held(self.resumed_at, self.rank, int(samples)))

    def _checkpoint_file(self, ctx: RoleContext) -> Path:
        if self.checkpoints is None:
            raise RuntimeError(
                "w.save_checkpoint / w.load_checkpoint need the run's checkpoint directory, "
                "which only the local launcher provides so far; run locally or with sim"
            )
        return self.checkpoints / f"rank{ctx.rank}.pt"

    def save_checkpoint(self, ctx: RoleContext) -> Handle[None]:
        """Write ``ctx``'s state to the run's checkpoint directory (a file per rank, replaced
        whole: a crash mid-write leaves the last one). The time it takes is the rank's."""
        path = self._checkpoint_file(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = RankState.of(ctx)
        record = {
            "flat": state.flat.detach().cpu(),
            "numbers": dict(state.numbers),
            "position": torch.tensor([state.step, state.version, state.data]),
        }
        partial = path.with_suffix(".tmp")
        torch.save(record, partial)
        partial.replace(path)
        return done(what="checkpoint write")

    def load_checkpoint(self, ctx: RoleContext) -> Handle[int | None]:
        """``ctx`` takes its last checkpoint (tensors and plain numbers only: loaded with
        ``weights_only=True``); None when it has none."""
        path = self._checkpoint_file(ctx)
        if not path.is_file():
            return done(None, what="checkpoint read")
        record = torch.load(path, weights_only=True)
        step, version, data = (int(x) for x in record["position"].tolist())
        state = RankState(record["flat"], dict(record["numbers"]), step, version, data)
        state.apply(ctx)
        self.restored(ctx, 0.0)
        return done(step, what="checkpoint read")

    def charged(self, nbytes: float) -> None:
        """Bytes this rank injected (the transport reports each operation it starts)."""
        self.events.append(Sent(self.now(), self.rank, float(nbytes)))

    # -- waiting --------------------------------------------------------------------------
    def wait(self, handle: Handle[Any], timeout: float) -> None:
        """Block until ``handle`` finishes, the run stops, or ``timeout`` seconds pass."""
        if handle.kind == "compute" and self._compute_here(handle):
            return
        self.gradients.start()  # those queued go on beside this wait
        if handle.kind != "comm":  # a sleep or a gradient needs no peer: not a wait on them
            self._wait(handle, timeout)
            return
        self.signal.waiting(handle)  # a long wait has the watcher listen for silent peers
        try:
            self._wait(handle, timeout)
        finally:
            self.signal.waiting(None)

    def _compute_here(self, handle: Handle[Any]) -> bool:
        """Compute a gradient waited on before the compute thread started it on this thread
        (held collectives are let go first, as a wait on anything else does)."""
        if self.inline is not None:
            self.inline.release_inline()
        return self.gradients.run_here(handle)

    def _wait(self, handle: Handle[Any], timeout: float) -> None:
        if self.inline is not None:
            if self.inline.holds(handle):
                self._wait_inline(self.inline, handle, timeout)
                return
            # Anything else may finish only once held operations do (wait_any, then).
            self.inline.release_inline()
        self.wake.clear()
        handle.add_callback(lambda _: self.wake.set())
        # A sleep or a gradient ends by itself: the bound is for operations that need a peer.
        deadline = math.inf if handle.kind != "comm" else time.perf_counter() + timeout
        while not handle.done and not self.stopped():
            self._crash_if_asked()
            left = deadline - time.perf_counter()
            if left <= 0 or not self.wake.wait(None if left == math.inf else left):
                if not handle.done and not self.stopped():
                    return
            self.wake.clear()

    def _wait_inline(self, inline: InlineCompletion, handle: Handle[Any], timeout: float) -> None:
        """Finish a held operation on this thread, in slices, to see the stop (a peer that
        has stopped never joins) and the timeout as :meth:`wait` does."""
        deadline = time.perf_counter() + timeout
        while not self.stopped():
            self._crash_if_asked()
            left = deadline - time.perf_counter()
            if left <= 0 or inline.finish_inline(handle, min(INLINE_SLICE, left)):
                return

    def _crash_if_asked(self) -> None:
        faults = self.signal.faults
        if faults is not None and faults.requested.is_set() and self.crash_now is not None:
            self.crash_now()

    def release(self) -> None:
        """Let every held operation finish by itself (the program has ended)."""
        if self.inline is not None:
            self.inline.release_inline()
