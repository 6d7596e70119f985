"""What faults cost a run, counted the same in both backends from the ledger's events.

* ``failures``: ranks that crashed; ``restarts``: ranks that came back as new processes;
* ``lost_steps``: optimizer steps that never became part of the model (a failed round's
  step, steps rolled back to a checkpoint); ``lost_samples``: samples computed and dropped
  by a fault (a crashed rank's uncommitted gradients, a failed round's, and what a crashed
  rank held that no rank had counted: an actor's rollout no learner received);
* ``recovery_time``: seconds during which the global model made no progress because of a
  fault: from a crash (the first of overlapping ones) to the next global step, so it holds
  the detection delay, the restart and the healing;
* ``heal_bytes``: bytes a rejoining rank received to take a live peer's state;
* ``checkpoint_time``: seconds ranks spent writing and reading checkpoints;
* ``goodput``: committed samples per second of the run.

Examples
--------
>>> tally = FaultTally()
>>> tally.crashed(2.0); tally.crashed(2.5)
>>> tally.progressed(6.0), tally.recovery_time
(None, 4.0)
>>> tally.summary(samples=640, time=8.0)["goodput"]
80.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from strategies.events import Crashed, Lost, Restarted, Restored

if TYPE_CHECKING:
    from strategies.counts import SampleCounts
    from strategies.owners import OwnerStates

__all__ = ["FAULT_EVENTS", "FAULT_ROW", "FaultTally", "record_fault", "survivable"]

#: What a ``fault`` row's ``event`` column says happened.
FAULT_EVENTS = (
    "crash",
    "restart",
    "rejoin",
    "lost",
    "link_down",
    "link_up",
    "link_slow",
    "slow",
    "cut_off",
    "reconnect",
)
#: The ``fault`` row of each event a rank reports.
FAULT_ROW = {"crashed": "crash", "restarted": "restart", "restored": "rejoin", "lost": "lost"}


class FaultTally:
    """The fault counters of one run (see the module docstring)."""

    def __init__(self) -> None:
        self.failures = 0
        self.restarts = 0
        self.lost_steps = 0
        self.lost_samples = 0.0
        self.recovery_time = 0.0
        self.heal_bytes = 0.0
        self.checkpoint_time = 0.0
        self._outage: float | None = None
        self._closed: tuple[float, float] | None = None  # the last outage: (crash, progress)
        self._longest: dict[int, float] = {}  # each checkpoint's longest rank, since a rewind

    def crashed(self, at: float) -> None:
        """A rank crashed at ``at``: the model is without progress from then, if it was not."""
        self.failures += 1
        if self._outage is None:
            self._outage = at

    def progressed(self, at: float) -> None:
        """The global model advanced at ``at``: an outage, if any, ends."""
        if self._outage is not None:
            self.recovery_time += max(at - self._outage, 0.0)
            self._closed = (self._outage, at)
            self._outage = None

    def checkpointed(self, step: int, seconds: float) -> None:
        """A rank spent ``seconds`` on its part of the checkpoint of ``step``: the run's
        ``checkpoint_time`` counts each checkpoint's longest rank (its ranks write at once).

        Examples
        --------
        >>> tally = FaultTally()
        >>> tally.checkpointed(4, 0.5); tally.checkpointed(4, 0.25); tally.checkpointed(8, 1.0)
        >>> tally.checkpoint_time
        1.5
        """
        before = self._longest.get(step, 0.0)
        if seconds > before:
            self.checkpoint_time += seconds - before
            self._longest[step] = seconds

    def rewound(self) -> None:
        """Every rank restarted from a checkpoint: the reads (and writes) after are new ones."""
        self._longest.clear()

    def rolled_back(self) -> None:
        """Steps were rolled back (a round that failed after a crash): the progress that
        ended the last outage did not last, so the outage goes on from its crash.

        Examples
        --------
        >>> tally = FaultTally()
        >>> tally.crashed(2.0); tally.progressed(2.1); tally.rolled_back()
        >>> tally.progressed(5.0), tally.recovery_time
        (None, 3.0)
        """
        if self._outage is None and self._closed is not None:
            crash, progress = self._closed
            self.recovery_time -= progress - crash
            self._outage, self._closed = crash, None

    def summary(self, *, samples: float, time: float) -> dict[str, Any]:
        """The summary's fault keys (an outage still open at the end counts to ``time``)."""
        recovery = self.recovery_time
        if self._outage is not None:
            recovery += max(time - self._outage, 0.0)
        return {
            "failures": self.failures,
            "restarts": self.restarts,
            "lost_steps": self.lost_steps,
            "lost_samples": int(self.lost_samples),
            "recovery_time": recovery,
            "heal_bytes": self.heal_bytes,
            "checkpoint_time": self.checkpoint_time,
            "goodput": samples / time if time > 0 else math.nan,
        }


def record_fault(
    event: Crashed | Restarted | Restored | Lost,
    tally: FaultTally,
    counts: SampleCounts,
    owners: OwnerStates,
    combine: str,
) -> None:
    """What a crash, a restart, a rank restored to a step, or work lost does to the run's
    counts: the owners of the global model (a crashed one leaves, a restored one rejoins at
    its step), the samples (what a crash or a failed round drops) and the fault counters."""
    rank = event.rank
    if isinstance(event, Crashed):
        tally.crashed(event.at)
        tally.lost_samples += counts.lose(rank) + counts.drop_held(rank)
        owners.leave(rank)
    elif isinstance(event, Restarted):
        tally.restarts += 1
    elif isinstance(event, Restored):
        tally.heal_bytes += event.nbytes
        counts.restored(rank, event.step)
        if rank in owners.owners:
            before = owners.counts.get(rank)
            if combine == "concat" and before is not None and before > event.step:
                # A shard restored in place (its server crashed): the steps since its
                # checkpoint are lost (a replica rolled back says so itself: w.lose).
                if rank == owners.live[0]:
                    tally.lost_steps += before - event.step
            owners.rejoin(rank, event.step, event.state)
    else:
        live = owners.live
        if live and rank == live[0]:  # global steps: as the first live owner lost them
            tally.lost_steps += event.steps
        if event.undone:
            tally.rolled_back()
        tally.lost_samples += counts.lose(rank, event.steps if event.undone else 0)


#: What survives a crash, by strategy name (the options that make it so).
_SURVIVES = {
    "allreduce": "fault_tolerance='quorum' survives it",
    "local_sgd": "fault_tolerance='quorum' survives it",
    "diloco": "fault_tolerance='quorum' survives it",
    "streaming_diloco": "fault_tolerance='quorum' survives it",
    "parameter_server": "mode='async' or 'ssp' carries on without a worker, mode='sync' "
    "with backup_workers >= the crashed workers, and checkpoint_every restores a server",
    "impala": "learners carry on without a crashed actor, and with learners >= 2 "
    "fault_tolerance='quorum' survives a learner's crash",
    "gossip": "gossip carries on without the crashed rank when its program catches PeerFailure",
}


def survivable(strategy: Any) -> str:
    """A sentence on the options that survive a crash, for ``strategy``.

    Examples
    --------
    >>> survivable(type("S", (), {"name": "allreduce"})())
    "allreduce stops at a crash: fault_tolerance='quorum' survives it, as does the faults' recovery='restart' (from checkpoints), or a strategy that catches PeerFailure"
    """
    name = getattr(strategy, "name", type(strategy).__name__)
    options = _SURVIVES.get(name, "a strategy that catches PeerFailure survives it")
    return (
        f"{name} stops at a crash: {options}, as does the faults' recovery='restart' (from "
        "checkpoints), or a strategy that catches PeerFailure"
    )
