"""DiLoCo: local inner-optimizer steps, then an outer optimizer on the averaged
pseudo-gradient (Douillard et al., 2023)."""

from __future__ import annotations

from typing import Any

import torch

from options.declare import OptionError
from strategies.averaging import (
    check_compression,
    check_quorum,
    drop_round,
    group_mean,
    heal_with,
    pseudo_gradient,
    quorum_mean,
    take,
)
from strategies.base import Program, Strategy, feedback_state
from strategies.checks import PeerFailure
from strategies.context import WorkerContext
from strategies.fields import (
    Algorithm,
    Compressed,
    FaultTolerance,
    MinReplicas,
    OuterLr,
    OuterMomentum,
    Period,
)
from strategies.optim import OptimizerSpec
from strategies.registry import register
from strategies.replica import FlatOptimizer

__all__ = ["DiLoCo", "export_outer", "outer_optimizer", "restore_outer"]

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


def export_outer(outer: FlatOptimizer) -> tuple[torch.Tensor, dict[str, float]]:
    """An outer optimizer's state for a worker that rejoins: its parameters (the global
    ones) and buffers, always :meth:`~FlatOptimizer.export_numel` long (zeros where it has
    not stepped yet, so the receiver can size its buffer), and its numbers.

    Examples
    --------
    >>> outer = FlatOptimizer(torch.ones(2), OptimizerSpec.parse("sgd:lr=1,momentum=0.9"))
    >>> export_outer(outer)
    (tensor([1., 1., 0., 0.]), {'steps': 0.0})
    """
    flat, numbers = outer.export()
    size = outer.export_numel()
    if flat.numel() < size:
        flat = torch.cat([flat, flat.new_zeros(size - flat.numel())])
    return flat, numbers


def restore_outer(outer: FlatOptimizer, flat: torch.Tensor, numbers: dict[str, float]) -> None:
    """Take :func:`export_outer`'s state (in place: the outer parameters tensor is the one
    the worker keeps).

    Examples
    --------
    >>> spec = OptimizerSpec.parse("sgd:lr=1,momentum=0.9")
    >>> outer = FlatOptimizer(torch.ones(2), spec)
    >>> outer.step(torch.ones(2))
    >>> other = FlatOptimizer(torch.zeros(2), spec)
    >>> restore_outer(other, *export_outer(outer)); other.param.tolist(), other.steps
    ([0.0, 0.0], 1)
    """
    if numbers.get("steps", 0) == 0:  # it has not stepped: only the parameters are state
        with torch.no_grad():
            outer.param.copy_(flat[: outer.param.numel()])
        return
    outer.restore(flat, numbers)


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
    fault_tolerance
        ``"quorum"`` (torchft's fault-tolerant DiLoCo): every round's quorum of the live
        workers is asked for as the round starts and its pseudo-gradients are averaged over
        it; a worker that restarted is healed at a round's end from a live peer (its
        parameters and inner optimizer buffers, and the outer optimizer's state: the global
        parameters and their momentum) and does not contribute to that round's mean. A round
        whose all-reduce fails (a member crashed during it) is discarded: no outer step,
        every member rolls back to the global parameters and redoes the round's ``period``
        inner steps (``lost_steps``); the inner optimizer's buffers are kept, as torchft
        does. Not with ``compression``. ``None``: a crash ends the run.
    min_replicas
        With ``fault_tolerance="quorum"``: the fewest workers a round needs.

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
    fault_tolerance: FaultTolerance = None
    min_replicas: MinReplicas = 1

    def __post_init__(self) -> None:
        check_quorum(self)
        self.compression = check_compression(
            self.compression, self.algorithm, averages_changes=True
        )
        if self.fault_tolerance is not None and self.compression is not None:
            raise OptionError(
                "compression cannot be combined with fault_tolerance='quorum' yet (a codec's "
                "state is per group); drop one",
                "compression",
            )
        self.optimizers = {
            "inner": None,
            "outer": outer_optimizer(self.outer_lr, self.outer_momentum, self.outer_nesterov),
        }

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        check_quorum(self, len(self.workers(world_size)))

    def worker_state(self) -> dict[str, float]:
        """The global (outer) parameters each worker keeps, the outer optimizer's state over
        them (Nesterov momentum: one copy) and a compression's residual.

        >>> DiLoCo().worker_state()
        {'outer parameters': 1.0, 'outer': 1.0}
        """
        return {"outer parameters": 1.0, "outer": 1.0, **feedback_state(self.compression)}

    def worker(self, w: WorkerContext) -> Program:
        if self.fault_tolerance == "quorum":
            yield from self._quorum_worker(w)
            return
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

    def _quorum_worker(self, w: WorkerContext) -> Program:
        start = w.parameters()  # the global parameters: the outer step is applied in place
        outer = w.make_optimizer("outer", start)
        outer_numel = outer.export_numel()
        synced_step = 0  # the step of the last committed round
        fresh = w.rejoined  # a restarted worker has no state: it waits for a round first
        # As in LocalSGD: a round's quorum is asked for as it starts, taken at its end.
        pending = w.quorum(min_size=self.min_replicas)
        while not w.done:
            if not fresh:
                grads = yield w.compute_gradients()
                w.apply(grads)
                if w.step % self.period:
                    continue
            quorum = yield from take(pending)
            try:
                state, numbers = export_outer(outer)
                header = {"synced_step": synced_step, **{f"o.{k}": v for k, v in numbers.items()}}
                got = yield from heal_with(w, quorum, state, outer_numel, header)
                if got is not None:  # healed: the global parameters and outer state too
                    flat, fields = got
                    synced_step = int(fields.pop("synced_step"))
                    restore_outer(outer, flat, {k[2:]: v for k, v in fields.items()})
                fresh = False
                delta = pseudo_gradient(start, w.parameters())
                delta = yield quorum_mean(w, delta, quorum, self.algorithm)
            except PeerFailure:
                # The round failed on every member: no outer step; back to the global
                # parameters, and the round's inner steps are done again.
                drop_round(w, start, synced_step, fresh)
                pending = w.quorum(min_size=self.min_replicas)
                continue
            outer.step(delta)
            w.load_parameters(start)
            synced_step = w.step
            pending = w.quorum(min_size=self.min_replicas)  # the next round's
