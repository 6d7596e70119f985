"""DiLoCo: local inner-optimizer steps, then an outer optimizer on the averaged
pseudo-gradient (Douillard et al., 2023)."""

from __future__ import annotations

from typing import Any

from options.declare import OptionError
from strategies.averaging import check_compression, group_mean, pseudo_gradient
from strategies.base import Program, Strategy
from strategies.context import WorkerContext
from strategies.fields import Algorithm, Compressed, OuterLr, OuterMomentum, Period
from strategies.optim import OptimizerSpec
from strategies.registry import register

__all__ = ["DiLoCo", "outer_optimizer"]

#: The paper's outer optimizer: SGD with Nesterov momentum 0.9, learning rate 0.7.
OUTER: dict[str, Any] = {"name": "sgd", "lr": 0.7, "momentum": 0.9, "nesterov": True}


def outer_optimizer(lr: Any, momentum: Any, nesterov: Any) -> dict[str, Any]:
    """The outer optimizer's spec (each argument's type and range is declared on the
    strategy; this checks the rule between them, and torch's own).

    Examples
    --------
    >>> outer_optimizer(1.0, 0.0, False)
    {'name': 'sgd', 'lr': 1.0, 'momentum': 0.0, 'nesterov': False}
    >>> outer_optimizer(0.7, 0.0, True)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: outer_nesterov=True needs outer_momentum > 0
    """
    if nesterov and momentum <= 0:
        raise OptionError("outer_nesterov=True needs outer_momentum > 0", "outer_nesterov")
    spec = {"name": "sgd", "lr": float(lr), "momentum": float(momentum), "nesterov": nesterov}
    OptimizerSpec.parse(spec)  # torch's own checks, at construction
    return spec


@register
class DiLoCo(Strategy):
    """``period`` inner optimizer steps on each worker, then every worker applies the outer
    optimizer to the all-reduced pseudo-gradient (start parameters minus current) and starts
    the next round from the result.

    Parameters
    ----------
    period
        Inner steps per round (``H``; the paper uses 500 on language models).
    outer_lr, outer_momentum, outer_nesterov
        The outer optimizer (SGD; the paper's Nesterov momentum by default). A run can set
        any outer optimizer by name instead: ``optimizer={"inner": "adamw", "outer":
        {"name": "sgd", "lr": 0.7, "momentum": 0.9, "nesterov": True}}``; a single
        ``optimizer=`` configures the inner one (the paper uses AdamW).
    compression
        A ``strategies.compression`` scheme for the pseudo-gradients.
    algorithm
        Collective algorithm of the all-reduce (the simulator's hint).

    With ``outer_lr=1`` and no momentum, a round ends on the workers' average: DiLoCo is then
    Local SGD with the same inner optimizer. Bytes per worker and round: one all-reduce of
    ``4 * numel`` bytes. The run's last round ends at its last step, before an outer step:
    its global model is the workers' average.

    Examples
    --------
    >>> DiLoCo(period=50).optimizers["outer"]
    {'name': 'sgd', 'lr': 0.7, 'momentum': 0.9, 'nesterov': True}
    >>> DiLoCo(period=0)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: period=0 must be an integer >= 1 (local steps between synchronisations)
    """

    name = "diloco"
    optimizers: dict[str, Any] = {"inner": None, "outer": OUTER}

    period: Period = 50
    outer_lr: OuterLr = OUTER["lr"]
    outer_momentum: OuterMomentum = OUTER["momentum"]
    outer_nesterov: bool = OUTER["nesterov"]
    compression: Compressed = None
    algorithm: Algorithm = "auto"

    def __post_init__(self) -> None:
        self.compression = check_compression(
            self.compression, self.algorithm, averages_changes=True
        )
        self.optimizers = {
            "inner": None,
            "outer": outer_optimizer(self.outer_lr, self.outer_momentum, self.outer_nesterov),
        }

    def worker(self, w: WorkerContext) -> Program:
        group = w.comm.new_group(w.workers)
        codec = self.compression.codec(w, salt="outer") if self.compression else None
        start = w.parameters()  # the global (outer) parameters, stepped in place
        outer = w.make_optimizer("outer", start)
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            if w.step % self.period:
                continue
            delta = pseudo_gradient(start, w.parameters())
            delta = yield from group_mean(w, delta, group, codec, self.algorithm)
            outer.step(delta)
            w.load_parameters(start)
