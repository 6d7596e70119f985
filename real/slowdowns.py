"""A transient straggler on the real backend: the ``slow`` events of a fault schedule.

A rank under ``{"kind": "slow", "rank": r, "factor": f, "at": a, "until": b}`` takes ``f``
times its measured compute for each gradient that starts while the event is in force: after
computing it, it waits ``(f - 1)`` times what that took, on its compute thread (or its own,
where it computes there), and the wait ends early when the run stops or the rank is asked to
crash, as its other waits do. ``at`` and ``until`` are seconds on the run's shared clock, as a
crash's ``at`` is. Which factor is in force at an instant is what ``sim``'s injector leaves
(:mod:`sim.injector`): each start sets the rank's factor, each end clears it, in time order.
The launcher writes the same ``fault`` rows ``sim`` writes (``slow`` at each start and end,
:func:`marks`); it needs no report from the rank.

Examples
--------
>>> from faults import FaultSchedule
>>> schedule = FaultSchedule.parse(
...     [{"kind": "slow", "rank": 1, "factor": 4, "at": 0.5, "until": 2.0}], world_size=2, links=None
... )
>>> slow = SlowDown(schedule, rank=1)
>>> slow.factor(0.1), slow.factor(0.5), slow.factor(1.9), slow.factor(2.0)
(1.0, 4.0, 4.0, 1.0)
>>> SlowDown(schedule, rank=0).active, marks(schedule)
(False, [(0.5, 1, 'slow'), (2.0, 1, 'slow')])
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Iterable

from faults import FaultSchedule

__all__ = ["SlowDown", "marks", "pause"]

_SLICE = 0.01  # how often a slowed rank's wait looks at the stop and a crash request


def _transitions(schedule: FaultSchedule) -> list[tuple[float, int, float]]:
    """Every start and end of a ``slow`` event, ``(time, rank, factor in force after it)``,
    in time order (events at one instant in the schedule's order, as sim applies them)."""
    out = []
    for slow in schedule.slows:
        out.append((float(slow.at), slow.rank, float(slow.factor)))
        if slow.until is not None:
            out.append((float(slow.until), slow.rank, 1.0))
    return sorted(out, key=lambda t: t[0])  # stable: the schedule's order at one instant


def marks(schedule: FaultSchedule) -> list[tuple[float, int, str]]:
    """The ``fault`` rows the schedule's slowed ranks write: ``(time, rank, "slow")`` at each
    start and end, in time order, as ``sim`` writes them."""
    return [(at, rank, "slow") for at, rank, _ in _transitions(schedule)]


class SlowDown:
    """The compute factor in force on ``rank`` at each instant of the run's clock."""

    def __init__(self, schedule: FaultSchedule, rank: int) -> None:
        changes = [(at, f) for at, r, f in _transitions(schedule) if r == rank]
        self._times = [at for at, _ in changes]
        self._factors = [f for _, f in changes]

    @property
    def active(self) -> bool:
        """Whether this rank is ever slowed."""
        return bool(self._times)

    def factor(self, at: float) -> float:
        """The factor in force at ``at`` (1: not slowed)."""
        index = bisect_right(self._times, at)
        return self._factors[index - 1] if index else 1.0


def pause(seconds: float, wakes: Iterable[threading.Event]) -> None:
    """Wait ``seconds``, or until one of ``wakes`` is set (the run's stop, a crash asked).

    >>> stop = threading.Event(); stop.set(); pause(10.0, [stop])  # returns at once
    """
    events = list(wakes)
    deadline = time.perf_counter() + seconds
    while not any(e.is_set() for e in events):
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        time.sleep(min(_SLICE, left))
