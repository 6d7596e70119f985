"""``"name:key=value,..."`` strings for strategies, optimizers and schedules: the one grammar
(:mod:`options.spec`, which topologies and experiment files read too), and the check of a
spec's options against what a strategy takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from options.spec import did_you_mean, parse_spec, spec_value

__all__ = ["check_arguments", "did_you_mean", "parse_spec", "spec_value"]


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
