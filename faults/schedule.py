"""A run's fault schedule: its events, checked against the run, and the delays a backend
applies to them; what ``sim.run``, ``real.run``, ``commsim`` and experiment files take as
``faults``, and what ``run.json`` records.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from numbers import Real
from typing import Any

from faults.checks import Links, check_event, last_survivor_lost
from faults.errors import FaultError
from faults.events import Crash, Event, LinkFault, RandomCrashes, Slow
from faults.reading import read_event
from faults.sources import read_source
from options.spec import did_you_mean
from topologies.units import UnitError, parse_bandwidth, parse_time

__all__ = ["RECOVERIES", "FaultSchedule"]

#: Run-level recovery policies (None: the strategy's own, or none).
RECOVERIES = (None, "restart")


def _storage(value: object) -> dict[str, float]:
    """The ``checkpoint`` table: ``bandwidth`` (bytes/s or ``"2GB/s"``) and ``latency``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FaultError("faults.checkpoint", "must be a table {bandwidth=..., latency=...}")
    out = {}
    for key, given in value.items():
        try:
            if key == "bandwidth":
                out["checkpoint_bandwidth"] = parse_bandwidth(given)
            elif key == "latency":
                out["checkpoint_latency"] = parse_time(given)
            else:
                raise FaultError(
                    f"faults.checkpoint.{key}",
                    f"unknown key (keys: bandwidth, latency){did_you_mean(str(key), ('bandwidth', 'latency'))}",
                )
        except UnitError as exc:
            raise FaultError(f"faults.checkpoint.{key}", str(exc)) from None
    return out


@dataclass(frozen=True)
class FaultSchedule:
    """The faults of a run, in the order given. :meth:`parse` builds one checked against the
    run (ranks, links, steps); the constructor checks each event alone.

    Parameters
    ----------
    events
        :class:`~faults.events.Crash`, :class:`~faults.events.RandomCrashes`,
        :class:`~faults.events.LinkFault` and :class:`~faults.events.Slow` events.
    detect
        Seconds before a peer learns of a crash (a heartbeat timeout): an operation with a
        dead rank fails this long after the crash. Ranks that links down cut off from each
        other are given up on the same way: their operations wait for a link to come back,
        and fail this long after the ranks were cut off.
    reroute
        Seconds before the flows over a downed link move to another path, where there is one
        (where there is none they wait, see ``detect``).

    Examples
    --------
    >>> schedule = FaultSchedule.parse(
    ...     [{"kind": "crash", "rank": 3, "step": 40, "restart_step": 60},
    ...      {"kind": "link_down", "link": ["s0", "h3"], "at": "1s", "until": "3s"}],
    ...     world_size=4, links=[("s0", f"h{i}") for i in range(4)], steps=100)
    >>> schedule.crashes, schedule.has_restart(3), schedule.has_restart(2)
    ((Crash(rank=3, step=40, at=None, restart=None, restart_step=60),), True, False)
    >>> schedule.record()["events"][1]
    {'kind': 'link_down', 'link': ['s0', 'h3'], 'at': 1.0, 'until': 3.0}
    >>> FaultSchedule.parse(schedule.record(), world_size=4, links=[("h3", "s0")]) == schedule
    True
    >>> bool(FaultSchedule.parse(None, world_size=4, links=None))
    False
    >>> FaultSchedule.parse([{"kind": "crash", "rank": 4, "at": 1}], world_size=4, links=None)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults[0].rank: rank 4 is not in the run's ranks 0..3
    """

    events: tuple[Event, ...] = ()
    detect: float = 3.0
    reroute: float = 0.5
    #: ``"restart"`` (torchelastic): on a crash every rank restarts from the last checkpoint.
    recovery: str | None = None
    #: Global steps between checkpoints (None: Young/Daly's interval, see checkpoint_interval).
    checkpoint_every: int | None = None
    #: The storage a checkpoint is written to and read from: bytes/s per rank, and seconds.
    checkpoint_bandwidth: float = 1e9
    checkpoint_latency: float = 0.05

    def __post_init__(self) -> None:
        # A list of events is kept as a tuple, so that equal schedules compare (and hash) equal.
        object.__setattr__(self, "events", tuple(self.events))
        for name in ("detect", "reroute"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not 0 <= float(value) < math.inf
            ):
                raise FaultError(
                    f"faults.{name}", f"must be a non-negative number of seconds, not {value!r}"
                )
        if self.recovery not in RECOVERIES:
            raise FaultError(
                "faults.recovery",
                f"{self.recovery!r} is not a recovery policy; use 'restart' or leave it out "
                "(a strategy's own fault tolerance)",
            )
        every = self.checkpoint_every
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise FaultError(
                "faults.checkpoint_every", f"must be an int >= 1 (steps), not {every!r}"
            )
        if not 0 < self.checkpoint_bandwidth < math.inf:
            raise FaultError("faults.checkpoint.bandwidth", "must be a positive bandwidth")
        if not 0 <= self.checkpoint_latency < math.inf:
            raise FaultError("faults.checkpoint.latency", "must be non-negative seconds")
        if self.recovery == "restart" and every is None and not self.random_crashes:
            raise FaultError(
                "faults.checkpoint_every",
                "recovery='restart' needs checkpoint_every=<steps> when no event has an mtbf "
                "(Young/Daly's default interval comes from the MTBF)",
            )

    def mtbf(self, world_size: int) -> float | None:
        """The job's mean time between failures (seconds): the random crashes' rates summed
        over the ranks they cover; None without random crashes.

        Examples
        --------
        >>> events = [{"kind": "crash", "mtbf": "100s", "restart": "5s"}]
        >>> FaultSchedule.parse(events, world_size=4, links=None).mtbf(4)
        25.0
        """
        rate = sum(len(c.ranks or range(world_size)) / c.mtbf for c in self.random_crashes)
        return 1.0 / rate if rate else None

    def checkpoint_seconds(self, nbytes: float) -> float:
        """Seconds to write (or read) a checkpoint of ``nbytes`` on one rank."""
        return self.checkpoint_latency + nbytes / self.checkpoint_bandwidth

    def checkpoint_interval(self, nbytes: float, world_size: int) -> float | None:
        """Young/Daly's checkpoint interval, ``sqrt(2 x checkpoint cost x MTBF)`` seconds,
        for a checkpoint of ``nbytes`` per rank (None without an MTBF).

        Examples
        --------
        >>> s = FaultSchedule.parse({"events": [{"kind": "crash", "mtbf": "800s", "restart": 1}],
        ...     "recovery": "restart", "checkpoint": {"bandwidth": 1e9, "latency": 1.0}},
        ...     world_size=4, links=None)
        >>> s.checkpoint_interval(0, 4)
        20.0
        """
        mtbf = self.mtbf(world_size)
        if mtbf is None:
            return None
        return math.sqrt(2 * self.checkpoint_seconds(nbytes) * mtbf)

    @classmethod
    def parse(
        cls,
        value: object,
        *,
        world_size: int,
        links: Collection[tuple[Any, Any]] | None,
        steps: int | None = None,
    ) -> FaultSchedule:
        """Read and check a schedule for a run.

        Parameters
        ----------
        value
            None (no faults), a list of event dicts, a dict ``{"events": [...], "detect":
            "3s", "reroute": "0.5s"}``, a path (str or Path) to a TOML file (``[[events]]``
            tables and optional top-level ``detect``/``reroute``) or a JSON file holding
            either form, or a :class:`FaultSchedule` (checked again for this run). Times are
            numbers (seconds) or strings with a unit (``"2.5s"``, ``"500ms"``).
        world_size
            The run's ranks: events name ranks ``0..world_size-1``.
        links
            The backend's links as node-name pairs (undirected; names compared as strings), or
            None for a backend without links, which refuses link faults.
        steps
            The run's steps, where known: step-scheduled events must fall in ``0..steps``.

        Raises
        ------
        FaultError
            One line starting with the field (``faults[2].until: ...``) and naming the fix.
        """
        if isinstance(value, FaultSchedule):
            value = value.record()
        raw_events, options = read_source(value)
        known = Links(links)
        events: list[Event] = []
        for i, raw in enumerate(raw_events):
            event = read_event(raw, f"faults[{i}]")
            try:
                check_event(event, world_size, known, steps)
            except FaultError as exc:
                raise exc.under(f"faults[{i}]") from None
            events.append(event)
        last = last_survivor_lost(events, world_size)
        if last is not None:
            raise FaultError(
                f"faults[{last}]",
                f"every rank (0..{world_size - 1}) crashes with no restart, so the run cannot "
                "finish; add restart=... (seconds) or restart_step=..., or leave one rank alive",
            )
        delays: dict[str, Any] = {}
        for name in ("detect", "reroute"):
            if name in options:
                try:
                    delays[name] = parse_time(options[name])
                except UnitError as exc:
                    raise FaultError(f"faults.{name}", str(exc)) from None
        for name in ("recovery", "checkpoint_every"):
            if options.get(name) is not None:
                delays[name] = options[name]
        delays.update(_storage(options.get("checkpoint")))
        return cls(tuple(events), **delays)

    def record(self) -> dict[str, Any]:
        """The schedule as plain JSON (times as float seconds) for ``run.json``;
        :meth:`parse` reads it back to an equal schedule."""
        out: dict[str, Any] = {
            "events": [event.record() for event in self.events],
            "detect": float(self.detect),
            "reroute": float(self.reroute),
        }
        if self.recovery is not None:
            out["recovery"] = self.recovery
            out["checkpoint_every"] = self.checkpoint_every
            out["checkpoint"] = {
                "bandwidth": float(self.checkpoint_bandwidth),
                "latency": float(self.checkpoint_latency),
            }
        return out

    def __bool__(self) -> bool:
        return bool(self.events)

    @property
    def crashes(self) -> tuple[Crash, ...]:
        """The crashes at a fixed step or time."""
        return tuple(e for e in self.events if isinstance(e, Crash))

    @property
    def random_crashes(self) -> tuple[RandomCrashes, ...]:
        """The random crashes (an ``mtbf``)."""
        return tuple(e for e in self.events if isinstance(e, RandomCrashes))

    @property
    def link_faults(self) -> tuple[LinkFault, ...]:
        """The ``link_down`` and ``link_slow`` events."""
        return tuple(e for e in self.events if isinstance(e, LinkFault))

    @property
    def slows(self) -> tuple[Slow, ...]:
        """The transient stragglers."""
        return tuple(e for e in self.events if isinstance(e, Slow))

    def has_restart(self, rank: int) -> bool:
        """Whether some crash of ``rank`` brings it back (a ``restart`` or ``restart_step``):
        a backend then keeps a way for it to rejoin."""
        return any(c.rank == rank and c.restarts for c in self.crashes) or any(
            c.covers(rank) and c.restarts for c in self.random_crashes
        )
