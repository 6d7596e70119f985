"""The real runtime: counters and metrics of one OS process (one rank), on the wall clock.

A sync run ends on every rank by itself: each rank counts the model versions it has seen and
stops at ``steps`` (a parameter server tells its workers the version with every reply).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import torch

from strategies.context import RoleContext, WorkerContext
from strategies.handles import Done

__all__ = ["RealRuntime", "drive"]


class RealRuntime:
    """``strategies.Runtime`` for one real rank."""

    def __init__(
        self,
        rank: int,
        primary: int,
        steps: int,
        eval_every: int,
        evaluate: Callable[[], dict[str, float]] | None,
        bytes_sent: Callable[[], float],
    ) -> None:
        self.rank = rank
        self.primary = primary
        self.steps = steps
        self.eval_every = eval_every
        self.evaluate = evaluate
        self.bytes_sent = bytes_sent
        self.start = time.perf_counter()
        self.updates = 0
        self.samples = 0
        self.rows: list[dict[str, Any]] = []
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
        if self.rank != self.primary:
            return
        self.updates += 1
        self.rows.append(self.row("update", staleness=float(staleness)))
        if self.updates % self.eval_every == 0 or self.updates >= self.steps:
            self.record_eval()

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        self.rows.append(self.row("log", rank=ctx.rank, **{k: float(v) for k, v in values.items()}))

    def row(self, kind: str, **values: Any) -> dict[str, Any]:
        # samples are counted per rank here; the launcher sums them over ranks at the end.
        return {
            "kind": kind,
            "time": self.now(),
            "update": self.updates,
            "samples": self.samples,
            "bytes": self.bytes_sent(),
            **values,
        }

    def record_eval(self) -> None:
        if self.evaluate is not None:
            self.rows.append(self.row("eval", **self.evaluate()))

    def worker_row(self) -> dict[str, Any]:
        # Real waits cannot tell a peer's lateness from transfer time: all of it is comm_time.
        return self.row(
            "worker",
            rank=self.rank,
            compute_time=self.compute_time,
            comm_time=self.comm_time,
            idle_time=float("nan"),
        )


def drive(runtime: RealRuntime, program: Generator[Any, Any, None]) -> None:
    """Run a role program to the end, waiting on each handle it yields."""
    value: Any = None
    mark = time.perf_counter()
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
