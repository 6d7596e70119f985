"""Optimizers and learning-rate schedules named in configs, built for any parameter list.

A run names its optimizer once (``"sgd"``, ``{"name": "adam", "lr": 1e-3}``) and each role
builds its own instance: every all-reduce replica, every parameter-server shard. A callable
``params -> torch.optim.Optimizer`` is accepted too, so any torch optimizer works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch

from options.declare import OptionError
from strategies.specs import did_you_mean, parse_spec

__all__ = ["MAX_LR", "OPTIMIZERS", "SCHEDULES", "OptimizerSpec", "ScheduleSpec"]

#: The largest learning rate accepted: far above any that trains (1 to 10 already diverge on
#: most models), far below one that overflows float32 parameters on the first step.
MAX_LR = 1e3

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}


def _constant(step: int, total: int, **_: float) -> float:
    return 1.0


def _step_decay(step: int, total: int, *, every: float = 100, gamma: float = 0.1) -> float:
    return gamma ** (step // int(every))


#: Allowed ranges of schedule options: (lowest, highest, lowest excluded).
_OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "every": (1, math.inf, False),
    "gamma": (0, 1, True),
    "warmup": (0, math.inf, False),
    "floor": (0, 1, False),
}


def _cosine(step: int, total: int, *, warmup: float = 0, floor: float = 0.0) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _warmup(step: int, total: int, *, warmup: float = 100) -> float:
    return min(1.0, (step + 1) / warmup)


#: Learning-rate multipliers by name: ``f(step, total_steps, **options) -> factor``.
SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": _constant,
    "step": _step_decay,
    "cosine": _cosine,
    "warmup": _warmup,
}

OptimizerLike = Union[str, Mapping[str, Any], Callable[..., torch.optim.Optimizer], "OptimizerSpec"]


@dataclass(frozen=True)
class ScheduleSpec:
    """A named learning-rate schedule: the factor applied to the base lr at each update.

    Examples
    --------
    >>> s = ScheduleSpec.parse({"name": "step", "every": 2, "gamma": 0.5})
    >>> [s.factor(i, 10) for i in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    name: str = "constant"
    options: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | ScheduleSpec | None) -> ScheduleSpec:
        if spec is None:
            return cls()
        if isinstance(spec, ScheduleSpec):
            return spec
        if isinstance(spec, str):  # "cosine" or, as the command line writes it, "cosine:warmup=10"
            name, options = parse_spec(spec, "lr_schedule")
            spec = {"name": name, **options}
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"lr_schedule={spec!r} must be a name or a mapping like {{'name': 'cosine'}}"
            )
        options = dict(spec)
        name = options.pop("name", "constant")
        if name not in SCHEDULES:
            raise ValueError(
                f"lr_schedule name={name!r} is unknown; use one of {', '.join(SCHEDULES)}"
            )
        for key, value in options.items():
            low, high, open_low = _OPTION_RANGES.get(key, (-math.inf, math.inf, False))
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)  # a warmup of inf steps trains at lr 0, silently
            if not ok or not (value > low if open_low else value >= low) or value > high:
                raise ValueError(
                    f"lr_schedule {name}.{key}={value!r} must be a number in "
                    f"{'(' if open_low else '['}{low:g}, {high:g}]"
                )
        try:
            SCHEDULES[name](0, 1, **options)
        except TypeError:
            raise ValueError(
                f"lr_schedule {name!r} got options {sorted(options)}; check its parameters"
            ) from None
        return cls(name, options)

    def factor(self, step: int, total: int) -> float:
        return float(SCHEDULES[self.name](step, total, **self.options))


def _check_names(name: str, options: Mapping[str, Any]) -> None:
    """Refuse an option the torch optimizer does not take, naming the closest one: the
    optimizer's own ``defaults`` list every hyperparameter it has.

    Examples
    --------
    >>> _check_names("sgd", {"lrr": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    options.declare.OptionError: optimizer 'sgd' has no option 'lrr'; did you mean 'lr'? (valid: lr, momentum, ...)
    """
    build: Callable[..., torch.optim.Optimizer] = OPTIMIZERS[name]
    valid = list(build([torch.nn.Parameter(torch.zeros(1))], lr=0.1).defaults)
    for key in options:
        if key not in valid:
            raise OptionError(
                f"optimizer {name!r} has no option {key!r}{did_you_mean(key, valid)} "
                f"(valid: {', '.join(valid)})",
                key,
            )


def _check_numbers(name: str, options: Mapping[str, Any]) -> None:
    """NaN and infinite options, and a learning rate no model trains with, named (torch
    accepts NaN, and an lr of 1e308 fails only at the first update, as an overflow)."""
    for key, value in options.items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        for number in values:
            if isinstance(number, float) and not math.isfinite(number):
                raise OptionError(
                    f"optimizer {name!r} option {key}={value!r} must be a finite number", key
                )
    lr = options.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > MAX_LR:
        raise OptionError(
            f"optimizer {name!r} option lr={lr!r} is over {MAX_LR:g}, more than any model "
            "trains with; typical values are 1e-4 to 1",
            "lr",
        )


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer to build, validated once, built per role.

    Parameters
    ----------
    name
        A key of :data:`OPTIMIZERS` (ignored when ``factory`` is given).
    options
        Keyword arguments of the torch optimizer (``lr``, ``momentum``, ``weight_decay`` ...).
    factory
        Optional ``params -> Optimizer`` callable for optimizers not in the table.

    Examples
    --------
    >>> spec = OptimizerSpec.parse({"name": "sgd", "lr": 0.5, "momentum": 0.9})
    >>> opt = spec.build([torch.nn.Parameter(torch.zeros(2))])
    >>> type(opt).__name__, opt.defaults["momentum"]
    ('SGD', 0.9)
    """

    name: str = "sgd"
    options: dict[str, Any] = field(default_factory=lambda: {"lr": 0.1})
    factory: Callable[..., torch.optim.Optimizer] | None = None

    @classmethod
    def parse(cls, spec: OptimizerLike | None) -> OptimizerSpec:
        if spec is None:
            return cls()
        if isinstance(spec, OptimizerSpec):
            return spec
        if callable(spec) and not isinstance(spec, str):
            return cls(name=getattr(spec, "__name__", "custom"), options={}, factory=spec)
        if isinstance(spec, str):  # "sgd" or, as the command line writes it, "sgd:lr=0.1"
            name, options = parse_spec(spec, "optimizer")
            spec = {"name": name, **options}
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"optimizer={spec!r} must be a name, a mapping like {{'name': 'sgd', 'lr': 0.1}}, "
                "or a callable params -> torch.optim.Optimizer"
            )
        options = dict(spec)
        name = str(options.pop("name", "sgd")).lower()
        if name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer name={name!r} is unknown; use one of {', '.join(OPTIMIZERS)}"
            )
        options.setdefault("lr", 0.1 if name == "sgd" else 1e-3)
        _check_names(name, options)
        _check_numbers(name, options)
        try:  # fail at configuration time, naming the option, not deep inside a run
            OPTIMIZERS[name]([torch.nn.Parameter(torch.zeros(1))], **options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"optimizer {name!r} rejected options {options}: {exc}") from None
        return cls(name=name, options=options)

    @property
    def lr(self) -> float | None:
        return self.options.get("lr")

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.factory is not None:
            return self.factory(params)
        return OPTIMIZERS[self.name](params, **self.options)
