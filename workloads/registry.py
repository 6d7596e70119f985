"""Workloads by name, so configs and the CLI can say ``workload: mlp_digits``."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from workloads.base import Workload
from workloads.custom import custom
from workloads.digits import cnn_digits, mlp_digits
from workloads.logistic_regression import logistic_regression
from workloads.quadratic import quadratic
from workloads.tiny_transformer import tiny_transformer

__all__ = ["builder", "get", "names", "register"]

_BUILDERS: dict[str, Callable[..., Workload]] = {
    "quadratic": quadratic,
    "logistic_regression": logistic_regression,
    "mlp_digits": mlp_digits,
    "cnn_digits": cnn_digits,
    "tiny_transformer": tiny_transformer,
    "custom": custom,
}


def names() -> list[str]:
    """Registered workload names, sorted.

    Examples
    --------
    >>> names()
    ['cnn_digits', 'custom', 'logistic_regression', 'mlp_digits', 'quadratic', 'tiny_transformer']
    """
    return sorted(_BUILDERS)


def register(name: str, builder: Callable[..., Workload]) -> None:
    """Make ``get(name, **kwargs)`` call ``builder(**kwargs)``; names cannot be reused."""
    if name in _BUILDERS:
        raise ValueError(f"workload {name!r} is already registered; choose another name")
    _BUILDERS[name] = builder


def builder(name: str) -> Callable[..., Workload]:
    """The function that builds workload ``name`` (its signature is the options' schema).

    Examples
    --------
    >>> builder("mlp_digits").__name__
    'mlp_digits'
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"unknown workload {name!r}{_did_you_mean(name, names()) or ';'} choose one of "
            f"{', '.join(names())}"
        )
    return _BUILDERS[name]


def _did_you_mean(name: str, valid: Any) -> str:
    # As strategies.specs.did_you_mean (workloads do not depend on strategies).
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def get(name: str, **kwargs: Any) -> Workload:
    """Build the workload ``name`` with keyword arguments for its builder.

    Examples
    --------
    >>> get("mlp_digits", batch_size=32, partition="dirichlet", alpha=0.5)
    Workload(name='mlp_digits', batch_size=32, partition='dirichlet(alpha=0.5)', ...)
    >>> get("mlp_digit")
    Traceback (most recent call last):
    ValueError: unknown workload 'mlp_digit'; did you mean 'mlp_digits'? choose one of cnn_digits, ...
    >>> get("mlp_digits", batch_sise=8)
    Traceback (most recent call last):
    ...
    ValueError: unknown argument batch_sise for workload 'mlp_digits'; did you mean 'batch_size'? (valid: ...)
    """
    build = builder(name)
    params = inspect.signature(build).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(
                f"unknown argument {unknown[0]} for workload {name!r}"
                f"{_did_you_mean(unknown[0], params)} (valid: {', '.join(params)})"
            )
    workload = build(**kwargs)
    workload.spec = {"name": name, **{k: _describe(v) for k, v in kwargs.items()}}
    return workload


def _describe(value: Any) -> Any:
    """A JSON-friendly, deterministic stand-in for an argument (no memory addresses).

    Examples
    --------
    >>> import torch
    >>> _describe((torch.zeros(3, 2), torch.zeros(3))), _describe(len)
    (['tensor(3, 2)', 'tensor(3,)'], 'builtins.len')
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__.lower()}{tuple(shape)}"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return type(value).__name__
