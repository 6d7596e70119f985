"""Bandwidth and time units: parse "100Gbps" / "2us" into SI floats, and format them back.

Everything inside commsim is a plain float in **bytes per second** and **seconds**; strings with
units exist only at the edges (builders, config files, the CLI) and are parsed here.

Units are case-sensitive, because case is what tells bits from bytes:

* bits per second (decimal steps): ``bps Kbps Mbps Gbps Tbps`` and ``b/s Kb/s Mb/s Gb/s Tb/s``
  (``kbps`` / ``kb/s`` with a lower-case SI ``k`` are accepted too);
* bytes per second (decimal steps): ``B/s KB/s MB/s GB/s TB/s`` (and ``kB/s``);
* bytes per second (binary steps): ``KiB/s MiB/s GiB/s TiB/s``;
* times: ``ns us µs ms s``.

Anything else is an error, notably ``"100G"`` (no unit), ``"10 gbps"`` (wrong case) and
``"10GBps"`` (bits or bytes? people write it for both). A plain number, or a string holding
only a number, is taken as bytes/s or seconds. A bandwidth must be positive; a time may be zero.
"""

from __future__ import annotations

import math
import re
from numbers import Real

__all__ = [
    "BANDWIDTH_UNITS",
    "TIME_UNITS",
    "UnitError",
    "format_bandwidth",
    "format_time",
    "parse_bandwidth",
    "parse_time",
]


class UnitError(ValueError):
    """A bandwidth or time value that cannot be parsed (bad unit, negative, NaN or infinite);
    ``field`` is the parameter it was given for, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _decimal_bits() -> dict[str, float]:
    units: dict[str, float] = {}
    for prefix, scale in [("", 1.0), ("K", 1e3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)]:
        units[f"{prefix}bps"] = scale / 8
        units[f"{prefix}b/s"] = scale / 8
    return units


#: Bytes per second in one of each bandwidth unit.
BANDWIDTH_UNITS: dict[str, float] = {
    **_decimal_bits(),
    "B/s": 1.0,
    "KB/s": 1e3,
    "kB/s": 1e3,
    "MB/s": 1e6,
    "GB/s": 1e9,
    "TB/s": 1e12,
    "KiB/s": 2.0**10,
    "MiB/s": 2.0**20,
    "GiB/s": 2.0**30,
    "TiB/s": 2.0**40,
}

#: Seconds in one of each time unit (both micro signs, U+00B5 and U+03BC, are accepted).
TIME_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
}

_VALUE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity))"
    r"\s*(\S*)\s*$",
    re.IGNORECASE,
)

# Shown in error messages: one spelling per unit, bits then bytes.
_BANDWIDTH_HELP = (
    "bps Kbps Mbps Gbps Tbps, b/s Kb/s Mb/s Gb/s Tb/s (bits); "
    "B/s KB/s MB/s GB/s TB/s, KiB/s MiB/s GiB/s TiB/s (bytes)"
)
_TIME_HELP = "ns us µs ms s"


def _parse(value: object, what: str, units: dict[str, float], valid: str, bare: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (Real, str)):
        raise UnitError(f"bad {what} {value!r}: expected a number or a string like {bare}")
    if isinstance(value, Real):
        number, unit, scale = float(value), "", 1.0
    else:
        match = _VALUE.match(value)
        if match is None:
            raise UnitError(
                f"bad {what} {value!r}: expected a number followed by a unit; valid units: {valid}"
            )
        number, unit = float(match.group(1)), match.group(2)
        if unit and unit not in units:
            raise UnitError(
                f"bad {what} {value!r}: unknown unit {unit!r}; valid units: {valid} "
                "(case-sensitive; a plain number means " + _plain(what) + ")"
            )
        scale = units.get(unit, 1.0)
    if math.isnan(number) or math.isinf(number):
        raise UnitError(f"bad {what} {value!r}: must be finite")
    if number < 0 or (what == "bandwidth" and number == 0):
        sign = "positive" if what == "bandwidth" else "non-negative"
        raise UnitError(f"bad {what} {value!r}: must be {sign}")
    # Dividing by an exact integer (1e9 for ns) rounds once, so "500ns" gives exactly 5e-07.
    return number * scale if scale >= 1 else number / round(1 / scale)


def _plain(what: str) -> str:
    return "bytes/s" if what == "bandwidth" else "seconds"


def parse_bandwidth(value: str | float) -> float:
    """Return a bandwidth in bytes per second.

    Parameters
    ----------
    value : str or float
        A number (bytes/s) or a string such as ``"100Gbps"``, ``"25 GB/s"`` or ``"1GiB/s"``.

    Raises
    ------
    UnitError
        For an unknown or ambiguous unit, a non-positive, NaN or infinite value.

    Examples
    --------
    >>> parse_bandwidth("100Gbps")
    12500000000.0
    >>> parse_bandwidth("25 GB/s")
    25000000000.0
    >>> parse_bandwidth("1KiB/s"), parse_bandwidth(512), parse_bandwidth("1e3")
    (1024.0, 512.0, 1000.0)
    >>> parse_bandwidth("10GBps")
    Traceback (most recent call last):
    ...
    topologies.units.UnitError: bad bandwidth '10GBps': unknown unit 'GBps'; valid units: ...
    """
    return _parse(value, "bandwidth", BANDWIDTH_UNITS, _BANDWIDTH_HELP, "'100Gbps'")


def parse_time(value: str | float) -> float:
    """Return a duration in seconds.

    Parameters
    ----------
    value : str or float
        A number (seconds) or a string such as ``"2us"``, ``"1.5 ms"`` or ``"500ns"``.

    Raises
    ------
    UnitError
        For an unknown unit, a negative, NaN or infinite value.

    Examples
    --------
    >>> parse_time("2us")
    2e-06
    >>> parse_time("1.5 ms"), parse_time("µs".join(["3", ""])), parse_time(0.25)
    (0.0015, 3e-06, 0.25)
    >>> parse_time("-1s")
    Traceback (most recent call last):
    ...
    topologies.units.UnitError: bad time '-1s': must be non-negative
    """
    return _parse(value, "time", TIME_UNITS, _TIME_HELP, "'2us'")


def _number(x: float) -> str:
    # Four significant digits; whole numbers from 10^4 up rather than exponent notation.
    return f"{x:.4g}" if x < 1e4 else f"{x:.0f}"


def _format(
    x: float, what: str, steps: list[tuple[str, float]], unit: str | None, units: dict[str, float]
) -> str:
    parse = parse_bandwidth if what == "bandwidth" else parse_time
    x = parse(x)
    if unit is not None:
        if unit not in units:
            raise UnitError(f"bad {what} unit {unit!r}; valid units: {', '.join(units)}")
        return f"{_number(x / units[unit])}{unit}"
    for name, scale in reversed(steps):
        if x >= scale * (1 - 5e-5):
            return f"{_number(x / scale)}{name}"
    name, scale = steps[0]
    return f"{_number(x / scale)}{name}"


def format_bandwidth(x: float, unit: str | None = None) -> str:
    """Format bytes per second for people, in bits/s by default (the unit links are sold in).

    Parameters
    ----------
    x : float
        Bandwidth in bytes/s.
    unit : str, optional
        Force one unit from :data:`BANDWIDTH_UNITS`, e.g. ``"GB/s"``.

    Examples
    --------
    >>> format_bandwidth(12.5e9)
    '100Gbps'
    >>> format_bandwidth(300e9, unit="GB/s")
    '300GB/s'
    >>> parse_bandwidth(format_bandwidth(1234.5))
    1234.5
    """
    steps = [
        ("bps", 1 / 8),
        ("Kbps", 1e3 / 8),
        ("Mbps", 1e6 / 8),
        ("Gbps", 1e9 / 8),
        ("Tbps", 1e12 / 8),
    ]
    return _format(x, "bandwidth", steps, unit, BANDWIDTH_UNITS)


def format_time(x: float, unit: str | None = None) -> str:
    """Format seconds for people, choosing ns, us, ms or s.

    Parameters
    ----------
    x : float
        Duration in seconds.
    unit : str, optional
        Force one unit from :data:`TIME_UNITS`.

    Examples
    --------
    >>> format_time(2e-6), format_time(0.0015), format_time(3.0), format_time(0)
    ('2us', '1.5ms', '3s', '0ns')
    >>> format_time(2e-6, unit="ns")
    '2000ns'
    """
    steps = [("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)]
    return _format(x, "time", steps, unit, TIME_UNITS)
