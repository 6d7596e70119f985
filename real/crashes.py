"""A fault schedule on the real backend: which faults it applies, and the crash bookkeeping.

``real.run(..., faults=...)`` takes the schedule ``sim.run`` takes (:mod:`faults`), checked
against the run's ranks; a local run has no links, so ``link_down``/``link_slow`` are refused
with one line. A transient straggler (``slow``) is :mod:`real.slowdowns`; ``recovery="restart"``
(every rank from a checkpoint) is :mod:`real.checkpoints` and :mod:`real.restarts`.

A crash is a rank process killed with ``SIGKILL``:

* at a step (``"step": k``): the rank kills itself at its first ``yield`` after its own
  optimizer step reached ``k`` (for the synchronous strategies, the global step), *after*
  the operation it yields was started, as ``sim`` crashes a rank once every rank resumed at
  that instant (a quorum strategy's rank has asked for the next quorum, and is in it);
* at a time (``"at": seconds``, or random uptimes from an ``mtbf``, drawn from the run's
  seed as ``sim`` draws them, as wall seconds): the launcher asks it (a store key its stop
  watcher reads), and it dies the same way at its next ``yield`` or wait; one stuck in the
  library is killed by the launcher (:mod:`real.restarts`).

Before it dies, the rank (or the launcher) marks it crashed on the run's store
(:func:`mark_crashed`), so that the launcher does not take the death for a failure of the run,
records it for the ledger (``Crashed``), and survivors name it at once in the
:class:`~strategies.PeerFailure` their failed operation raises (:func:`down`).

A crash with ``restart_step`` (or ``restart`` seconds) comes back as a new process for the
same rank id, incarnation 1, 2, ... (:func:`mark_restarted`): it joins no world process
group (the others will not), only the quorums, and its sends and receives go over a gloo
group per pair of ranks and incarnations (:mod:`real.transport.links`). With
``recovery="restart"`` a crash instead restarts every rank from the last checkpoint
(:mod:`real.checkpoints`): the others are asked to halt (:meth:`RankFaults.halts_on`), and
all come back in a new world process group.

Examples
--------
>>> schedule = check_schedule([{"kind": "crash", "rank": 1, "step": 3}], 2, 10)
>>> schedule.crashes[0].rank, crash_step(schedule, 1, 0), crash_step(schedule, 1, 1)
(1, 3, None)
>>> check_schedule([{"kind": "link_down", "link": ["s0", "1"], "at": 1.0}], 2, 10)
Traceback (most recent call last):
...
faults.errors.FaultError: faults[0]: link_down needs a backend with links (sim, or real --testbed)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from faults import FaultError, FaultSchedule
from real import rendezvous
from real.peer_failure import is_peer_failure
from strategies.comm import CommError, PeerFailure

__all__ = [
    "RankFaults",
    "check_rejoinable",
    "check_schedule",
    "crash_count",
    "crash_step",
    "down",
    "mark_crashed",
    "mark_restarted",
    "restart_step",
]

_CRASHES, _RESTARTS = "faults/crashes/{rank}", "faults/restarts/{rank}"
_AT = "faults/crashed/{rank}/{incarnation}"
_DONE, _REJOINED = "faults/done/{rank}", "faults/rejoined/{rank}/{incarnation}"
_READY = "faults/ready/{rank}/{incarnation}"
#: Whether a rank's crash number ``index`` (one with a ``restart_step``) is back before its
#: peers would have detected it in ``sim`` ("early") or after ("late"): :meth:`RankFaults.race`.
_RACE = "faults/race/{rank}/{index}"
_LINKS = ("link_down", "link_slow")
_EVERY = "faults/checkpoint_every"
#: Steps a run with ``recovery="restart"`` and no ``checkpoint_every`` takes before its ranks
#: agree on Young/Daly's interval in steps (rank 0 measures its seconds per step over them).
PROBE_STEPS = 3


def check_schedule(value: Any, nproc: int, steps: int) -> FaultSchedule:
    """``value`` as a :class:`faults.FaultSchedule` for a local real run of ``nproc`` ranks
    (no links), or a one-line :class:`faults.FaultError` naming the event the real backend
    does not apply."""
    schedule = FaultSchedule.parse(value, world_size=nproc, links=None, steps=steps)
    return schedule


def check_rejoinable(
    strategy: Any, schedule: FaultSchedule, world_size: int, backend: str = "gloo"
) -> None:
    """A one-line :class:`faults.FaultError` for a restart the real backend cannot make.

    A restarted rank is a new process that joins no world process group (the survivors
    will not); its sends and receives go over a gloo group per pair of ranks and
    incarnations (:mod:`real.transport.links`), so a parameter server's restarted worker
    works, and so does a server that restores its shard from its checkpoint. Refused, as
    ``sim`` refuses them: a server's restart without ``checkpoint_every``, or at a
    ``restart_step`` (the global step cannot reach it while the shard is down); and any
    restart of a strategy with servers on NCCL (a pair's group is gloo's, on the CPU).
    ``recovery = "restart"`` is :func:`real.checkpoints.check_restartable`'s.

    >>> from strategies import registry
    >>> ps = registry.get("parameter_server")
    >>> worker = [{"kind": "crash", "rank": 2, "step": 3, "restart_step": 5}]
    >>> check_rejoinable(ps, check_schedule(worker, 3, 9), 3)
    >>> at_step = [{"kind": "crash", "rank": 0, "step": 3, "restart_step": 5}]
    >>> checkpointed = registry.get("parameter_server", checkpoint_every=2)
    >>> check_rejoinable(checkpointed, check_schedule(at_step, 3, 9), 3)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults[0]: server rank 0 holds a shard of the global model and comes back at restart_step=5, which the global step cannot reach while its shard is down (sim refuses it too); restart it after seconds ('restart')
    >>> back = [{"kind": "crash", "rank": 0, "step": 3, "restart": 1.0}]
    >>> check_rejoinable(ps, check_schedule(back, 3, 9), 3)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults[0]: parameter_server's server rank 0 comes back with nothing to restore its shard from; give the strategy checkpoint_every=<steps>, drop the restart (the rank stays down), or restart only workers
    """
    servers = strategy.servers(world_size)
    if schedule.recovery == "restart" or not servers:
        return
    for index, event in enumerate(schedule.events):
        if not getattr(event, "restarts", False):
            continue
        rank = getattr(event, "rank", None)
        ranks = getattr(event, "ranks", None)
        covered = [rank] if rank is not None else list(ranks or range(world_size))
        hit = [r for r in covered if r in servers]
        if hit and getattr(strategy, "checkpoint_every", None) is None:
            raise FaultError(
                f"faults[{index}]",
                f"{strategy.name}'s server rank {hit[0]} comes back with nothing to restore "
                "its shard from; give the strategy checkpoint_every=<steps>, drop the "
                "restart (the rank stays down), or restart only workers",
            )
        back_at = getattr(event, "restart_step", None)
        if hit and back_at is not None:
            raise FaultError(
                f"faults[{index}]",
                f"server rank {hit[0]} holds a shard of the global model and comes back at "
                f"restart_step={back_at}, which the global step cannot reach while "
                "its shard is down (sim refuses it too); restart it after seconds ('restart')",
            )
        if backend == "nccl":
            raise FaultError(
                f"faults[{index}]",
                f"a restarted rank of {strategy.name} sends over gloo groups of two on the "
                "CPU, not NCCL; run it with backend='gloo', or drop the restart",
            )


def crash_step(schedule: FaultSchedule, rank: int, incarnation: int) -> int | None:
    """The step at which incarnation ``incarnation`` of ``rank`` kills itself (its
    ``incarnation``-th step-scheduled crash), or None."""
    steps = sorted(c.step for c in schedule.crashes if c.rank == rank and c.step is not None)
    return steps[incarnation] if incarnation < len(steps) else None


def restart_step(schedule: FaultSchedule, rank: int, incarnation: int) -> int | None:
    """The global step at which ``rank``'s crash number ``incarnation`` (a step crash) is
    restarted (``restart_step``), or None."""
    crashes = sorted(
        (c for c in schedule.crashes if c.rank == rank and c.step is not None),
        key=lambda c: c.step or 0,
    )
    return crashes[incarnation].restart_step if incarnation < len(crashes) else None


def mark_crashed(store: Any, rank: int, incarnation: int, at: float) -> None:
    """Say on the run's store that ``rank`` (this incarnation) is killed at ``at`` (seconds
    on the run's clock), before it is."""
    store.set(_AT.format(rank=rank, incarnation=incarnation), repr(float(at)))
    store.add(_CRASHES.format(rank=rank), 1)


def crashed_at(store: Any, rank: int, incarnation: int) -> float | None:
    """When incarnation ``incarnation`` of ``rank`` was killed by the schedule, or None: it
    was not (a death the schedule did not ask for is the run's failure)."""
    key = _AT.format(rank=rank, incarnation=incarnation)
    return float(bytes(store.get(key)).decode()) if store.check([key]) else None


def mark_restarted(store: Any, rank: int) -> None:
    """``rank`` is back, as a new process."""
    store.add(_RESTARTS.format(rank=rank), 1)


def in_model(store: Any, rank: int, incarnation: int) -> bool:
    """Whether ``rank``'s process ``incarnation`` (not killed) owns its share of the
    global model: the first always, a restarted one once healed (as the ledger counts)."""
    return incarnation == 0 or bool(
        store.check([_REJOINED.format(rank=rank, incarnation=incarnation)])
    )


def done(store: Any, rank: int) -> bool:
    """Whether ``rank`` has applied the run's ``steps`` (an owner)."""
    return bool(store.check([_DONE.format(rank=rank)]))


def down(store: Any, ranks: Any) -> tuple[int, ...]:
    """The ranks of ``ranks`` that the schedule killed and that are not back."""
    return tuple(
        r
        for r in ranks
        if int(store.add(_CRASHES.format(rank=r), 0)) > int(store.add(_RESTARTS.format(rank=r), 0))
    )


def crash_count(store: Any, rank: int) -> int:
    """How many times the schedule killed ``rank`` so far."""
    return int(store.add(_CRASHES.format(rank=rank), 0))


class RankFaults:
    """One rank process's side of the schedule: when it kills itself, who of its peers is
    down (named at once in a :class:`~strategies.PeerFailure`), whom a quorum waits for (a
    rank due back at a step), and its :class:`real.membership.Membership` for quorums.

    It has store clients of its own (``connect()``): the transport asks it from the library's
    completion threads and from the quorum thread."""

    def __init__(
        self,
        schedule: FaultSchedule,
        rank: int,
        world_size: int,
        incarnation: int,
        owners: list[int],
        connect: Any,
    ) -> None:
        self.schedule, self.rank, self.world_size = schedule, rank, world_size
        self.incarnation, self.owners = incarnation, owners
        self.detect = float(schedule.detect)
        #: The longest a quorum waits for its members (the run's ``timeout``).
        self.timeout = 300.0
        self._connect = connect
        self._store = connect()
        self._lock = threading.Lock()
        # Its next step crash: one per crash so far (a restarted process, or every rank
        # restarted from a checkpoint, goes on with the rank's next one).
        self._crash_step = crash_step(schedule, rank, crash_count(self._store, rank))
        self._membership: Any = None
        #: Ranks owning no share of the model due back at each step: (rank, crash index).
        self._due_back: dict[int, list[tuple[int, int]]] = {}
        for r in range(world_size):
            if r in owners or schedule.recovery == "restart":  # (there every rank restarts)
                continue
            ordered = sorted(
                (c for c in schedule.crashes if c.rank == r and c.step is not None),
                key=lambda c: c.step or 0,
            )
            for index, c in enumerate(ordered):
                if c.restart_step is not None:
                    self._due_back.setdefault(c.restart_step, []).append((r, index))
        self._every: int | None = None  # the checkpoint interval in steps, once known
        #: Where the launcher asks this process to crash (a crash at a time), and whether
        #: it has (set by the rank's stop watcher, which reads the store).
        self.kill_key = f"faults/kill/{rank}/{incarnation}"
        self.requested = threading.Event()
        #: What the launcher asked: a crash, or to halt (a peer crashed and every rank is
        #: restarted from the last checkpoint, ``recovery="restart"``).
        self.halting = False
        #: Whether a crash at a step waits for every live owner to reach it, so that it is
        #: one at the global step (``recovery="restart"``: the checkpoint before it and the
        #: steps lost are then the global step's, as in ``sim``).
        self.lines_up = schedule.recovery == "restart"
        #: This rank's step (its last published one) and the handle its program waits on
        #: now (set by :class:`real.runtime.StopSignal`): when it is blocked, and at which step.
        self.step = 0
        self.waiting: Any = None
        #: Under torchrun (:mod:`real.elastic`): a crash asks every peer to halt itself (no
        #: launcher of commsim's does), and a halt leaves with ``halt_code``, a failure.
        self.elastic = False
        self.halt_code = 0
        #: Called as this process leaves by the schedule's crash or a halt (under torchrun,
        #: rank 0 writes the run so far: no launcher of commsim's outlives it).
        self.before_exit: Callable[[], None] | None = None
        #: A testbed's links down as this rank sees them (:mod:`real.partitions`), where
        #: the schedule takes one down; None otherwise.
        self.partitions: Any = None
        self._parts_lock = threading.Lock()

    @classmethod
    def of(
        cls, options: Any, setup: Any, rank: int, secret: Any, placement: Any
    ) -> RankFaults | None:
        """The rank's faults from its options (None for a run without a schedule; see
        :meth:`without_faults` for its quorums)."""
        if not options.faults:
            return None
        return cls._made(options.faults, options, setup, rank, secret, placement)

    @classmethod
    def without_faults(
        cls, options: Any, setup: Any, rank: int, secret: Any, placement: Any
    ) -> RankFaults:
        """The quorums of a run without a fault schedule (an empty one: nobody is killed),
        for a strategy that asks for them (``fault_tolerance="quorum"``): made when the
        program first asks, so that a run that never does has no membership, no heartbeat
        and no store client more than before."""
        return cls._made([], options, setup, rank, secret, placement)

    @classmethod
    def _made(
        cls, events: Any, options: Any, setup: Any, rank: int, secret: Any, placement: Any
    ) -> RankFaults:
        world = setup.world_size
        # A testbed's link faults are its launcher's to make (real.testbed.links), not a rank's.
        record = dict(events) if isinstance(events, dict) else {"events": list(events)}
        downs = [e for e in record.get("events", []) if e["kind"] == "link_down"]
        record["events"] = [e for e in record.get("events", []) if e["kind"] not in _LINKS]
        schedule = FaultSchedule.parse(record, world_size=world, links=None, steps=setup.steps)
        owners, _ = setup.strategy.owners(world)
        if setup.strategy.global_model == "primary":  # as the ledger of a run with faults
            owners = setup.strategy.replicas(world)
        addr, port = placement.master_addr, placement.master_port

        def connect() -> Any:
            return rendezvous.client(addr, port, options.timeout, secret)

        faults = cls(schedule, rank, world, options.incarnation, list(owners), connect)
        faults.timeout = float(options.timeout)
        links, hosts = getattr(options, "links", None), getattr(options, "hosts", None)
        if downs and links and hosts:
            from real.partitions import Partitions

            store = connect()
            start: list[float] = []

            def clock() -> float:  # the run's clock, as the link agent's
                if not start:
                    start.append(float(bytes(store.get("start")).decode()))
                return time.time() - start[0]

            repairs = sum(e.get("until") is not None for e in downs)
            faults.partitions = Partitions(store, links, hosts, faults.detect, repairs, clock)
        if getattr(setup.strategy, "fault_tolerance", None) == "quorum":
            # A quorum strategy's owners are its workers, which step without the crashing
            # rank: waiting for them cannot deadlock, and makes the crash one at the global
            # step, as sim's (else its row could say the step before, now and then).
            faults.lines_up = True
        return faults

    # -- this rank's crash ------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether this process is to be killed now, its own step being ``step`` (or the
        launcher asked: a crash at a time). A rank that is not an owner of the global model
        is killed once the global step (the live owners' slowest) reaches its crash's."""
        if self.requested.is_set():
            return True
        if self._crash_step is None:
            return False
        if self.rank in self.owners:
            return step >= self._crash_step
        # A rank that owns no share of the global model (a parameter server's worker) has
        # no steps of its own: its crash at step k is at the global step k, as sim's.
        return self._global_step(without=-1) >= self._crash_step

    def crash(self, at: float) -> None:
        """Mark this rank crashed at ``at`` and die by ``SIGKILL``, as the schedule says; or,
        asked to halt, leave without a word (its events handed in: :meth:`halt`)."""
        if self.halting:
            self.halt()
        with self._lock:
            mark_crashed(self._store, self.rank, self.incarnation, at)
            if self.elastic:  # torchrun restarts every worker: the peers leave first
                for peer in range(self.world_size):
                    if peer != self.rank:
                        self._store.set(f"faults/kill/{peer}/{self.incarnation}", "halt")
        self._leaving()
        os.kill(os.getpid(), signal.SIGKILL)

    def halts_on(self, error: BaseException) -> bool:
        """Whether ``error`` is this rank's end as a peer's crash ends it when every rank is
        restarted from a checkpoint: the launcher asked it to halt, or an operation failed
        while a rank the schedule killed is down."""
        if self.schedule.recovery != "restart":
            return False
        if self.halting:
            return True
        # Under torchrun anything that ends a rank while a peer is down (the agent's SIGTERM
        # too) is that crash's doing.
        return (isinstance(error, CommError) or self.elastic) and self.restarting()

    def restarting(self) -> bool:
        """Whether every rank is being restarted from a checkpoint: asked to halt, or a rank
        the schedule killed is down (``recovery="restart"``)."""
        if self.schedule.recovery != "restart":
            return False
        return self.halting or bool(self.down(range(self.world_size)))

    def halt(self) -> None:
        """Leave at once (the caller handed in its events): every rank is about to be
        restarted from the last checkpoint, and this process's state is not needed."""
        self._leaving()
        os._exit(self.halt_code)

    def _leaving(self) -> None:
        if self.before_exit is not None:
            try:
                self.before_exit()
            except BaseException:  # (what it writes is a courtesy: leaving comes first)
                pass

    def checkpoint_every(
        self,
        step: int,
        measure: Callable[[], tuple[float, int]],
        stopped: Callable[[], bool],
    ) -> int | None:
        """Every how many steps the ranks checkpoint (``recovery="restart"``): the schedule's
        ``checkpoint_every``, or Young/Daly's interval ``sqrt(2 x write time x MTBF)`` (the
        schedule's storage model, as in ``sim``) in steps, which every rank must agree on:
        rank 0 works it out at step :data:`PROBE_STEPS` from ``measure()`` (its seconds per
        step, and its checkpoint's bytes) and says it on the store, where the others wait
        for it at that step (a restarted process reads it). None: not known yet (or the run
        stopped, or this process is asked to go, while waiting)."""
        if self.schedule.checkpoint_every is not None:
            return self.schedule.checkpoint_every
        if self._every is not None:
            return self._every
        deadline = time.monotonic() + self.timeout
        while True:
            with self._lock:
                if self._store.check([_EVERY]):
                    self._every = int(bytes(self._store.get(_EVERY)).decode())
                    return self._every
                if step < PROBE_STEPS:
                    return None
                if self.rank == 0:
                    per_step, nbytes = measure()
                    seconds = self.schedule.checkpoint_interval(nbytes, self.world_size)
                    assert seconds is not None  # (the schedule has an MTBF without it)
                    self._every = max(1, round(seconds / max(per_step, 1e-9)))
                    self._store.set(_EVERY, str(self._every))
                    return self._every
            if stopped() or self.requested.is_set() or time.monotonic() > deadline:
                return None
            time.sleep(0.005)

    def done(self) -> None:
        """This owner has applied the run's ``steps``."""
        with self._lock:
            self._store.set(_DONE.format(rank=self.rank), "1")

    def rejoined(self) -> None:
        """This restarted process was healed: it owns its share of the model again."""
        with self._lock:
            self._store.set(_REJOINED.format(rank=self.rank, incarnation=self.incarnation), "1")

    # -- peers --------------------------------------------------------------------------------
    def down(self, ranks: Any) -> tuple[int, ...]:
        """The ranks of ``ranks`` the schedule killed and that are not back."""
        with self._lock:
            return down(self._store, ranks)

    def peer_failure(self, what: str, error: BaseException, ranks: Any) -> PeerFailure | None:
        """``error`` (raised by an operation with ``ranks``) as the :class:`PeerFailure` it
        is when a peer was killed, naming it and when; None when it is not one."""
        if not is_peer_failure(error):
            return None
        dead = self.down(r for r in ranks if r != self.rank)
        if not dead:
            return None
        return self._crashed(what, dead)

    def _crashed(self, what: str, dead: tuple[int, ...]) -> PeerFailure:
        """The :class:`PeerFailure` of ``what`` naming the killed ``dead`` and when each
        one's last process was killed."""
        with self._lock:
            said = []
            for r in dead:
                at = crashed_at(self._store, r, crash_count(self._store, r) - 1)
                said.append(f"rank {r} crashed" + ("" if at is None else f" at t={at:.6g}s"))
        return PeerFailure(f"{what}: {', '.join(said)}", dead)

    def hold_for_restarts(self, step: int, stopped: Callable[[], bool]) -> None:
        """An owner at its step ``step``: wait while a rank that owns no share of the model
        (a parameter server's worker, an actor) and is due back at ``restart_step ==
        step`` is not running yet. In ``sim`` such a rank is back at the instant the global
        step reaches it; here its new process takes a while to start, during which the
        owners would run on without it (a parameter server's worker could come back only
        after the run ended). A run without such a restart makes no store call here."""
        due = self._due_back.get(step)
        if not due or self.rank not in self.owners:
            return
        deadline = time.monotonic() + self.timeout
        for rank, index in due:
            while not stopped() and time.monotonic() < deadline:
                with self._lock:
                    if crash_count(self._store, rank) <= index:
                        break  # not crashed yet (a rank that dies later is restarted later)
                    if self._store.check([_READY.format(rank=rank, incarnation=index + 1)]):
                        break
                time.sleep(0.005)

    def ready(self) -> None:
        """This restarted process is about to run its program (:meth:`hold_for_restarts`)."""
        with self._lock:
            self._store.set(_READY.format(rank=self.rank, incarnation=self.incarnation), "1")

    def incarnation_of(self, rank: int) -> int:
        """``rank``'s latest process: how many times the launcher restarted it (0: never)."""
        with self._lock:
            return int(self._store.add(_RESTARTS.format(rank=rank), 0))

    def was_killed(self, rank: int, incarnation: int) -> bool:
        """Whether the schedule killed process ``incarnation`` of ``rank``."""
        with self._lock:
            return crashed_at(self._store, rank, incarnation) is not None

    def killed(self, what: str, rank: int) -> PeerFailure:
        """The :class:`~strategies.PeerFailure` of ``what``, an operation with ``rank``,
        which the schedule killed: naming it and when its last process was."""
        return self._crashed(what, (rank,))

    def links(self) -> Any:
        """This process's point-to-point links to restarted ranks
        (:class:`real.transport.links.Links`), or None where the schedule restarts no rank
        alone (none comes back, or every rank restarts from a checkpoint): the world group
        then carries every message, as in a run without faults."""
        if self.schedule.recovery == "restart":
            return None
        back = {r for r in range(self.world_size) if self.schedule.has_restart(r)}
        if not back and self.incarnation == 0:
            return None
        from real.transport.links import Links

        return Links(self.rank, self.incarnation, back, self, self.timeout)

    @property
    def connect(self) -> Any:
        """Makes a new client of the run's store (a link's group rendezvous blocks its own)."""
        return self._connect

    # -- partitions (a testbed's links down: real.partitions) -----------------------------
    def primary(self, live: Any) -> frozenset[int] | None:
        """The live ranks ``live`` in the primary part (None: nobody is cut off)."""
        with self._parts_lock:
            return self.partitions.primary(live)

    def stuck(self, left: frozenset[int], live: Any, min_size: int) -> str | None:
        """The run's one-line end when the primary part ``left`` cannot hold a quorum."""
        with self._parts_lock:
            return self.partitions.stuck(left, live, min_size)

    def mark(self, quorum: Any) -> None:
        """Record who quorum ``quorum`` cut off or admitted again (once per quorum)."""
        with self._parts_lock:
            self.partitions.mark(quorum.space, quorum.id, quorum.cut, quorum.reconnected)

    def cut_known(self, rank: int, members: Any) -> tuple[int, ...]:
        """The ranks of ``members`` that links down cut off from ``rank``, once the ranks
        know of it (``detect`` after the first of them went down); ``()`` before."""
        with self._parts_lock:
            cut, known = self.partitions.separated(rank, list(members))
            return cut if cut and known <= self.partitions.clock() else ()

    def stuck_run(self, line: str) -> None:
        """End the run with ``line`` (no quorum can ever form), as ``sim`` ends it."""
        from real.runtime import STOP_KEY

        with self._parts_lock:
            at = self.partitions.clock()
        with self._lock:
            rendezvous.report_silence(
                self._store, f"the run failed at t={at:.6g}s after {self.step} steps: {line}"
            )
            self._store.set(STOP_KEY, "failed")

    def cut_failure(self, what: str, error: BaseException, ranks: Any) -> PeerFailure | None:
        """``error`` (an operation with ``ranks`` failed) as the :class:`PeerFailure` of a
        partition, naming the ranks the links down cut off from this one, raised when the
        ranks know of the cut (``detect`` after the link went down, as ``sim`` fails it:
        gloo's own timeout, the quorum group's ``detect`` from the operation's start, may
        come earlier); None when it is not one."""
        if self.partitions is None or not is_peer_failure(error):
            return None
        with self._parts_lock:
            cut, known = self.partitions.separated(self.rank, list(ranks))
            now = self.partitions.clock()
            links = self.partitions.down()
            said = ", ".join(f"link {edge} down at t={since:.6g}s" for edge, since in links)
        if not cut:
            return None
        if known > now:
            time.sleep(known - now)
        who = ", ".join(map(str, cut))
        return PeerFailure(f"{what}: rank(s) {who} cut off ({said})", cut)

    def expected(self, step: int, ranks: Any) -> tuple[int, ...]:
        """Ranks of ``ranks`` that a quorum asked at ``step`` waits for: those restarted at
        global step ``step - 1`` (``restart_step``) after their crash was detected. In
        ``sim`` such a rank restarted at step ``m`` misses the quorum the others asked for at
        that instant (it was known down when they asked) and is in the next one, asked after
        step ``m + 1``; so it is here (:meth:`rejoin_when`)."""
        out = []
        for r in ranks:
            crashes = sorted(
                (c for c in self.schedule.crashes if c.rank == r and c.step is not None),
                key=lambda c: c.step or 0,
            )
            for index, crash in enumerate(crashes):
                if crash.restart_step is not None and step == crash.restart_step + 1:
                    with self._lock:
                        if crash_count(self._store, r) > index:
                            out.append(r)
        return tuple(out)

    def live(
        self, step: int, ranks: Any, waiting: Callable[[], bool] | None = None
    ) -> tuple[int, ...]:
        """The ranks of ``ranks`` a quorum asked at ``step`` waits for: every one not down,
        less those restarted at a ``restart_step`` the asking step has not passed (they ask
        their first quorum after it, :meth:`rejoin_when`), plus those down whose restart
        comes before their crash is detected (:meth:`race`: they ask as soon as they are
        back, and are waited for until then). Every death of a run with a schedule is said
        on the store before it happens, so no heartbeat is needed here: a rank that only
        started beats late, and would be left out. ``waiting()``: whether this rank's
        program waits on the quorum now (it is then blocked on the ranks it waits for)."""
        dead = set(self.down(ranks))
        out = []
        for r in ranks:
            with self._lock:
                crashes = crash_count(self._store, r) if r != self.rank else 0
            back = restart_step(self.schedule, r, crashes - 1) if crashes else None
            if back is not None:
                race = self.race(r, crashes - 1, back)
                if race is None and waiting is not None and waiting() and self.step < back:
                    # Blocked on it before its restart step: sim would detect the crash
                    # while this rank waits, before the global step reaches the restart.
                    race = self._decide(r, crashes - 1, "late")
                if race != "late":  # back before the crash is detected, or not known yet
                    out.append(r)
                    continue
            if r in dead or (back is not None and step <= back):
                continue
            out.append(r)
        return tuple(out)

    def race(self, rank: int, index: int, back: int) -> str | None:
        """Whether ``rank``'s crash number ``index``, restarted at global step ``back``,
        comes back before its peers detect it: ``"early"`` or ``"late"``, or None while
        not known yet. Every live peer agrees (the first to know writes it on the store).

        ``sim`` detects a crash ``detect`` seconds after it; a schedule for comparing the
        backends has ``detect`` far above a step, so there its peers detect it once they
        can go on no further: when one of them waits, at a step before ``back``, on an
        operation with the dead rank (:meth:`blocked`) or on a quorum that waits for it
        (:meth:`live`). Then the global step stops below ``back``, and the rank is back
        only after the detection ("late": the quorums formed meanwhile leave it out, and it
        asks after ``back + 1``, as in ``sim``). If every live owner reaches ``back`` first,
        the rank is back before its crash is detected ("early"): the quorums asked since
        the crash wait for it, and it joins the first of them, as a restarted rank does in
        ``sim`` (Streaming DiLoCo asks each round's quorum one round ahead: a rank back
        before the next round joins it)."""
        key = _RACE.format(rank=rank, index=index)
        with self._lock:
            if self._store.check([key]):
                return bytes(self._store.get(key)).decode()
        if self._global_step(without=rank) >= back:
            return self._decide(rank, index, "early")
        return None

    def met(self, error: BaseException | None, step: int) -> None:
        """This rank's program meets ``error`` at its ``yield``, at its step ``step``: a
        :class:`~strategies.PeerFailure` is its wait on the dead (:meth:`blocked`)."""
        if isinstance(error, PeerFailure):
            self.blocked(error.ranks, step)

    def blocked(self, ranks: Any, step: int) -> None:
        """This rank's program met, at its step ``step``, a failure of an operation with
        ``ranks`` (a :class:`~strategies.PeerFailure` at its ``yield``): in ``sim`` it waits
        there until the crash is detected. Before a crashed rank's restart step, that
        settles its :meth:`race` as "late"."""
        for r in ranks:
            if r == self.rank:
                continue
            with self._lock:
                crashes = crash_count(self._store, r)
            back = restart_step(self.schedule, r, crashes - 1) if crashes else None
            if back is not None and step < back:
                self._decide(r, crashes - 1, "late")

    def _decide(self, rank: int, index: int, race: str) -> str:
        with self._lock:
            key = _RACE.format(rank=rank, index=index)
            return bytes(self._store.compare_set(key, "", race)).decode()

    def _global_step(self, without: int) -> int:
        """The slowest live owner's published step, ``without`` that rank (as the
        launcher's, which restarts a rank once it reaches the rank's ``restart_step``)."""
        from real.runtime import STEP_KEY

        with self._lock:
            dead = set(down(self._store, self.owners))
            steps = []
            for r in self.owners:
                if r == without or r in dead:
                    continue
                key = STEP_KEY.format(rank=r)
                value = self._store.get(key) if self._store.check([key]) else b"0"
                steps.append(int(bytes(value).decode()))
        return min(steps, default=0)

    def rejoin_when(self) -> int | None:
        """For a restarted process: its ``restart_step`` (its first quorum waits for
        :meth:`wait_to_rejoin`); None otherwise."""
        if self.incarnation == 0:
            return None
        return restart_step(self.schedule, self.rank, self.incarnation - 1)

    def wait_to_rejoin(self, back: int) -> None:
        """Wait until this restarted process may ask its first quorum: at once if it is
        back before its crash was detected (:meth:`race`: the quorums asked since wait for
        it), else once every live owner has published ``back + 1`` (as in ``sim``, where it
        misses the quorum the others ask at the instant it is restarted)."""
        index = self.incarnation - 1
        while True:
            race = self.race(self.rank, index, back)
            if race == "early":
                return
            if race == "late":
                self.wait_for_step(back + 1, self.owners)
                return
            time.sleep(0.005)

    def wait_for_step(self, step: int, owners: Any) -> None:
        """Wait until every live owner but this rank has published ``step`` or more."""
        from real.runtime import STEP_KEY

        while True:
            with self._lock:
                dead = set(down(self._store, owners))
                steps = []
                for r in owners:
                    if r == self.rank or r in dead:
                        continue
                    key = STEP_KEY.format(rank=r)
                    value = self._store.get(key) if self._store.check([key]) else b"0"
                    steps.append(int(bytes(value).decode()))
            if min(steps, default=step) >= step:
                return
            time.sleep(0.005)

    @property
    def membership(self) -> Any:
        """This rank's :class:`real.membership.Membership` (started on first use)."""
        if self._membership is None:
            from real.membership import Membership

            self._membership = Membership(
                self._connect, self.rank, self.world_size, interval=min(0.5, self.detect / 4)
            )
        return self._membership

    def close(self) -> None:
        if self._membership is not None:
            self._membership.close()
