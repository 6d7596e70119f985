"""The local launcher's side of a fault schedule: deaths it expected, kills and restarts.

A rank process that the schedule killed (it marked itself crashed on the store first, or the
launcher killed it at a time: :mod:`real.crashes`) is not the run's failure: the launcher
records ``Crashed`` for the ledger and, where the crash has a restart, starts a new process
for the same rank once the global step of the live owners reached ``restart_step`` (or
``restart`` seconds after the crash), recording ``Restarted``. Crashes at a time and random
ones (uptimes from the run's seed, as ``sim`` draws them, as wall seconds) are asked of the
rank. The launcher stops the run once every owner *in the global model* has applied
``steps`` (a killed one, one restarted and not healed yet, or one a testbed's partition
cut off, :mod:`real.partitions`, is not in it), as ``sim``'s
ledger does; a rank that stays down counts as done for leaving together, and so does a
restart still pending when the run stops.

With ``recovery="restart"`` (:mod:`real.checkpoints`) a crash restarts the whole job: the
launcher asks every other rank to halt (it hands in its events and leaves; one that has not
within ``KILL_GRACE`` seconds is killed), waits for the crash's ``restart`` delay, and starts
every rank again as a new process that loads the last complete checkpoint, recording
``Restarted`` and the rewind (:class:`real.checkpoints.Rewound`) for the ledger.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faults import Crash, FaultSchedule, RandomCrashes
from real import rendezvous
from real.checkpoints import Rewound, last_complete, prune, read
from real.crashes import (
    crash_count,
    crash_step,
    crashed_at,
    done,
    in_model,
    mark_crashed,
    mark_restarted,
)
from real.partitions import is_out
from real.runtime import STEP_KEY, STOP_KEY
from strategies.events import Crashed, Event, Restarted

__all__ = ["Restarts"]

START_KEY, FINISHED_KEY = "start", "finished"  # as real.rank names them
#: Seconds a rank asked to crash at a time has to do it itself before it is killed.
KILL_GRACE = 2.0


class Restarts:
    """What the launcher does about ``schedule`` while the ranks run (see the module).

    ``start(rank, incarnation, generation=0, resume=0)`` starts a process for ``rank`` and
    returns its pid (``generation``, ``resume``: every rank restarted from the checkpoint of
    step ``resume``, for the ``generation``-th time). ``checkpoints``: where the ranks write
    the run's checkpoints with ``recovery="restart"``."""

    def __init__(
        self,
        schedule: FaultSchedule,
        world_size: int,
        owners: list[int],
        store: Any,
        start: Callable[..., int],
        kill: Callable[[list[int]], None],
        seed: int = 0,
        checkpoints: Path | None = None,
    ) -> None:
        self.schedule, self.world_size, self.owners = schedule, world_size, owners
        self._store, self._start, self._kill = store, start, kill
        #: How many processes each rank has had (1: never restarted).
        self.incarnations = dict.fromkeys(range(world_size), 1)
        #: Crashed and Restarted (and rewinds to a checkpoint), for the ledger's replay.
        self.events: list[Event | Rewound] = []
        self.checkpoints = checkpoints
        #: How many times every rank was restarted from a checkpoint.
        self.generation = 0
        #: A restart of every rank under way: the crashed rank, and when it may start.
        self._job: tuple[int, float] | None = None
        self._halting: dict[int, float] = {}  # rank -> when it is killed if still running
        self._absorbed: set[int] = set()  # halting ranks whose own crash came first
        self._pruned = 0.0
        self._pending: dict[int, tuple[str, float]] = {}
        self._down: set[int] = set()
        self._causes: dict[int, Crash | RandomCrashes] = {}
        self._timed = sorted(
            (c for c in schedule.crashes if c.at is not None), key=lambda c: (c.at or 0.0, c.rank)
        )
        self._started_at: float | None = None
        self._asked: dict[int, tuple[float, int, int]] = {}  # crashes asked: (by, pid, inc)
        # Random crashes: each covered rank's uptimes from the run's seed (as sim draws
        # them), as wall seconds from its (re)start, and when its next crash comes.
        self._random: dict[int, RandomCrashes] = {}
        self._uptimes: dict[int, Any] = {}
        self._next: dict[int, float] = {}
        for crashes in schedule.random_crashes:
            for rank in crashes.ranks or range(world_size):
                self._random[rank] = crashes
                self._uptimes[rank] = crashes.uptimes(seed, rank)
                self._next[rank] = next(self._uptimes[rank])
        self._stopped = False

    def now(self) -> float | None:
        """Seconds on the run's shared clock (None before the ranks started together)."""
        if self._started_at is None:
            if not self._store.check([START_KEY]):
                return None
            self._started_at = float(bytes(self._store.get(START_KEY)).decode())
        return time.time() - self._started_at

    def died(self, rank: int, code: int) -> bool:
        """Whether ``rank``'s process ended (``code``) as the schedule killed it; if so, its
        crash is recorded and its restart (or its end) arranged."""
        incarnation = self.incarnations[rank] - 1
        if rank in self._halting:  # asked to halt (every rank restarts): killed if it had to
            if (
                rank not in self._absorbed
                and crashed_at(self._store, rank, incarnation) is not None
            ):
                # Its own crash, as it was asked to halt: the job restarts anyway (sim drops
                # a crash while every rank restarts); it is not down once all are back.
                self._absorbed.add(rank)
                mark_restarted(self._store, rank)
            return True
        if rank in self._down or code != -signal.SIGKILL:
            return rank in self._down
        at = crashed_at(self._store, rank, incarnation)
        if at is None:
            return False
        self._down.add(rank)
        self.events.append(Crashed(at, rank))
        cause = self._causes.pop(rank, None)
        if cause is None:  # it killed itself at a step: its next step crash
            step = crash_step(self.schedule, rank, crash_count(self._store, rank) - 1)
            cause = next(c for c in self.schedule.crashes if c.rank == rank and c.step == step)
        if self.schedule.recovery == "restart":
            if not self._stopped:
                self._restart_job(rank, at + (cause.restart or 0.0))
            return True
        restart_step = getattr(cause, "restart_step", None)  # (random crashes have none)
        if restart_step is not None and not self._stopped:
            self._pending[rank] = ("step", float(restart_step))
        elif cause.restart is not None and not self._stopped:
            self._pending[rank] = ("at", at + cause.restart)
        else:
            self._gone(rank, at)
        return True

    def _gone(self, rank: int, at: float) -> None:
        """``rank`` stays down: it is done, for leaving together and for the stop."""
        self._store.add(FINISHED_KEY, 1)
        if rank not in self.owners:
            return
        if all(r in self._down and r not in self._pending for r in self.owners):
            rendezvous.report_silence(
                self._store,
                f"rank {rank} crashed at t={at:.6g}s and no owner of the global model is left: "
                "its state is lost",
            )
            self._store.set(STOP_KEY, "failed")

    def poll(self, pids: list[int], codes: dict[int, int | None]) -> None:
        """Kill the ranks whose time has come, and start those due back (``pids[rank]``:
        each rank's current process)."""
        if not self._stopped and self._store.check([STOP_KEY]):
            self._stopped = True
            for rank in list(self._pending):  # never coming back: done
                del self._pending[rank]
                self._store.add(FINISHED_KEY, 1)
        if self._stopped:
            return
        now = self.now()
        if now is None:
            return
        if self._job is not None:
            self._finish_job(now, pids, codes)
            return
        self._prune()
        self._stop_when_done()
        while self._timed and (self._timed[0].at or 0.0) <= now:
            crash = self._timed.pop(0)
            self._ask(crash.rank, crash, pids, codes)
        for rank, at in list(self._next.items()):
            if at <= now and rank not in self._down and rank not in self._asked:
                del self._next[rank]  # drawn again when it restarts
                self._ask(rank, self._random[rank], pids, codes)
        for rank, (deadline, pid, incarnation) in list(self._asked.items()):
            if codes.get(pid) is not None:
                del self._asked[rank]
            elif time.monotonic() > deadline:
                del self._asked[rank]
                if crashed_at(self._store, rank, incarnation) is None:
                    mark_crashed(self._store, rank, incarnation, now)
                self._kill([pid])
        for rank, (how, when) in list(self._pending.items()):
            if (how == "at" and now >= when) or (how == "step" and self._global_step() >= when):
                del self._pending[rank]
                self._restart(rank, pids, codes)

    @property
    def restarting(self) -> bool:
        """Whether every rank is being restarted from a checkpoint (none may be running)."""
        return self._job is not None and not self._stopped

    def _restart_job(self, crashed: int, when: float) -> None:
        """``crashed`` died: ask every other rank to halt; all restart at ``when``."""
        self._job = (crashed, when)
        grace = time.monotonic() + KILL_GRACE
        for rank in range(self.world_size):
            if rank != crashed:
                self._halting[rank] = grace
                incarnation = self.incarnations[rank] - 1
                self._store.set(f"faults/kill/{rank}/{incarnation}", "halt")

    def _finish_job(self, now: float, pids: list[int], codes: dict[int, int | None]) -> None:
        """Kill the ranks that did not halt in time; once none runs and the restart delay
        has passed, start every rank from the last complete checkpoint."""
        for rank, deadline in self._halting.items():
            if codes.get(pids[rank]) is None and time.monotonic() > deadline:
                self._kill([pids[rank]])
        for rank, at in list(self._next.items()):  # due while every rank is down: the next
            if at <= now:
                self._next[rank] = now + next(self._uptimes[rank])
        assert self._job is not None
        crashed, when = self._job
        if now < when or any(codes.get(pid) is None for pid in pids):
            return
        self._job = None
        self._halting.clear()
        self._absorbed.clear()
        self._down.discard(crashed)
        self.generation += 1
        step = last_complete(self.checkpoints, self.world_size) if self.checkpoints else 0
        flats = None
        if step and self.checkpoints is not None:
            flats = {r: read(self.checkpoints, r, step).flat for r in self.owners}
        mark_restarted(self._store, crashed)
        now = self.now() or now
        self.events += [Restarted(now, crashed), Rewound(now, crashed, step, flats)]
        if crashed in self._uptimes:  # its next random crash, from this start
            self._next[crashed] = now + next(self._uptimes[crashed])
        for rank in range(self.world_size):
            incarnation = self.incarnations[rank]
            self.incarnations[rank] += 1
            pid = self._start(rank, incarnation, generation=self.generation, resume=step)
            pids[rank] = pid
            codes[pid] = None

    def _prune(self) -> None:
        """Drop checkpoints older than the last complete one (about once a second)."""
        if self.checkpoints is not None and time.monotonic() - self._pruned > 1.0:
            self._pruned = time.monotonic()
            prune(self.checkpoints, self.world_size)

    def _stop_when_done(self) -> None:
        """Stop the run once every owner in the global model has applied ``steps`` (a killed
        one, or one restarted and not healed yet, is not in it), as ``sim``'s ledger does."""
        if not any(done(self._store, r) for r in self.owners):
            return
        for rank in self.owners:
            if done(self._store, rank) or rank in self._down:
                continue
            if is_out(self._store, rank):  # cut off by a partition: out of the model
                continue
            if in_model(self._store, rank, self.incarnations[rank] - 1):
                return
        self._store.set(STOP_KEY, "steps")  # (pending restarts are dropped at the next poll)

    def _ask(
        self,
        rank: int,
        cause: Crash | RandomCrashes,
        pids: list[int],
        codes: dict[int, int | None],
    ) -> None:
        """Ask ``rank`` to crash now: it kills itself at its next yield or wait (handing in
        first, as sim closes a program at its yield); one stuck in the library is killed
        after ``KILL_GRACE`` seconds (:meth:`poll`)."""
        pid = pids[rank]
        if rank in self._down or rank in self._asked or codes.get(pid) is not None:
            return
        self._causes[rank] = cause
        incarnation = self.incarnations[rank] - 1
        self._store.set(f"faults/kill/{rank}/{incarnation}", "1")
        self._asked[rank] = (time.monotonic() + KILL_GRACE, pid, incarnation)

    def _global_step(self) -> int:
        """The slowest live owner's published step."""
        steps = []
        for rank in self.owners:
            if rank in self._down:
                continue
            key = STEP_KEY.format(rank=rank)
            steps.append(
                int(bytes(self._store.get(key)).decode()) if self._store.check([key]) else 0
            )
        return min(steps, default=0)

    def _restart(self, rank: int, pids: list[int], codes: dict[int, int | None]) -> None:
        incarnation = self.incarnations[rank]
        self.incarnations[rank] += 1
        self._down.discard(rank)
        mark_restarted(self._store, rank)
        now = self.now() or 0.0
        self.events.append(Restarted(now, rank))
        if rank in self._uptimes:  # its next random crash, from this start
            self._next[rank] = now + next(self._uptimes[rank])
        pid = self._start(rank, incarnation)
        pids[rank] = pid
        codes[pid] = None
