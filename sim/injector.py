"""A fault schedule applied to a simulated run: crashes, restarts, slowed ranks and links.

Crashes happen at a global step (once the ledger reaches it; applied at the same simulated
instant, after the event that reached it), at a time, or at random (each covered rank's
uptimes drawn from the run's seed, :meth:`faults.RandomCrashes.uptimes`, from its last
start). A crashed rank comes back ``restart`` seconds later or at a global step, as a new
program with no state (``ctx.rejoined``). A run whose every owner of the global model is
down with no restart to come stops as ``failed``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import simpy

from faults import Crash, FaultSchedule, RandomCrashes
from sim.comm import Fabric
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
        #: The first fault that ended the run (a sentence), if one did.
        self.failure: str | None = None
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
        for fault in schedule.link_faults:
            factor = fault.factor if fault.kind == "link_slow" else 0.0
            self._at(fault.at, functools.partial(self._link, fault.link, factor, fault.kind))
            if fault.until is not None:
                self._at(fault.until, functools.partial(self._link, fault.link, 1.0, "link_up"))

    # -- scheduling ---------------------------------------------------------------------------
    def _at(self, at: float, action: Callable[[], None]) -> None:
        self.env.timeout(max(at - float(self.env.now), 0.0)).callbacks.append(lambda _: action())

    def _when_step(self, step: int, action: Callable[[], None]) -> None:
        self._at_step.setdefault(step, []).append(action)

    def on_step(self, step: int) -> None:
        """The ledger reached global step ``step``: what waits for it happens at this
        instant, once the event that reached it is done (a rank cannot crash mid-call)."""
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
    def _crash(self, rank: int, cause: Crash | RandomCrashes) -> None:
        if self.ledger.stopped or self.fabric.failures.is_down(rank):
            return
        process = self.processes[rank]
        if not self.runtime.crash(rank, process):
            return  # its program had ended: nothing left to crash
        self.fabric.crash(rank)
        self.ledger.record(Crashed(float(self.env.now), rank))
        if isinstance(cause, Crash) and cause.restart_step is not None:
            self.pending_restarts += 1
            step = max(cause.restart_step, self.ledger.step + 1)
            self._restart_at_step.setdefault(step, []).append(rank)
        elif cause.restart is not None:
            self.pending_restarts += 1
            self._at(float(self.env.now) + cause.restart, lambda: self._restart(rank))
        if not self.ledger.live_owners:
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

    def _slow(self, rank: int, factor: float) -> None:
        if factor == 1.0:
            self.runtime.slowdown.pop(rank, None)
        else:
            self.runtime.slowdown[rank] = factor
        self.ledger.fault("slow", rank)

    def _link(self, link: tuple[str, str], factor: float, event: str) -> None:
        self.fabric.network.set_link(*_nodes(self.fabric.network.topology, link), factor)
        self.ledger.fault(event)


def _nodes(topology: Any, link: tuple[str, str]) -> tuple[Any, Any]:
    """The topology's own node names for ``link`` (written as strings in a schedule)."""
    by_name = {str(node): node for node in topology.nodes}
    return by_name[link[0]], by_name[link[1]]


def _run_all(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        action()
