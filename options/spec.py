"""``"name:key=value,..."`` strings: a strategy, a workload, an optimizer, a schedule or a
topology as a command line writes it. One grammar, read by ``sim.run``, ``real.run``,
``commsim``, ``topologies.from_spec`` and experiment files alike.

Values read as the command line reads them: ``8`` is an int, ``0.5`` a float, ``true`` and
``false`` booleans, ``none`` None, anything else text (``ssp``, ``1Gbps``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["SpecError", "did_you_mean", "parse_spec", "spec_value"]


class SpecError(ValueError):
    """A spec string that does not follow the grammar: one line naming the item and the fix."""


def spec_value(text: str) -> Any:
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, else the text.

    Examples
    --------
    >>> [spec_value(t) for t in ("8", "0.5", "True", "none", "ssp", "1e-5")]
    [8, 0.5, True, None, 'ssp', 1e-05]
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(
    spec: str, what: str, example: str = "local_sgd:period=8"
) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,..."`` -> ``(name, {key: value})``.

    Parameters
    ----------
    spec
        The string as written.
    what
        What it is (``"strategy"``, ``"--workload"``, ``"topology"``): errors start with it.
    example
        A well-formed spec of the same kind, shown in errors.

    Raises
    ------
    SpecError
        A ``ValueError``, one line: the bad item and the form to write.

    Examples
    --------
    >>> parse_spec("parameter_server:mode=ssp,staleness=2", "strategy")
    ('parameter_server', {'mode': 'ssp', 'staleness': 2})
    >>> parse_spec("star:n=4,bandwidth=1Gbps", "topology", "star:n=4")
    ('star', {'n': 4, 'bandwidth': '1Gbps'})
    >>> parse_spec("local_sgd:period", "strategy")
    Traceback (most recent call last):
    ...
    options.spec.SpecError: strategy: bad item 'period' in 'local_sgd:period'; write name:key=value,..., e.g. 'local_sgd:period=8'
    """
    if not isinstance(spec, str):
        raise SpecError(
            f"{what}: {spec!r} is not a spec; write name:key=value,..., e.g. {example!r}"
        )
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(
                f"{what}: bad item {item!r} in {spec!r}; write name:key=value,..., e.g. {example!r}"
            )
        if key.strip() in options:
            raise SpecError(f"{what}: {key.strip()!r} is given twice in {spec!r}; give it once")
        options[key.strip()] = spec_value(value.strip())
    if not name.strip():
        raise SpecError(f"{what}: {spec!r} has no name; e.g. {example!r}")
    return name.strip(), options


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``valid`` to a mistyped ``name``
    (:func:`difflib.get_close_matches`), or ``""`` when none is close.

    Examples
    --------
    >>> did_you_mean("perod", ["period", "warmup"]), did_you_mean("zzz", ["period"])
    ("; did you mean 'period'?", '')
    """
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
