"""Strategy names for config files: ``get("parameter_server", mode="async")``."""

from __future__ import annotations

from typing import Any, TypeVar

from strategies.base import Strategy
from strategies.specs import did_you_mean, parse_spec

__all__ = ["register", "get", "names", "options_markdown", "strategy_class"]

_REGISTRY: dict[str, type[Strategy]] = {}

S = TypeVar("S", bound=type[Strategy])


def register(cls: S) -> S:
    """Class decorator adding a strategy under its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} must set a non-empty class attribute 'name'")
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"strategy name {cls.name!r} is already registered; choose another name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Registered strategy names, sorted.

    Examples
    --------
    >>> "allreduce" in names() and "parameter_server" in names()
    True
    """
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name`` (its declared options are the schema).

    Examples
    --------
    >>> strategy_class("local_sgd").__name__
    'LocalSGD'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name, names()) or ";"
        raise ValueError(
            f"strategy {name!r} is unknown{hint} use one of: {', '.join(names())}"
        ) from None


def get(name: str | Strategy, **options: Any) -> Strategy:
    """Build a registered strategy by name, or by a spec as the command line writes it
    (``"local_sgd:period=8"``); a ``Strategy`` instance is returned as is.

    Examples
    --------
    >>> get("parameter_server", mode="ssp", staleness=2)
    ParameterServer(mode='ssp', staleness=2, servers=1, staleness_lr=None, backup_workers=0, timeout=None, checkpoint_every=None)
    >>> get("local_sgd:period=8")
    LocalSGD(period=8, warmup=0, initial_period=None, compression=None, algorithm='auto', fault_tolerance=None, min_replicas=1)
    >>> get("allredce")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: strategy 'allredce' is unknown; did you mean 'allreduce'? use one of: allreduce, ...
    >>> get("local_sgd:perod=3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    options.declare.OptionError: local_sgd has no argument 'perod'; did you mean 'period'? (valid: ...)
    """
    if isinstance(name, Strategy):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"strategy={name!r} must be a registered name or a Strategy instance "
            "(did you pass the class instead of an instance?)"
        )
    if ":" in name:
        name, given = parse_spec(name, "strategy")
        both = sorted(set(given) & set(options))
        if both:
            raise ValueError(
                f"strategy {name!r}: {', '.join(both)} given both in the spec and as arguments; "
                "give each once"
            )
        options = {**given, **options}
    # The class checks its options against its declaration (options.declare), naming the
    # closest valid one for a misspelt name.
    return strategy_class(name)(**options)


def options_markdown() -> str:
    """Every registered strategy's options as Markdown tables (name, default, what it takes),
    made from their declarations: ``docs/strategies.md`` holds this text between its
    ``options`` markers, and a test checks it is current.

    Examples
    --------
    >>> print(options_markdown())  # doctest: +ELLIPSIS
    ### `allreduce` (`AllReduceSGD`)
    <BLANKLINE>
    | option | default | takes |
    |---|---|---|
    | `algorithm` | `'auto'` | one of 'auto', 'ring', 'tree', 'halving_doubling', 'direct', 'hierarchical' |
    ...
    """
    from options.declare import option_fields, options_table

    parts = []
    for name in names():
        cls = _REGISTRY[name]
        table = options_table(cls) if option_fields(cls) else "(no declared options)"
        parts.append(f"### `{name}` (`{cls.__name__}`)\n\n{table}")
    return "\n\n".join(parts)
