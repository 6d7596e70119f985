"""A run's evaluation metric and its target, the same in both backends and in every figure.

A workload declares which key of its evaluation is the headline and which way is better
(``Workload.metric``, ``Workload.maximize``): a held-out ``"loss"``, lower is better, for
supervised workloads; a policy's mean episodic ``"return"``, higher is better, for
reinforcement learning. A run's target is a level of that metric (``target_loss``,
``target_return``): it is reached at the first evaluation at or past it, and the run stops
there with the stop reason ``target_<metric>``.

Examples
--------
>>> Metric("return", maximize=True).reached(201.0, 195.0), LOSS.reached(0.6, 0.5)
(True, False)
>>> check_target(Metric("return", True), target_return=195)
Target(metric=Metric(name='return', maximize=True), value=195)
>>> check_target(LOSS, target_return=195, workload="quadratic")
Traceback (most recent call last):
...
ValueError: target_return=195: workload 'quadratic' is evaluated by its held-out loss (lower is better), not a return; give target_loss instead
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["LOSS", "TARGET_OPTIONS", "Metric", "Target", "check_target", "metric_of", "target_of"]


@dataclass(frozen=True)
class Metric:
    """An evaluation key and its direction (``maximize``: higher is better)."""

    name: str = "loss"
    maximize: bool = False

    @property
    def target_key(self) -> str:
        """The target's name: the run's argument, ``run.json``'s key and the stop reason.

        >>> LOSS.target_key, Metric("return", True).target_key
        ('target_loss', 'target_return')
        """
        return f"target_{self.name}"

    @property
    def comparison(self) -> str:
        """``≥`` or ``≤``: how a value reaches a target, as figures write it."""
        return "≥" if self.maximize else "≤"

    @property
    def described(self) -> str:
        """The metric in words, as errors and axis labels say it.

        >>> LOSS.described, Metric("return", True).described
        ('held-out loss (lower is better)', 'mean return (higher is better)')
        """
        what = {"loss": "held-out loss", "return": "mean return"}.get(self.name, self.name)
        return f"{what} ({'higher' if self.maximize else 'lower'} is better)"

    def reached(self, value: float, level: float) -> bool:
        """Whether ``value`` is at ``level`` or past it (NaN never is; infinities compare)."""
        if math.isnan(value):
            return False
        return value >= level if self.maximize else value <= level

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values`` (NaN when none is finite).

        >>> Metric("return", True).best([1.0, float("nan"), 3.0]), LOSS.best([])
        (3.0, nan)
        """
        finite = [float(v) for v in values if math.isfinite(v)]
        if not finite:
            return math.nan
        return max(finite) if self.maximize else min(finite)


#: What supervised workloads report, and runs recorded before metrics had a name.
LOSS = Metric()

#: The target options, by the metric each is a level of.
TARGET_OPTIONS = {"loss": "target_loss", "return": "target_return"}


def metric_of(workload: Any) -> Metric:
    """The metric ``workload`` declares (a workload of your own that declares none: loss)."""
    name = getattr(workload, "metric", "loss")
    maximize = getattr(workload, "maximize", False)
    if not isinstance(name, str) or not name or not isinstance(maximize, bool):
        raise ValueError(
            f"workload {getattr(workload, 'name', workload)!r} declares metric={name!r}, "
            f"maximize={maximize!r}; give metric a key of its evaluate() result and maximize "
            "True or False"
        )
    return Metric(name, maximize)


@dataclass(frozen=True)
class Target:
    """A level of ``metric`` that stops the run once an evaluation reaches it."""

    metric: Metric
    value: float

    @property
    def key(self) -> str:
        """``target_loss`` or ``target_return``: the option, the record's key, the stop."""
        return self.metric.target_key

    def reached(self, value: float) -> bool:
        """Whether an evaluation's ``value`` of the metric reaches the target."""
        return self.metric.reached(value, self.value)


def check_target(
    metric: Metric,
    *,
    target_loss: Any = None,
    target_return: Any = None,
    workload: str = "the workload",
) -> Target | None:
    """The run's target from its options, checked against the workload's ``metric``; a
    one-line ``ValueError`` naming the option and the fix otherwise.

    Examples
    --------
    >>> check_target(LOSS, target_loss=0.5)
    Target(metric=Metric(name='loss', maximize=False), value=0.5)
    >>> check_target(LOSS) is None
    True
    >>> check_target(Metric("return", True), target_loss=0.5, workload="cartpole")
    Traceback (most recent call last):
    ...
    ValueError: target_loss=0.5: workload 'cartpole' is evaluated by its mean return (higher is better), not a loss; give target_return instead
    >>> check_target(LOSS, target_loss=0.5, target_return=1)
    Traceback (most recent call last):
    ...
    ValueError: target_loss and target_return are both given; a run has one target: keep target_loss, the level of the workload's loss
    >>> check_target(LOSS, target_loss="low")
    Traceback (most recent call last):
    ...
    ValueError: target_loss='low' must be a number (a held-out loss)
    """
    given = {
        option: value
        for option, value in (("target_loss", target_loss), ("target_return", target_return))
        if value is not None
    }
    if not given:
        return None
    fix = TARGET_OPTIONS.get(metric.name)
    if len(given) > 1:
        keep = (
            f"keep {fix}, the level of the workload's {metric.name}"
            if fix
            else f"the workload's {metric.name!r} has neither; drop both"
        )
        raise ValueError(
            f"target_loss and target_return are both given; a run has one target: {keep}"
        )
    ((option, value),) = given.items()
    what = "a held-out loss" if option == "target_loss" else "a mean episodic return"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{option}={value!r} must be a number ({what})")
    if option != metric.target_key:
        instead = f"give {fix} instead" if fix else "it has no target option; drop it"
        raise ValueError(
            f"{option}={value!r}: workload {workload!r} is evaluated by its "
            f"{metric.described}, not a {option.removeprefix('target_')}; {instead}"
        )
    return Target(metric, value)  # as given: a record keeps the number the run was given


def target_of(
    workload: Any,
    *,
    target_loss: Any = None,
    target_return: Any = None,
    name: str | None = None,
) -> Target | None:
    """:func:`check_target` for ``workload``'s metric, naming the workload in an error as it
    was asked for: ``name``, else its registered name, else its own."""
    spec = getattr(workload, "spec", None)
    name = name or (spec.get("name") if isinstance(spec, dict) else None)
    return check_target(
        metric_of(workload),
        target_loss=target_loss,
        target_return=target_return,
        workload=str(name or getattr(workload, "name", "the workload")),
    )
