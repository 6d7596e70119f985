"""The simulated runtime: it owns the clock's bookkeeping, counters, stop conditions, metrics.

Contexts call back into :class:`SimRuntime` (the ``strategies.Runtime`` protocol) when a
gradient is computed or an update applied; :meth:`SimRuntime.drive` runs a role program as a
SimPy process and splits each rank's time into compute, communication and idle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import simpy
import torch

from sim.compute import ComputeModel
from sim.ops import Op, busy_time
from strategies.context import RoleContext, WorkerContext

__all__ = ["SimRuntime"]


class SimRuntime:
    """Bookkeeping of one simulated run.

    Parameters
    ----------
    env, network
        The SimPy environment and the network engine (for byte counters).
    compute
        The resolved compute model.
    primary
        The rank whose updates are global model versions.
    steps, target_loss
        Stop conditions (``sim.run`` handles the time budget by how far it steps the clock).
    eval_every
        Evaluate the global model every this many global updates.
    evaluate
        Returns ``{"loss": ..., "accuracy": ...}`` of the current global model.
    on_eval
        Called after each evaluation with the metrics rows so far (incremental saving, progress).
    """

    def __init__(
        self,
        env: simpy.Environment,
        network: Any,
        compute: ComputeModel,
        primary: int,
        steps: int,
        eval_every: int,
        evaluate: Callable[[], dict[str, float]],
        accumulate: int = 1,
        target_loss: float | None = None,
        on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
        on_update: Callable[[int], None] | None = None,
    ) -> None:
        self.env = env
        self.network = network
        self.compute = compute
        self.primary = primary
        self._owner_versions: dict[int, int] = {primary: 0}
        self._owner_contexts: dict[int, Any] = {}
        self._primary_staleness: dict[int, int] = {}
        self._shard_copies: dict[int, dict[int, torch.Tensor]] = {}
        self._global_shards: list[torch.Tensor] = []
        self._busy_until: dict[int, float] = {}
        self.steps = steps
        self.eval_every = eval_every
        self.evaluate = evaluate
        self.accumulate = accumulate
        self.target_loss = target_loss
        self.on_eval = on_eval
        self.on_update = on_update
        self.updates = 0
        self.samples = 0
        self.rows: list[dict[str, Any]] = []
        self.stop_event = env.event()
        self.stop_reason: str | None = None
        self.target_reached: dict[str, float] | None = None
        self._last_eval_update = -1
        self._times: dict[int, list[float]] = {}  # rank -> [compute, comm, idle]
        self._blocked: dict[int, tuple[Op, float]] = {}

    # -- strategies.Runtime protocol ------------------------------------------------------
    def finished(self, ctx: RoleContext) -> bool:
        return self.stop_reason is not None

    def computed(self, ctx: WorkerContext, grads: torch.Tensor, samples: int, loss: float) -> Op:
        seconds = self.compute.step_time(ctx.rank, ctx.steps - 1, self.accumulate)
        op = Op(self.env, kind="compute")
        now = self.env.now
        # A rank has one device: a computation started while another runs queues behind it.
        start = max(now, self._busy_until.get(ctx.rank, now))
        self._busy_until[ctx.rank] = start + seconds
        delay = seconds if start == now else start + seconds - now

        def finish(_: Any) -> None:
            self.samples += samples  # counted when the gradient exists, not when it starts
            op.finish(grads, started_at=start)

        self.env.timeout(delay).callbacks.append(finish)
        return op

    def updated(self, ctx: RoleContext, staleness: int) -> None:
        versions = self._owner_versions
        if ctx.rank not in versions or self.stop_reason is not None:
            return
        versions[ctx.rank] = ctx.version
        if ctx.rank == self.primary:
            self._primary_staleness[ctx.version] = staleness
        if len(versions) > 1:  # keep each shard as of every version not yet global
            self._shard_copies[ctx.rank][ctx.version] = ctx.parameters()  # type: ignore[attr-defined]
        # A global version exists once every shard has applied it: shards may apply the same
        # update at different times (different links), and a model mixing versions is no model.
        while self.updates < min(versions.values()) and self.stop_reason is None:
            self.updates += 1
            if len(versions) > 1:
                self._global_shards = [self._shard_copies[r].pop(self.updates) for r in versions]
                for copies in self._shard_copies.values():
                    for old in [v for v in copies if v < self.updates]:
                        del copies[old]
            tau = self._primary_staleness.pop(self.updates)
            self.rows.append(self._row("update", staleness=float(tau)))
            if self.on_update is not None:
                self.on_update(self.updates)
            if self.updates % self.eval_every == 0 or self.updates >= self.steps:
                self.record_eval()
            if self.updates >= self.steps:
                self.stop("steps")

    def versioned(self, ctx: RoleContext) -> None:
        """Nothing to do: the simulator observes versions through ``updated``."""

    def set_owners(self, contexts: list[Any]) -> None:
        """The roles whose updates together make one global version (every parameter-server
        shard; by default the primary alone), in the order their states concatenate."""
        self._owner_contexts = {ctx.rank: ctx for ctx in contexts}
        self._owner_versions = {ctx.rank: ctx.version for ctx in contexts}
        self._shard_copies = {ctx.rank: {} for ctx in contexts}
        self._global_shards = [ctx.parameters() for ctx in contexts] if len(contexts) > 1 else []

    def global_state(self) -> list[torch.Tensor]:
        """Each owner's parameters as of the last complete global version, in owner order.

        With one owner that is simply its current state; with several (parameter-server
        shards) a shard that has already applied later updates is read from its kept copy.
        """
        if len(self._owner_versions) > 1:
            return self._global_shards
        ctx = self._owner_contexts[self.primary]
        return [ctx.parameters()]

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        self.rows.append(
            self._row("log", rank=ctx.rank, **{k: float(v) for k, v in values.items()})
        )

    # -- driving programs -----------------------------------------------------------------
    def drive(
        self, ctx: RoleContext, program: Generator[Any, Any, None]
    ) -> Generator[Any, Any, None]:
        """The SimPy process body running one role program and timing its waits."""
        times = self._times.setdefault(ctx.rank, [0.0, 0.0, 0.0])
        value: Any = None
        while True:
            try:
                item = program.send(value)
            except StopIteration:
                return
            if not isinstance(item, simpy.Event):
                raise TypeError(
                    f"rank {ctx.rank}'s {ctx.role} program yielded {item!r}; yield the handles "
                    "that communicator calls and compute_gradients() return"
                )
            start = self.env.now
            self._blocked[ctx.rank] = (item, start)
            value = yield item
            del self._blocked[ctx.rank]
            self._account(times, item, start, self.env.now)

    @staticmethod
    def _account(times: list[float], item: Any, start: float, end: float) -> None:
        if not isinstance(item, Op):
            times[1] += end - start
            return
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

    # -- stop, metrics ----------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_event.succeed(reason)

    def _row(self, kind: str, **values: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "time": self.env.now,
            "update": self.updates,
            "samples": self.samples,
            "bytes": float(self.network.bytes_sent),
            **values,
        }

    def record_eval(self) -> None:
        """Evaluate the global model now and check the target loss."""
        if self._last_eval_update == self.updates:
            return
        self._last_eval_update = self.updates
        row = self._row("eval", **self.evaluate())
        self.rows.append(row)
        if self.target_loss is not None and self.target_reached is None:
            if row["loss"] <= self.target_loss:
                self.target_reached = {k: row[k] for k in ("time", "update", "samples", "bytes")}
                self.stop("target_loss")
        if self.on_eval is not None:
            self.on_eval(self.rows)

    def blocked_ranks(self) -> list[int]:
        """Ranks currently waiting on a handle."""
        return sorted(self._blocked)

    def worker_rows(self) -> list[dict[str, Any]]:
        """Per-rank compute / communication / idle time up to now.

        A rank still waiting when the run stops has its wait split as usual if the operation
        has finished at this instant; an unfinished computation counts as compute, and an
        unfinished communication as idle (how much of its data moved is not known).
        """
        now = self.env.now
        rows = []
        for rank in sorted(self._times):
            times = list(self._times[rank])
            if rank in self._blocked:
                item, start = self._blocked[rank]
                unfinished = getattr(item, "finished_at", None) is None
                if unfinished and getattr(item, "kind", "comm") == "compute":
                    times[0] += now - start
                else:
                    self._account(times, item, start, now)
            compute, comm, idle = times
            rows.append(
                self._row("worker", rank=rank, compute_time=compute, comm_time=comm, idle_time=idle)
            )
        return rows

    def staleness_stats(self) -> dict[str, float]:
        values = [r["staleness"] for r in self.rows if r["kind"] == "update"]
        if not values:
            return {"staleness_mean": math.nan, "staleness_max": math.nan}
        return {"staleness_mean": sum(values) / len(values), "staleness_max": max(values)}
