"""One event as a person writes it (a dict from Python, TOML or JSON) to its dataclass: the
kind, the keys, each value's type and unit; errors name the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from faults.draws import DISTRIBUTIONS
from faults.errors import FaultError
from faults.events import Crash, Event, LinkFault, RandomCrashes, Slow
from options.spec import did_you_mean
from topologies.units import UnitError, parse_time

__all__ = ["KINDS", "read_event"]

#: The kinds of event; a ``crash`` with an ``mtbf`` is random crashes.
KINDS = ("crash", "link_down", "link_slow", "slow")

# Each form's keys, the required ones first (their count in _REQUIRED), and an example.
_KEYS: dict[str, tuple[str, ...]] = {
    "crash": ("kind", "rank", "step", "at", "restart", "restart_step"),
    "random crashes": ("kind", "mtbf", "ranks", "restart", "distribution", "shape"),
    "link_down": ("kind", "link", "at", "until"),
    "link_slow": ("kind", "link", "factor", "at", "until"),
    "slow": ("kind", "rank", "factor", "at", "until"),
}
_REQUIRED = {"crash": 2, "random crashes": 2, "link_down": 3, "link_slow": 4, "slow": 4}
_EXAMPLE = {
    "crash": '{"kind": "crash", "rank": 3, "step": 40}',
    "random crashes": '{"kind": "crash", "mtbf": "300s", "restart": "10s"}',
    "link_down": '{"kind": "link_down", "link": ["s0", "h3"], "at": "1s", "until": "3s"}',
    "link_slow": '{"kind": "link_slow", "link": ["s0", "h3"], "factor": 0.1, "at": "1s"}',
    "slow": '{"kind": "slow", "rank": 2, "factor": 4, "at": "1s", "until": "2s"}',
}


def _whole(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise FaultError(field, f"must be a whole number, not {value!r}")
    return int(value)


def _seconds(value: Any, field: str) -> float:
    try:
        return parse_time(value)
    except UnitError as exc:
        raise FaultError(field, str(exc)) from None


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise FaultError(field, f"must be a number, not {value!r}")
    return float(value)


def _ranks(value: Any, field: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise FaultError(field, f"must be a list of ranks, e.g. [0, 2], not {value!r}")
    return tuple(_whole(rank, f"{field}[{i}]") for i, rank in enumerate(value))


def _link(value: Any, field: str) -> tuple[str, str]:
    names = value if isinstance(value, list | tuple) else None
    if (
        names is None
        or len(names) != 2
        or any(isinstance(n, bool) or not isinstance(n, str | Integral) for n in names)
    ):
        raise FaultError(field, f"must be a pair of node names, e.g. ['s0', 'h3'], not {value!r}")
    return str(names[0]), str(names[1])


def _distribution(value: Any, field: str) -> Any:
    if value not in DISTRIBUTIONS:
        raise FaultError(
            field,
            f"unknown distribution {value!r} (use {' or '.join(DISTRIBUTIONS)})"
            + did_you_mean(str(value), DISTRIBUTIONS),
        )
    return value


_READ: dict[str, Callable[[Any, str], Any]] = {
    "rank": _whole,
    "step": _whole,
    "restart_step": _whole,
    "at": _seconds,
    "until": _seconds,
    "restart": _seconds,
    "mtbf": _seconds,
    "factor": _number,
    "shape": _number,
    "ranks": _ranks,
    "link": _link,
    "distribution": _distribution,
}
_BUILD: dict[str, Callable[..., Event]] = {
    "crash": Crash,
    "random crashes": RandomCrashes,
    "link_down": lambda **kw: LinkFault("link_down", **kw),
    "link_slow": lambda **kw: LinkFault("link_slow", **kw),
    "slow": Slow,
}


def read_event(raw: object, field: str) -> Event:
    """The event a dict describes, checked alone (not yet against the run's ranks and links).

    Parameters
    ----------
    raw
        ``{"kind": ..., ...}`` with times as numbers (seconds) or strings (``"2.5s"``).
    field
        Where it was given (``"faults[2]"``): errors start with it.

    Raises
    ------
    FaultError
        One line naming the key (``faults[2].until: ...``) and the fix.

    Examples
    --------
    >>> read_event({"kind": "crash", "rank": 3, "at": "2.5s", "restart": "5s"}, "faults[0]")
    Crash(rank=3, step=None, at=2.5, restart=5.0, restart_step=None)
    >>> read_event({"kind": "crash", "mtbf": "300s", "ranks": [0, 1]}, "faults[1]")
    RandomCrashes(mtbf=300.0, ranks=(0, 1), restart=None, distribution='exponential', shape=None)
    >>> read_event({"kind": "crash", "rank": 3, "stpe": 40}, "faults[2]")
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults[2].stpe: unknown key for a crash (keys: kind, rank, step, at, restart, restart_step); did you mean 'step'?
    """
    if not isinstance(raw, Mapping):
        raise FaultError(
            field, f"an event is a dict with a kind, e.g. {_EXAMPLE['crash']}; not {raw!r}"
        )
    if "kind" not in raw:
        raise FaultError(f"{field}.kind", f"missing; say which of {', '.join(KINDS)}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise FaultError(
            f"{field}.kind",
            f"unknown kind {kind!r} (kinds: {', '.join(KINDS)}){did_you_mean(str(kind), KINDS)}",
        )
    form = "random crashes" if kind == "crash" and "mtbf" in raw else kind
    keys = _KEYS[form]
    for key in raw:
        if key not in keys:
            what = form if form == "random crashes" else f"a {form}"
            raise FaultError(
                f"{field}.{key}",
                f"unknown key for {what} (keys: {', '.join(keys)}){did_you_mean(str(key), keys)}",
            )
    # None (JSON's null) is a key not given, as the dataclasses' defaults are.
    given = {key: value for key, value in raw.items() if value is not None and key != "kind"}
    for key in keys[1 : _REQUIRED[form]]:
        if key not in given:
            raise FaultError(f"{field}.{key}", f"missing; write e.g. {_EXAMPLE[form]}")
    values = {key: _READ[key](value, f"{field}.{key}") for key, value in given.items()}
    try:
        return _BUILD[form](**values)
    except FaultError as exc:
        raise exc.under(field) from None
