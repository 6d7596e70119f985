"""The events of a fault schedule, as frozen dataclasses: what happens, to whom, when.

Each event checks what it can alone (one of ``step`` or ``at``, ``until`` after ``at``, a
factor in its range) and raises :class:`~faults.errors.FaultError` naming the field; what needs
the run (the ranks, the links, ``steps``) is checked by :class:`faults.schedule.FaultSchedule`.
Times are seconds: simulated in ``sim``, wall-clock on ``real``. Steps are global steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from faults.draws import DISTRIBUTIONS, Distribution, uptimes
from faults.errors import FaultError

__all__ = ["Crash", "Event", "LinkFault", "RandomCrashes", "Slow"]


def _time(field: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise FaultError(field, f"must be a non-negative number of seconds, not {value!r}")


def _window(at: float, until: float | None) -> None:
    _time("at", at)
    _time("until", until)
    if until is not None and until <= at:
        raise FaultError("until", f"must be after at ({at:g} s), not {until:g} s; or leave it out")


def _times(record: dict[str, Any], **times: float | None) -> dict[str, Any]:
    # The keys that are set, times as floats: what run.json holds, and what parses back.
    return {**record, **{k: float(v) for k, v in times.items() if v is not None}}


@dataclass(frozen=True)
class Crash:
    """Rank ``rank`` crashes at global step ``step`` or at time ``at`` (seconds), one of them.

    Its program is closed at once; it comes back ``restart`` seconds after the crash, or at
    global step ``restart_step``, with no state (a new process on ``real``), or never.

    Examples
    --------
    >>> Crash(rank=3, step=40, restart_step=60).record()
    {'kind': 'crash', 'rank': 3, 'step': 40, 'restart_step': 60}
    >>> Crash(rank=1, at=2.5, restart=5).record()
    {'kind': 'crash', 'rank': 1, 'at': 2.5, 'restart': 5.0}
    >>> Crash(rank=1, step=4, at=2.5)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: step: give step or at for a crash, not both
    """

    rank: int
    step: int | None = None
    at: float | None = None
    restart: float | None = None
    restart_step: int | None = None

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise FaultError("rank", f"must be 0 or more, not {self.rank}")
        if (self.step is None) == (self.at is None):
            what = "not both" if self.step is not None else "one of them (e.g. step=40)"
            raise FaultError("step", f"give step or at for a crash, {what}")
        if self.step is not None and self.step < 0:
            raise FaultError("step", f"must be 0 or more, not {self.step}")
        _time("at", self.at)
        _time("restart", self.restart)
        if self.restart is not None and self.restart_step is not None:
            raise FaultError("restart", "give restart (seconds) or restart_step, not both")
        if self.restart_step is not None and self.step is not None:
            if self.restart_step <= self.step:
                raise FaultError(
                    "restart_step",
                    f"must be after the crash's step ({self.step}), not {self.restart_step}",
                )
        elif self.restart_step is not None and self.restart_step < 0:
            raise FaultError("restart_step", f"must be 0 or more, not {self.restart_step}")

    @property
    def restarts(self) -> bool:
        """Whether the rank comes back."""
        return self.restart is not None or self.restart_step is not None

    def record(self) -> dict[str, Any]:
        """The event as plain JSON (the keys that are set), which parses back to it."""
        out: dict[str, Any] = {"kind": "crash", "rank": self.rank}
        if self.step is not None:
            out["step"] = self.step
        out = _times(out, at=self.at, restart=self.restart)
        if self.restart_step is not None:
            out["restart_step"] = self.restart_step
        return out


@dataclass(frozen=True)
class RandomCrashes:
    """Every rank of ``ranks`` (None: all) crashes after random uptimes of mean ``mtbf``
    seconds, drawn from the run's seed; it comes back ``restart`` seconds later, or never.

    Examples
    --------
    >>> crashes = RandomCrashes(mtbf=300, ranks=(0, 2), restart=10)
    >>> crashes.record()
    {'kind': 'crash', 'mtbf': 300.0, 'ranks': [0, 2], 'distribution': 'exponential', 'restart': 10.0}
    >>> from itertools import islice
    >>> list(islice(crashes.uptimes(7, 2), 3)) == list(islice(crashes.uptimes(7, 2), 3))
    True
    >>> RandomCrashes(mtbf=300, distribution="weibull")
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: shape: a weibull distribution needs a shape > 0 (e.g. shape=0.7)
    """

    mtbf: float
    ranks: tuple[int, ...] | None = None
    restart: float | None = None
    distribution: Distribution = "exponential"
    shape: float | None = None

    def __post_init__(self) -> None:
        if not (self.mtbf > 0 and math.isfinite(self.mtbf)):
            raise FaultError("mtbf", f"must be a positive number of seconds, not {self.mtbf!r}")
        if self.ranks is not None:
            if not self.ranks:
                raise FaultError("ranks", "is empty; list the ranks, or leave it out for all")
            if len(set(self.ranks)) < len(self.ranks):
                raise FaultError("ranks", f"lists a rank twice in {list(self.ranks)}; once each")
            if min(self.ranks) < 0:
                raise FaultError("ranks", f"must be 0 or more, not {min(self.ranks)}")
        _time("restart", self.restart)
        if self.distribution not in DISTRIBUTIONS:
            raise FaultError(
                "distribution",
                f"unknown distribution {self.distribution!r} (use {' or '.join(DISTRIBUTIONS)})",
            )
        if self.distribution == "exponential" and self.shape is not None:
            raise FaultError(
                "shape", 'only a weibull distribution has a shape; add distribution="weibull"'
            )
        if self.distribution == "weibull" and not (
            self.shape is not None and self.shape > 0 and math.isfinite(self.shape)
        ):
            raise FaultError("shape", "a weibull distribution needs a shape > 0 (e.g. shape=0.7)")

    @property
    def restarts(self) -> bool:
        """Whether a crashed rank comes back."""
        return self.restart is not None

    def covers(self, rank: int) -> bool:
        """Whether ``rank`` is one of the ranks that crash."""
        return self.ranks is None or rank in self.ranks

    def uptimes(self, seed: int, rank: int) -> Iterator[float]:
        """``rank``'s successive uptimes (seconds from its (re)start to its next crash), drawn
        from its own generator of the run's ``seed``: bit-identical on every call
        (:func:`faults.draws.uptimes`)."""
        return uptimes(self.mtbf, self.distribution, self.shape, seed, rank)

    def record(self) -> dict[str, Any]:
        """The event as plain JSON (the keys that are set), which parses back to it."""
        out: dict[str, Any] = {"kind": "crash", "mtbf": float(self.mtbf)}
        if self.ranks is not None:
            out["ranks"] = list(self.ranks)
        out["distribution"] = self.distribution
        if self.shape is not None:
            out["shape"] = float(self.shape)
        return _times(out, restart=self.restart)


@dataclass(frozen=True)
class LinkFault:
    """Link ``link`` (undirected; node names as strings) goes down (``"link_down"``) or keeps
    ``factor`` of its bandwidth (``"link_slow"``) from time ``at`` until ``until`` (None: the
    end of the run).

    Examples
    --------
    >>> fault = LinkFault("link_slow", ("s0", "h3"), at=1.0, until=3.0, factor=0.1)
    >>> fault.matches("h3", "s0"), fault.matches(0, 3)
    (True, False)
    >>> fault.record()
    {'kind': 'link_slow', 'link': ['s0', 'h3'], 'factor': 0.1, 'at': 1.0, 'until': 3.0}
    >>> LinkFault("link_down", ("s0", "h3"), at=1.0).record()
    {'kind': 'link_down', 'link': ['s0', 'h3'], 'at': 1.0}
    """

    kind: Literal["link_down", "link_slow"]
    link: tuple[str, str]
    at: float
    until: float | None = None
    factor: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("link_down", "link_slow"):
            raise FaultError("kind", f"a link fault is link_down or link_slow, not {self.kind!r}")
        if len(self.link) != 2 or self.link[0] == self.link[1]:
            raise FaultError(
                "link", f"must be two different nodes, e.g. ['s0', 'h3'], not {list(self.link)}"
            )
        _window(self.at, self.until)
        if self.kind == "link_down" and self.factor != 0.0:
            raise FaultError("factor", "a link_down has no factor; use link_slow for a slower link")
        if self.kind == "link_slow" and not (0.0 < self.factor <= 1.0):
            raise FaultError(
                "factor",
                f"is the bandwidth kept, in (0, 1], not {self.factor!r}; a link_down for 0",
            )

    def matches(self, a: object, b: object) -> bool:
        """Whether the link between nodes ``a`` and ``b`` (either order, compared as strings) is
        this event's."""
        return {str(a), str(b)} == set(self.link)

    def record(self) -> dict[str, Any]:
        """The event as plain JSON (the keys that are set), which parses back to it."""
        out: dict[str, Any] = {"kind": self.kind, "link": list(self.link)}
        if self.kind == "link_slow":
            out["factor"] = float(self.factor)
        return _times(out, at=self.at, until=self.until)


@dataclass(frozen=True)
class Slow:
    """Rank ``rank`` computes ``factor`` times slower (>= 1) from time ``at`` until ``until``
    (None: the end of the run): a transient straggler.

    Examples
    --------
    >>> Slow(rank=2, factor=4, at=1, until=2).record()
    {'kind': 'slow', 'rank': 2, 'factor': 4.0, 'at': 1.0, 'until': 2.0}
    >>> Slow(rank=2, factor=0.5, at=1)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: factor: is how many times longer compute takes, >= 1, not 0.5
    """

    rank: int
    factor: float
    at: float
    until: float | None = None

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise FaultError("rank", f"must be 0 or more, not {self.rank}")
        if not (self.factor >= 1.0 and math.isfinite(self.factor)):
            raise FaultError(
                "factor", f"is how many times longer compute takes, >= 1, not {self.factor!r}"
            )
        _window(self.at, self.until)

    def record(self) -> dict[str, Any]:
        """The event as plain JSON (the keys that are set), which parses back to it."""
        out = {"kind": "slow", "rank": self.rank, "factor": float(self.factor)}
        return _times(out, at=self.at, until=self.until)


#: Any event of a schedule.
Event = Crash | RandomCrashes | LinkFault | Slow
