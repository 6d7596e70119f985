"""From what every rank handed in to the run's results: the ledger replay and the run directory.

Whoever gathers the ranks' records (rank 0 on a cluster, the local launcher on one machine)
feeds all ranks' events, in time order, to the :class:`strategies.ledger.Ledger` the
simulator uses, which evaluates the global model at its evaluation points and builds the
rows; the result is the :class:`runs.RunResult` that ``sim.run`` returns, and the same run
directory, with the timeline of every rank's spans (``trace.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from real.checkpoints import Rewinds, Rewound
from runs import RunResult, RunWriter, Trace, gradient_times
from runs.metric import Target
from strategies.events import Computed, Event, Stepped
from strategies.ledger import Ledger
from strategies.outcome import result_of, summary_of
from strategies.roles import (
    TrainingSetup,
    initial_parameters,
    initial_state,
    make_ledger,
    make_trace,
)

__all__ = [
    "EMPTY_PART",
    "Replayed",
    "RunInterrupted",
    "assemble",
    "interruption",
    "replay",
    "stopped_by_interrupt",
    "timeline",
]

#: Stops the ledger decides (the run's time is then the stop's, not the last rank's end).
STOPPED_BY_LEDGER = ("steps", "target_loss", "target_return", "max_time")

#: What a rank that handed in nothing (killed, or lost with its node) contributes.
EMPTY_PART: dict[str, Any] = {"events": [], "error": None, "final": None, "stop_reason": None}


@dataclass
class Replayed:
    """The ledger after every rank's events, and the time and bytes when the run stopped."""

    ledger: Ledger
    time: float
    nbytes: float


def replay(
    setup: TrainingSetup,
    parts: list[dict[str, Any] | None],
    target: Target | None = None,
    max_time: float | None = None,
    faults: bool = False,
    marks: Sequence[tuple[Any, ...]] = (),
) -> Replayed:
    """Feed every rank's events, in time order, to the ledger the simulator uses.

    With a ``target`` (:func:`runs.metric.check_target`: a loss or a return) the ledger
    stops at the first evaluation that reaches it (the one the run's watcher stopped the
    ranks at: the same snapshots, evaluated alike). With
    ``max_time`` events after it are dropped (ranks learn the stop late) and the ledger stops
    there, as ``sim``'s does; the last evaluation is of the owners' states when they stopped.
    ``faults``: the run had a fault schedule (the ledger's owners and summary are then a
    faulty run's, as in ``sim``). ``marks``: ``fault`` rows no rank reports, ``(time, rank,
    event)`` (a slowed rank's start and end, :func:`real.slowdowns.marks`; a testbed's link
    changes, rank -1, :mod:`real.testbed.links`), written between the events around their
    time, as ``sim``'s injector writes them; ``(time, rank, "cut_off" or "reconnect",
    since)``: a rank a testbed's quorum cut off or admitted again (:func:`real.partitions.cuts`),
    given to the ledger as ``sim``'s quorums give it (:meth:`~strategies.ledger.Ledger.cut`).
    """
    parts_ = [p if p is not None else EMPTY_PART for p in parts]
    events: list[Event | Rewound] = sorted(
        (e for p in parts_ for e in p["events"]), key=lambda e: (e.at, e.rank)
    )
    flat = initial_parameters(setup)
    # Every rank restarted from a checkpoint (recovery="restart"): the ledger goes back to it.
    rewinds = Rewinds({e.step for e in events if isinstance(e, Rewound)})
    observers: dict[str, Any] = {"on_step": rewinds.on_step} if rewinds.steps else {}
    ledger = make_ledger(setup, target=target, faults=faults, **observers)
    owners = ledger.owners
    initial = {r: initial_state(setup, r, flat) for r in owners}
    ledger.start(initial)
    rewinds.attach(ledger, initial)
    pending = sorted(marks)
    for event in events:  # after the stop, gradients count as discarded work only
        while pending and pending[0][0] <= event.at:
            mark = pending.pop(0)
            if max_time is None or mark[0] <= max_time:
                _mark(ledger, mark)
        if max_time is not None and event.at > max_time:
            if not ledger.stopped:
                ledger.stop("max_time")
            if not isinstance(event, Computed):
                continue
        if isinstance(event, Rewound):
            rewinds.apply(event)
            continue
        ledger.record(event)
    # Marks after the last event (an interrupted run, a link cut before it ended): those
    # made while the ranks still ran.
    end = max((p["times"][0] for p in parts_ if "times" in p), default=math.inf)
    for mark in pending:
        if mark[0] <= min(end, math.inf if max_time is None else max_time):
            _mark(ledger, mark)
    stop_time, stop_bytes = ledger.now(), ledger.bytes_sent()
    reason = next((p["stop_reason"] for p in parts_ if p.get("stop_reason")), None)
    if ledger.stop_reason == "max_time" or (reason == "max_time" and not ledger.stopped):
        stop_time = max_time if max_time is not None else stop_time
    finals = {
        r: (lambda s=parts_[r]["final"]: s) for r in owners if parts_[r].get("final") is not None
    }
    keep = not ledger.stopped or ledger.stop_reason == "max_time"
    ledger.finish(reason or "finished", finals if keep else None)
    roles = setup.roles()
    for rank, part in enumerate(parts_):
        if "times" in part:
            end, compute, comm, overlap = part["times"]
            # Real waits cannot tell a peer's lateness from transfer time: all of it is comm.
            ledger.rank_times(
                rank, compute, comm, math.nan, role=roles[rank], at=end, overlap=overlap
            )
    if ledger.stop_reason not in STOPPED_BY_LEDGER:  # the programs ended: until the last did
        stop_time = max((p["times"][0] for p in parts_ if "times" in p), default=stop_time)
    return Replayed(ledger, stop_time, stop_bytes)


def _gradient_seconds(parts: list[dict[str, Any] | None]) -> dict[int, list[float]]:
    """Each rank's compute seconds per gradient, from its compute time at each gradient."""
    per_rank = {}
    for rank, part in enumerate(parts):
        marks = (part or {}).get("gradients") or []
        per_rank[rank] = [b - a for a, b in zip([0.0, *marks], marks)]
    return {rank: seconds for rank, seconds in per_rank.items() if seconds}


def timeline(
    setup: TrainingSetup, parts: list[dict[str, Any] | None], rows: list[dict[str, Any]]
) -> Trace:
    """The run's trace: every rank's spans as it handed them in, and the loss of ``rows``."""
    trace = make_trace(setup, "real")
    for rank, part in enumerate(parts):
        if part is not None and part.get("trace") is not None:
            trace.absorb(rank, part["trace"])
    trace.evals(rows)
    return trace


def assemble(
    setup: TrainingSetup,
    config: dict[str, Any],
    parts: list[dict[str, Any] | None],
    *,
    wall_time: float,
    writer: RunWriter | None = None,
    error: BaseException | None = None,
    target: Target | None = None,
    max_time: float | None = None,
    faults: bool = False,
    marks: Sequence[tuple[Any, ...]] = (),
) -> RunResult:
    """The run's result from every rank's part; written to ``writer`` when given.
    ``target``, ``max_time``: the run's stops; ``marks``: fault rows no rank reports
    (see :func:`replay`).

    With ``error`` (a rank failed, or the run was interrupted: a ``KeyboardInterrupt``) the
    rows gathered so far are written with the error (and, when interrupted, the summary of
    what was measured), and ``error`` is raised."""
    replayed = replay(setup, parts, target, max_time, faults, marks)
    ledger = replayed.ledger
    trace = timeline(setup, parts, ledger.rows)
    if error is not None:
        if writer is not None:
            summary = None
            if isinstance(error, KeyboardInterrupt):
                summary = summary_of(
                    ledger,
                    time=replayed.time,
                    nbytes=replayed.nbytes,
                    wall_time=wall_time,
                    stop_reason="interrupted",
                )
            writer.fail(ledger.rows, error, trace, summary)
        raise error
    result = result_of(
        ledger,
        config,
        time=replayed.time,
        nbytes=replayed.nbytes,
        wall_time=wall_time,
        trace=trace,
        compute=gradient_times(_gradient_seconds(parts)),
    )
    if writer is not None:
        writer.finish(result)  # writes trace.json, then the record
    return result


class RunInterrupted(KeyboardInterrupt):
    """A real run stopped by SIGINT or SIGTERM; its rows up to then are written."""


def stopped_by_interrupt(parts: list[dict[str, Any] | None]) -> bool:
    """Whether a rank stopped the run because it was interrupted."""
    return any(p is not None and p.get("stop_reason") == "interrupted" for p in parts)


def interruption(
    why: str, parts: list[dict[str, Any] | None], writer: RunWriter | None
) -> RunInterrupted:
    """The one line an interrupted run ends with: what stopped it, how far it got, and where
    its rows are."""
    steps = max(
        (sum(isinstance(e, Stepped) for e in p["events"]) for p in parts if p is not None),
        default=0,
    )
    where = f"; the rows measured until then are in {writer.directory}" if writer else ""
    return RunInterrupted(f"{why or 'interrupted'} after {steps} optimizer steps{where}")


def _mark(ledger: Any, mark: tuple[Any, ...]) -> None:
    """A ``fault`` row no rank reports, or a partition's cut (see :func:`replay`)."""
    if len(mark) == 4:
        _, rank, name, since = mark
        ledger.cut(rank, name == "cut_off", since)
    else:
        at, rank, name = mark
        ledger.fault(name, rank, at=at)
