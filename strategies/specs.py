"""``"name:key=value,..."`` strings: a strategy, an optimizer or a schedule as a command
line writes it, taken the same way by ``sim.run``, ``real.run`` and ``commsim real``.

Values read as the command line reads them: ``8`` is an int, ``0.5`` a float, ``true`` and
``false`` booleans, ``none`` None, anything else text (``ssp``, ``1Gbps``).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["check_arguments", "did_you_mean", "parse_spec", "spec_value"]


def spec_value(text: str) -> Any:
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, else the text.

    Examples
    --------
    >>> [spec_value(t) for t in ("8", "0.5", "True", "none", "ssp")]
    [8, 0.5, True, None, 'ssp']
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


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,..."`` -> ``(name, {key: value})``; ``what`` names the argument in
    errors.

    Examples
    --------
    >>> parse_spec("parameter_server:mode=ssp,staleness=2", "strategy")
    ('parameter_server', {'mode': 'ssp', 'staleness': 2})
    >>> parse_spec("local_sgd:period", "strategy")
    Traceback (most recent call last):
    ...
    ValueError: strategy: bad item 'period' in 'local_sgd:period'; write name:key=value,..., e.g. 'local_sgd:period=8'
    """
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(
                f"{what}: bad item {item!r} in {spec!r}; write name:key=value,..., e.g. "
                "'local_sgd:period=8'"
            )
        options[key.strip()] = spec_value(value.strip())
    if not name.strip():
        raise ValueError(f"{what}: {spec!r} has no name; e.g. 'allreduce' or 'local_sgd:period=8'")
    return name.strip(), options


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``valid`` to a mistyped ``name``
    (:func:`difflib.get_close_matches`), or ``""`` when none is close.

    Examples
    --------
    >>> did_you_mean("perod", ["period", "warmup"]), did_you_mean("zzz", ["period"])
    ("; did you mean 'period'?", '')
    """
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_arguments(what: str, fn: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Refuse an option ``fn`` (a class or a builder) has no parameter for, before calling it,
    with the closest parameter's name (a constructor's own ``TypeError`` names none).

    Examples
    --------
    >>> from strategies.local_sgd import LocalSGD
    >>> check_arguments("strategy 'local_sgd'", LocalSGD, {"perod": 3})
    Traceback (most recent call last):
    ...
    ValueError: strategy 'local_sgd' has no argument 'perod'; did you mean 'period'? (valid: period, warmup, initial_period, compression, algorithm)
    """
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: the call itself will say
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [n for n, p in parameters.items() if p.kind is not p.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            raise ValueError(
                f"{what} has no argument {key!r}{did_you_mean(key, valid)} "
                f"(valid: {', '.join(valid)})"
            )
