"""``"name:key=value,..."`` strings: a strategy, an optimizer or a schedule as a command
line writes it, taken the same way by ``sim.run``, ``real.run`` and ``commsim real``.

Values read as the command line reads them: ``8`` is an int, ``0.5`` a float, ``true`` and
``false`` booleans, ``none`` None, anything else text (``ssp``, ``1Gbps``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["parse_spec", "spec_value"]


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
