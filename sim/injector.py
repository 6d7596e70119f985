"""A fault schedule applied to a simulated run: crashes, restarts, slowed ranks and links.

Crashes happen at a global step (once the ledger reaches it; applied at the same simulated
instant, after the event that reached it), at a time, or at random (each covered rank's
uptimes drawn from the run's seed, :meth:`faults.RandomCrashes.uptimes`, from its last
start). A crashed rank comes back ``restart`` seconds later or at a global step, as a new
program with no state (``ctx.rejoined``). A run whose every owner of the global model is
down has lost its model and stops as ``failed``. With ``recovery="restart"``
(:mod:`sim.checkpoints`), a crash instead stops every rank once it is detected and starts
them all again from the last checkpoint.

A link down that cuts live ranks off (no other path) splits the quorums' membership
(:mod:`sim.partitions`): a quorum holds the primary part only; a rank cut off leaves the
global model as a crashed one does (a ``cut_off`` row), and comes back, healed, once a
quorum admits it again (``reconnect``). A primary part too small for a quorum with no
repair to come ends the run as ``failed``, naming the links; so do links down for good that
leave no live worker reaching every live server of a sharded global model (the strategies
with servers carry on without the workers cut off, which ask again until their link is back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import simpy

from faults import Crash, FaultSchedule, RandomCrashes
from sim.checkpoints import Checkpoints
from sim.comm import Fabric
from sim.partitions import Partitions
from sim.runtime import SimRuntime
from strategies.context import RoleContext
from strategies.events import Crashed, Restarted
from strategies.ledger import Ledger

__all__ = ["FaultInjector"]

#: Builds rank ``r``'s context and program anew (a restart).
Rebuild = Callable[[int], tuple[RoleContext, Any]]


class FaultInjector:
    """Applies ``schedule`` to one simulated run (see the module docstring).

    Parameters
    ----------
    schedule
        The run's checked fault schedule.
    env, fabric, runtime, ledger
        The run's clock, transport, runtime and ledger.
    processes
        Each rank's SimPy process (a restart replaces it).
    rebuild
        Makes a restarted rank's context and program.
    seed
        The run's seed (random crashes draw from it).
    """

    def __init__(
        self,
        schedule: FaultSchedule,
        env: simpy.Environment,
        fabric: Fabric,
        runtime: SimRuntime,
        ledger: Ledger,
        processes: dict[int, simpy.Process],
        rebuild: Rebuild,
        seed: int,
        on_restart: Callable[[int, RoleContext, Any], None] | None = None,
    ) -> None:
        self.schedule = schedule
        self.env, self.fabric, self.runtime, self.ledger = env, fabric, runtime, ledger
        self.processes = processes
        self.rebuild = rebuild
        self.on_restart = on_restart
        #: Checkpoints and restarts of every rank from them (``recovery="restart"``).
        self.checkpoints: Checkpoints | None = None
        #: Whether every rank is being restarted from a checkpoint (a failure then ends no
        #: program's run: they are all about to be replaced).
        self.restarting = False
        #: The first fault that ended the run (a sentence), if one did.
        self.failure: str | None = None
        #: Whether that was a partition too small for a quorum (its sentence is the advice).
        self.cut = False
        self._at_step: dict[int, list[Callable[[], None]]] = {}
        self.pending_restarts = 0
        self._restart_at_step: dict[int, list[int]] = {}
        self._uptimes: dict[int, Iterator[float]] = {}
        self._random: dict[int, RandomCrashes] = {}
        for crash in schedule.crashes:
            if crash.step is not None:
                self._when_step(crash.step, functools.partial(self._crash, crash.rank, crash))
            else:
                assert crash.at is not None
                self._at(crash.at, functools.partial(self._crash, crash.rank, crash))
        for random_crashes in schedule.random_crashes:
            ranks = random_crashes.ranks or tuple(range(fabric.world_size))
            for rank in ranks:
                self._random[rank] = random_crashes
                self._uptimes[rank] = random_crashes.uptimes(seed, rank)
                self._next_random(rank)
        for slow in schedule.slows:
            self._at(slow.at, functools.partial(self._slow, slow.rank, slow.factor))
            if slow.until is not None:
                self._at(slow.until, functools.partial(self._slow, slow.rank, 1.0))
        #: Links down as the quorums see them (None: the schedule takes no link down).
        self.partitions: Partitions | None = None
        if any(fault.kind == "link_down" for fault in schedule.link_faults):
            network = fabric.network
            self.partitions = Partitions(
                env, network.topology, dict(enumerate(network.router.hosts)), fabric.failures.detect
            )
            self._watch_partitions()
        for fault in schedule.link_faults:
            factor = fault.factor if fault.kind == "link_slow" else 0.0
            self._at(fault.at, functools.partial(self._link, fault.link, factor, fault.kind))
            if fault.until is not None:
                repair = self.partitions is not None and fault.kind == "link_down"
                if repair:
                    assert self.partitions is not None
                    self.partitions.pending_ups += 1
                self._at(
                    fault.until,
                    functools.partial(self._link, fault.link, 1.0, "link_up", repair),
                )

    # -- scheduling ---------------------------------------------------------------------------
    def _at(self, at: float, action: Callable[[], None]) -> None:
        self.env.timeout(max(at - float(self.env.now), 0.0)).callbacks.append(lambda _: action())

    def _when_step(self, step: int, action: Callable[[], None]) -> None:
        self._at_step.setdefault(step, []).append(action)

    def on_step(self, step: int) -> None:
        """The ledger reached global step ``step``: what waits for it happens at this
        instant, once the event that reached it is done (a rank cannot crash mid-call)."""
        checkpoints = self.checkpoints
        if (
            checkpoints is not None
            and not self.restarting
            and checkpoints.due(step, float(self.env.now))
        ):
            self._at(float(self.env.now), functools.partial(self._checkpoint, step))
        actions = self._at_step.pop(step, [])
        actions += [
            functools.partial(self._restart, r) for r in self._restart_at_step.pop(step, [])
        ]
        if actions:
            self._at(float(self.env.now), functools.partial(_run_all, actions))

    def _next_random(self, rank: int) -> None:
        uptime = next(self._uptimes[rank])
        self._at(float(self.env.now) + uptime, lambda: self._crash(rank, self._random[rank]))

    # -- faults -------------------------------------------------------------------------------
    def use_checkpoints(self, checkpoints: Checkpoints) -> None:
        """Recover by restarting every rank from the last checkpoint (``recovery="restart"``)."""
        self.checkpoints = checkpoints

    def _checkpoint(self, step: int) -> None:
        if self.checkpoints is not None and not self.restarting and not self.ledger.stopped:
            self.checkpoints.take(step, float(self.env.now))

    def _crash(self, rank: int, cause: Crash | RandomCrashes) -> None:
        if self.restarting and isinstance(cause, RandomCrashes) and not self.ledger.stopped:
            self._next_random(rank)  # it fails while the job restarts anyway: the next one
            return
        if self.ledger.stopped or self.fabric.failures.is_down(rank) or self.restarting:
            return
        process = self.processes[rank]
        if not self.runtime.crash(rank, process):
            return  # its program had ended: nothing left to crash
        now = float(self.env.now)
        if self.checkpoints is not None:
            # torchelastic: the job notices (detect), stops every rank, and starts them all
            # again from the last checkpoint (after the restart delay, if longer).
            self.restarting = True
            self._at(now + self.fabric.failures.detect, self._stop_all)
            delay = cause.restart if cause.restart is not None else 0.0
            self._at(
                now + max(self.fabric.failures.detect, delay),
                functools.partial(self._restart_all, rank),
            )
            self.pending_restarts += 1
            self.fabric.crash(rank)
            self.ledger.record(Crashed(now, rank))
            return
        self.fabric.crash(rank)
        self.ledger.record(Crashed(float(self.env.now), rank))
        if isinstance(cause, Crash) and cause.restart_step is not None:
            if self.ledger.combine == "concat" and rank in self.ledger.live_owners:
                # A shard's owner (a server): the global step waits for its shard, so it
                # could never reach the step the rank is to come back at.
                self.failure = (
                    f"rank {rank} holds a shard of the global model and crashed with "
                    f"restart_step={cause.restart_step}, which the global step cannot reach "
                    "while its shard is down; restart it after seconds ('restart') instead"
                )
                self.ledger.stop("failed")
                return
            self.pending_restarts += 1
            step = max(cause.restart_step, self.ledger.step + 1)
            self._restart_at_step.setdefault(step, []).append(rank)
        elif cause.restart is not None:
            self.pending_restarts += 1
            self._at(float(self.env.now) + cause.restart, lambda: self._restart(rank))
        if not self.ledger.live_owners and self.checkpoints is None:
            # Every replica of the global model is gone, and a restarted rank has no state:
            # the model is lost.
            self.failure = (
                f"rank {rank} crashed at t={float(self.env.now):.6g}s and no owner of the "
                "global model is left: its state is lost"
            )
            self.ledger.stop("failed")

    def _restart(self, rank: int) -> None:
        self.pending_restarts -= 1
        if self.ledger.stopped:
            return
        self.fabric.restart(rank)
        self.ledger.record(Restarted(float(self.env.now), rank))
        ctx, program = self.rebuild(rank)
        ctx.rejoined = True
        if self.on_restart is not None:
            self.on_restart(rank, ctx, program)
        self.processes[rank] = self.env.process(self.runtime.drive(ctx, program))
        if rank in self._random:
            self._next_random(rank)

    def _stop_all(self) -> None:
        for rank, process in self.processes.items():
            self.runtime.crash(rank, process)
        self.fabric.reset()
        self._watch_partitions()  # the new world's quorums see the same links

    def _watch_partitions(self) -> None:
        quorums = self.fabric.quorums
        quorums.partitions = self.partitions
        quorums.on_cut = self.ledger.cut
        quorums.on_stuck = self._stuck

    def _stuck(self, sentence: str) -> None:
        """No quorum can form any more: the links cut off too many ranks for good."""
        if self.pending_restarts or self.failure is not None or self.ledger.stopped:
            return  # a restarted rank may yet make one
        self.failure = sentence
        self.cut = True
        self.ledger.stop("failed")

    def _restart_all(self, crashed: int) -> None:
        self.pending_restarts -= 1
        self.restarting = False
        if self.ledger.stopped:
            return
        assert self.checkpoints is not None
        self.ledger.record(Restarted(float(self.env.now), crashed))
        contexts, programs = {}, {}
        for rank in sorted(self.processes):
            contexts[rank], programs[rank] = self.rebuild(rank)
        self.checkpoints.restore(contexts)
        for rank in sorted(self.processes):
            if self.on_restart is not None:
                self.on_restart(rank, contexts[rank], programs[rank])
            self.processes[rank] = self.env.process(
                self.runtime.drive(contexts[rank], programs[rank])
            )
        if crashed in self._random:
            self._next_random(crashed)

    def _slow(self, rank: int, factor: float) -> None:
        if factor == 1.0:
            self.runtime.slowdown.pop(rank, None)
        else:
            self.runtime.slowdown[rank] = factor
        self.ledger.fault("slow", rank)

    def _link(self, link: tuple[str, str], factor: float, event: str, repair: bool = False) -> None:
        edge = _nodes(self.fabric.network.topology, link)
        self.fabric.network.set_link(*edge, factor)
        self.ledger.fault(event)
        partitions = self.partitions
        if partitions is not None:
            partitions.link(edge, factor)
            if repair:
                partitions.pending_ups -= 1
            if factor > 0:
                self.fabric.quorums.recheck()
                self._shards_reachable()  # the last repair to come: a cut left is for good
            elif factor == 0:  # the quorums learn of it with the network's detection
                self._at(float(self.env.now) + partitions.detect, self.fabric.quorums.recheck)
                self._at(float(self.env.now) + partitions.detect, self._shards_reachable)

    def _shards_reachable(self) -> None:
        """Servers (the owners of a sharded global model) that no worker can reach all of,
        for good, end the run: their shards can never step again, and the workers that carry
        on without an unreachable server would ask for ever. Every live server must share a
        connected part with at least one live worker."""
        partitions = self.partitions
        if partitions is None or partitions.pending_ups or self.ledger.combine != "concat":
            return
        failures = self.fabric.failures
        live = [r for r in range(self.fabric.world_size) if not failures.known_down(r)]
        parts = partitions.parts(live)
        owners = set(self.ledger.live_owners)
        if parts is None or not owners:
            return
        homes = [part for part in parts if part & owners]
        if len(homes) == 1 and homes[0] - owners:
            return
        links = ", ".join(repr(tuple(e)) for e in partitions.cut_by())
        several = "s" if "), (" in links else ""
        split = ", ".join(str(sorted(part)) for part in parts)
        self._stuck(
            f"link{several} {links} down for good split the ranks into {split}, and no worker "
            f"reaches every server ({', '.join(map(str, sorted(owners)))}): a shard of the "
            "global model can no longer step; give the link_down an 'until', or a topology "
            "with another path (fat_tree, torus)"
        )


def _nodes(topology: Any, link: tuple[str, str]) -> tuple[Any, Any]:
    """The topology's own node names for ``link`` (written as strings in a schedule)."""
    by_name = {str(node): node for node in topology.nodes}
    return by_name[link[0]], by_name[link[1]]


def _run_all(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        action()
