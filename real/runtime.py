"""The real runtime: counters and measurements of one OS process (one rank), on the wall clock.

A synchronous run ends on every rank by itself: each rank counts the model versions it has
seen and stops at ``steps`` (a parameter server tells its workers the version with every
reply). Nothing slow happens inside the timed loop: at evaluation points the first worker
only snapshots the global parameters; the launcher evaluates them after the run.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import torch

from strategies.context import RoleContext, WorkerContext
from strategies.handles import Done

__all__ = ["RealRuntime", "drive"]


class RealRuntime:
    """``strategies.Runtime`` for one real rank.

    ``marks`` holds ``(version, time, samples, bytes)`` each time this rank's model version
    changes, so the launcher can total samples and bytes over ranks at every version;
    ``snapshots`` holds ``(version, time, flat parameters)`` at evaluation points when this
    rank is the one that records them.
    """

    def __init__(
        self,
        rank: int,
        primary: int,
        steps: int,
        eval_every: int,
        snapshot: bool,
        bytes_sent: Any,
    ) -> None:
        self.rank = rank
        self.primary = primary
        self.steps = steps
        self.eval_every = eval_every
        self.snapshot = snapshot
        self.bytes_sent = bytes_sent
        self.start = time.perf_counter()
        self.samples = 0
        self.rows: list[dict[str, Any]] = []
        self.marks: list[tuple[int, float, int, float]] = []
        self.snapshots: list[tuple[int, float, torch.Tensor]] = []
        self.compute_time = 0.0
        self.comm_time = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start

    def finished(self, ctx: RoleContext) -> bool:
        return ctx.version >= self.steps

    def computed(self, ctx: WorkerContext, grads: torch.Tensor, samples: int, loss: float) -> Done:
        self.samples += samples
        return Done(grads)

    def updated(self, ctx: RoleContext, staleness: int) -> None:
        if self.rank == self.primary:
            self.rows.append(
                {
                    "kind": "update",
                    "time": self.now(),
                    "update": ctx.version,
                    "staleness": float(staleness),
                }
            )

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        self.rows.append(
            {
                "kind": "log",
                "time": self.now(),
                "update": ctx.version,
                "rank": ctx.rank,
                **{k: float(v) for k, v in values.items()},
            }
        )

    def versioned(self, ctx: RoleContext) -> None:
        """Note this rank's new model version: counters now, and a snapshot if it is due."""
        now = self.now()
        self.marks.append((ctx.version, now, self.samples, float(self.bytes_sent())))
        v = ctx.version
        if self.snapshot and (v % self.eval_every == 0 or v >= self.steps):
            self.snapshots.append((v, now, ctx.parameters()))  # type: ignore[attr-defined]

    def worker_row(self) -> dict[str, Any]:
        # Real waits cannot tell a peer's lateness from transfer time: all of it is comm_time.
        return {
            "kind": "worker",
            "time": self.now(),
            "rank": self.rank,
            "samples": self.samples,
            "bytes": float(self.bytes_sent()),
            "compute_time": self.compute_time,
            "comm_time": self.comm_time,
            "idle_time": float("nan"),
        }


def drive(runtime: RealRuntime, ctx: RoleContext, program: Generator[Any, Any, None]) -> None:
    """Run a role program to the end, waiting on each handle it yields."""
    value: Any = None
    mark = time.perf_counter()
    runtime.versioned(ctx)  # version 0: the starting point of every rank
    while True:
        try:
            item = program.send(value)
        except StopIteration:
            return
        waited = time.perf_counter()
        runtime.compute_time += waited - mark
        if not hasattr(item, "wait"):
            raise TypeError(f"rank {runtime.rank} yielded {item!r}; yield communicator handles")
        value = item.wait()
        mark = time.perf_counter()
        runtime.comm_time += mark - waited
