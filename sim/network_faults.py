"""The state of a network's faults: each faulty link's bandwidth factor (and since when a
link is down), the flows stalled on a failed link, and the operations held for want of a
live route.

:class:`sim.network.Network` applies faults (``set_link``, ``drop_rank``, ``cancel``); this
module holds what they leave behind and the checks of their arguments, apart from the engine
of a run without faults, which never reads it.

Examples
--------
>>> import numpy as np
>>> links = LinkStates()
>>> links.set((0, 1), ("s0", 1), 0.5, now=0.0); links.set((2, 3), ("s0", 2), 0.0, now=1.5)
>>> links.capacity(np.full(4, 10.0)).tolist(), links.down_edges, links.nominal
([5.0, 5.0, 0.0, 0.0], [('s0', 2)], False)
>>> links.down_since
[(('s0', 2), 1.5)]
>>> links.set((0, 1), ("s0", 1), 1.0); links.set((2, 3), ("s0", 2), 1.0); links.nominal
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import simpy

from sim.routing import NetworkError

__all__ = [
    "Held",
    "LinkStates",
    "Stall",
    "check_delay",
    "check_factor",
    "check_reroute_delay",
    "fail_quietly",
]

#: Picks flows by their owners and tags (arrays) -> a boolean mask.
Select = Callable[[np.ndarray, np.ndarray], np.ndarray]
Edge = tuple[Hashable, Hashable]


def check_factor(factor: object) -> float:
    """Return a link's bandwidth factor in [0, 1], or raise a one-line :class:`NetworkError`.

    >>> check_factor(1.5)
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: factor must be in [0, 1] (0: the link is down, 1: restored), got 1.5
    """
    if isinstance(factor, bool) or not isinstance(factor, Real) or not 0 <= float(factor) <= 1:
        raise NetworkError(
            f"factor must be in [0, 1] (0: the link is down, 1: restored), got {factor!r}"
        )
    return float(factor)


def check_delay(delay: object, name: str) -> float:
    """Return a delay in seconds (``Network.reroute_delay``, ``Network.detect``), or raise a
    one-line :class:`NetworkError` naming it.

    >>> check_delay(-1, "detect")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: detect must be a finite number >= 0 (s), got -1
    """
    if (
        isinstance(delay, bool)
        or not isinstance(delay, Real)
        or not math.isfinite(delay)
        or delay < 0
    ):
        raise NetworkError(f"{name} must be a finite number >= 0 (s), got {delay!r}")
    return float(delay)


def check_reroute_delay(delay: object) -> float:
    """Return ``Network.reroute_delay`` (s), or raise a one-line :class:`NetworkError`.

    >>> check_reroute_delay(-1)
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: reroute_delay must be a finite number >= 0 (s), got -1
    """
    return check_delay(delay, "reroute_delay")


def fail_quietly(event: simpy.Event, exc: Exception) -> None:
    """Fail ``event`` with ``exc``, defused: a process yielding it still gets ``exc`` thrown
    in, but a failed event nobody waits on does not stop the simulation."""
    event.fail(exc)
    event.defused = True


class LinkStates:
    """The links whose bandwidth is not their own: factor per link (both directions)."""

    def __init__(self) -> None:
        # Link ids of an edge (one per direction) -> (the edge as first named, factor).
        self._links: dict[tuple[int, ...], tuple[Edge, float]] = {}
        # Link ids of an edge that is down -> when it went down (it stayed down since).
        self._since: dict[tuple[int, ...], float] = {}

    def factor(self, ids: tuple[int, ...]) -> float:
        """The factor the links ``ids`` carry now (1 unless set)."""
        hit = self._links.get(ids)
        return 1.0 if hit is None else hit[1]

    def set(self, ids: tuple[int, ...], edge: Edge, factor: float, now: float = 0.0) -> None:
        """Links ``ids`` (edge ``edge``) carry ``factor`` times their bandwidth from ``now``."""
        if factor == 0:
            self._since.setdefault(ids, now)
        else:
            self._since.pop(ids, None)
        if factor == 1:
            self._links.pop(ids, None)
        else:
            self._links[ids] = (self._links.get(ids, (edge, 1.0))[0], factor)

    @property
    def nominal(self) -> bool:
        """Whether every link has its own bandwidth (no fault is in force)."""
        return not self._links

    @property
    def down_edges(self) -> list[Edge]:
        """The edges that are down (factor 0), in the order they were first faulted."""
        return [edge for edge, factor in self._links.values() if factor == 0]

    @property
    def down_since(self) -> list[tuple[Edge, float]]:
        """``(edge, when it went down)`` of the edges that are down, the longest down first."""
        down = [(self._links[ids][0], since) for ids, since in self._since.items()]
        return sorted(down, key=lambda item: item[1])

    def capacity(self, nominal: np.ndarray) -> np.ndarray:
        """Each link's capacity now, from the ``nominal`` capacities."""
        capacity = nominal.copy()
        for ids, (_, factor) in self._links.items():
            capacity[list(ids)] *= factor
        return capacity


@dataclass(eq=False)  # compared by identity: a stall's columns are arrays
class Stall:
    """Flows stalled by a failed link, in :class:`sim.flows.FlowTable`'s columns: ``pending``
    (in their latency phase) and ``active`` (with the bytes left). Until ``resume_at`` they
    wait for a reroute (or for their own route to come back); ``resume_at`` None: the
    reroute found no live route, and they wait for a link to come back (or fail once their
    ranks have been cut off ``detect`` seconds)."""

    resume_at: float | None
    pending: tuple[np.ndarray, ...]
    active: tuple[np.ndarray, ...]

    @property
    def empty(self) -> bool:
        """Whether no flow is left in it."""
        return not self.pending[0].size and not self.active[0].size

    def split(
        self, pick: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Remove the flows whose routes ``pick`` selects (route ids -> a boolean mask) and
        return them, ``(pending, active)``, in their order."""
        p, a = self.pending, self.active
        hit_p, hit_a = pick(p[1]), pick(a[0])
        self.pending = tuple(x[~hit_p] for x in p)
        self.active = tuple(x[~hit_a] for x in a)
        return tuple(x[hit_p] for x in p), tuple(x[hit_a] for x in a)

    def flows(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(routes, owners, tags)`` of the pending and of the active flows."""
        p, a = self.pending, self.active
        return [(p[1], p[3], p[4]), (a[0], a[4], a[5])]

    def drop(self, select: Select) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """Remove the flows ``select`` picks (by owner and tag) and return them."""
        p, a = self.pending, self.active
        hit_p, hit_a = select(p[3], p[4]), select(a[4], a[5])
        self.pending = tuple(x[~hit_p] for x in p)
        self.active = tuple(x[~hit_a] for x in a)
        return tuple(x[hit_p] for x in p), tuple(x[hit_a] for x in a)


@dataclass(eq=False)
class Held:
    """An operation (or a round of a collective) that found no live route between its
    ranks: tried again (``retry``) when a link comes back, and failed once ``ranks`` have been
    cut off ``detect`` seconds. ``key`` names the operation: a send's tag (int), a
    :class:`~sim.collectives.schedule.CollectiveRun`, or the event of a collective that could
    not be planned yet; ``members`` are the ranks it involves (a crash of one fails it)."""

    retry: Callable[[], None]
    key: Any
    members: tuple[int, ...]
