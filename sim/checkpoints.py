"""Checkpoints of a simulated run, and restarting every rank from the last one
(``recovery="restart"``, as torchelastic restarts a job).

A checkpoint holds each rank's model and optimizer state and its place in its data (what a
user's checkpoint saves: a program's own variables, such as DiLoCo's outer momentum, start
afresh), so a synchronous run restarted from it repeats the same steps, taken when the
global step reaches a multiple of ``checkpoint_every``, or, without it, once Young/Daly's
interval ``sqrt(2 x write time x MTBF)`` has passed since the last. Writing occupies each
rank's device for ``latency + bytes / bandwidth`` (its next computation waits), and so does
reading at a restart; the run's ``checkpoint_time`` adds the longest of each. The initial
state is the checkpoint of step 0, free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faults import FaultSchedule
from sim.runtime import SimRuntime
from strategies.context import RoleContext
from strategies.ledger import Ledger
from strategies.snapshots import RankState

__all__ = ["Checkpoint", "Checkpoints"]


@dataclass
class Checkpoint:
    """The run at one global step: each rank's state, and the ledger's counts then."""

    step: int
    at: float
    ranks: dict[int, RankState]
    counts: dict[str, Any]


class Checkpoints:
    """The run's checkpoints (see the module docstring)."""

    def __init__(
        self,
        schedule: FaultSchedule,
        runtime: SimRuntime,
        ledger: Ledger,
        contexts: dict[int, RoleContext],
    ) -> None:
        self.schedule = schedule
        self.runtime = runtime
        self.ledger = ledger
        self.contexts = contexts
        self.last = self._capture(0, 0.0)
        largest = max((state.nbytes for state in self.last.ranks.values()), default=0)
        self.every = schedule.checkpoint_every
        self.interval = (
            None if self.every is not None else schedule.checkpoint_interval(largest, len(contexts))
        )

    def _capture(self, step: int, at: float) -> Checkpoint:
        ranks = {rank: RankState.of(ctx) for rank, ctx in self.contexts.items()}
        return Checkpoint(step, at, ranks, self.ledger.counts.snapshot())

    def due(self, step: int, now: float) -> bool:
        if self.every is not None:
            return step % self.every == 0
        return self.interval is not None and now - self.last.at >= self.interval

    def take(self, step: int, now: float) -> None:
        """Checkpoint the run at global step ``step``: every rank writes its state."""
        self.last = self._capture(step, now)
        self.ledger.faults.checkpoint_time += self._charge("checkpoint write")

    def _charge(self, what: str) -> float:
        longest = 0.0
        for rank, state in self.last.ranks.items():
            seconds = self.schedule.checkpoint_seconds(state.nbytes)
            if seconds > 0:
                self.runtime.occupy(rank, seconds, what)
            longest = max(longest, seconds)
        return longest

    def restore(self, contexts: dict[int, RoleContext]) -> None:
        """Every rank's new context takes its state from the last checkpoint (reading it
        occupies the rank's device); the ledger goes back to its step."""
        last = self.last
        self.contexts = contexts
        for rank, ctx in contexts.items():
            last.ranks[rank].apply(ctx)
        # The owners' states are their restored parameters (a checkpoint keeps them once).
        owners = {r: contexts[r].parameters() for r in self.ledger.owners}
        self.ledger.rewind(last.step, owners, last.counts)
        self.ledger.faults.checkpoint_time += self._charge("checkpoint read")
