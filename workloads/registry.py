"""Workloads by name, so configs and the CLI can say ``workload: mlp_digits``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from options.spec import did_you_mean
from workloads.acrobot import acrobot
from workloads.base import Workload
from workloads.cartpole import cartpole
from workloads.custom import custom
from workloads.digits import cnn_digits, mlp_digits
from workloads.logistic_regression import logistic_regression
from workloads.presets import gpt2_small, gpt2_xl, llama3_8b, llama3_70b
from workloads.quadratic import quadratic
from workloads.resnet import resnet50
from workloads.tiny_transformer import tiny_transformer
from workloads.transformer import transformer

__all__ = ["builder", "get", "names", "register"]

_BUILDERS: dict[str, Callable[..., Workload]] = {
    "quadratic": quadratic,
    "logistic_regression": logistic_regression,
    "mlp_digits": mlp_digits,
    "cnn_digits": cnn_digits,
    "tiny_transformer": tiny_transformer,
    "custom": custom,
    # Sizes of the field (issue 25): for timing-only runs and estimates (docs/scale.md).
    "transformer": transformer,
    "gpt2_small": gpt2_small,
    "gpt2_xl": gpt2_xl,
    "llama3_8b": llama3_8b,
    "llama3_70b": llama3_70b,
    "resnet50": resnet50,
    # Reinforcement learning (issue 26): rollouts of Gymnasium's environments, A2C's loss.
    "cartpole": cartpole,
    "acrobot": acrobot,
}


def names() -> list[str]:
    """Registered workload names, sorted.

    Examples
    --------
    >>> names()[:5]  # the built-ins (a plugin's, registered later, sort among them)
    ['acrobot', 'cartpole', 'cnn_digits', 'custom', 'gpt2_small']
    """
    return sorted(_BUILDERS)


def register(name: str, builder: Callable[..., Workload]) -> None:
    """Make ``get(name, **kwargs)`` call ``builder(**kwargs)``; names cannot be reused."""
    if name in _BUILDERS:
        raise ValueError(f"workload {name!r} is already registered; choose another name")
    _BUILDERS[name] = builder


def builder(name: str) -> Callable[..., Workload]:
    """The function that builds workload ``name`` (its declared options, ``options.declare``,
    are the schema).

    Examples
    --------
    >>> builder("mlp_digits").__name__
    'mlp_digits'
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"unknown workload {name!r}{did_you_mean(name, names()) or ';'} choose one of "
            f"{', '.join(names())}"
        )
    return _BUILDERS[name]


def get(name: str, **kwargs: Any) -> Workload:
    """Build the workload ``name`` with keyword arguments for its builder.

    Examples
    --------
    >>> get("mlp_digits", batch_size=32, partition="dirichlet", alpha=0.5)
    Workload(name='mlp_digits', batch_size=32, partition='dirichlet(alpha=0.5)', ...)
    >>> get("mlp_digit")
    Traceback (most recent call last):
    ValueError: unknown workload 'mlp_digit'; did you mean 'mlp_digits'? choose one of acrobot, ...
    >>> get("mlp_digits", batch_sise=8)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: mlp_digits has no argument 'batch_sise'; did you mean 'batch_size'? (valid: ...)
    """
    # A shipped builder checks its declared options (options.declare), naming the closest
    # valid one for a misspelt name; a registered one of your own is called as it is.
    workload = builder(name)(**kwargs)
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
