"""A rank's state as a checkpoint holds it: its model and optimizer state, its step and
version, and its place in its data; taken from a context and given back to one (a restart
from a checkpoint, ``w.load_checkpoint``), in both backends.

Examples
--------
>>> import topologies, sim
>>> from strategies.replica import FlatOptimizer
>>> opt = FlatOptimizer(torch.zeros(2), OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9"))
>>> opt.step(torch.ones(2)); state = RankState.of_optimizer(opt, step=1, version=1, data=1)
>>> state.flat.tolist(), state.nbytes
([-0.5, -0.5, 1.0, 1.0], 16)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from strategies.context import RoleContext, ServerContext, WorkerContext
from strategies.optim import OptimizerSpec  # noqa: F401  (the doctest's)
from strategies.replica import FlatOptimizer

__all__ = ["RankState"]


def _optimizer(ctx: RoleContext) -> FlatOptimizer | None:
    if isinstance(ctx, ServerContext):
        return ctx.shard
    if isinstance(ctx, WorkerContext):
        return ctx.replica.optimizer
    return None


def _data_position(ctx: RoleContext) -> int:
    """Gradients a worker's steps so far used: one a step for a worker that applies its
    own (every strategy of the catalogue; a gradient computed for the next step, already
    started at this instant, is not part of the state), all it computed for one that does
    not (a parameter server's)."""
    if not isinstance(ctx, WorkerContext):
        return 0
    return ctx.step if ctx.replica.optimizer is not None else ctx.gradients


@dataclass(frozen=True)
class RankState:
    """What a checkpoint keeps of one rank (see the module docstring)."""

    flat: torch.Tensor
    numbers: dict[str, float]
    step: int
    version: int
    data: int

    @classmethod
    def of_optimizer(
        cls, optimizer: FlatOptimizer, *, step: int, version: int, data: int
    ) -> RankState:
        flat, numbers = optimizer.export()
        return cls(flat.clone(), numbers, step, version, data)

    @classmethod
    def of(cls, ctx: RoleContext) -> RankState:
        """``ctx``'s state now."""
        optimizer = _optimizer(ctx)
        position = _data_position(ctx)
        if optimizer is not None:
            return cls.of_optimizer(optimizer, step=ctx.step, version=ctx.version, data=position)
        return cls(ctx.parameters(), {}, ctx.step, ctx.version, position)

    @property
    def nbytes(self) -> int:
        """What writing it moves."""
        return self.flat.numel() * self.flat.element_size()

    def apply(self, ctx: RoleContext) -> None:
        """Give ``ctx`` this state: parameters, optimizer buffers, step, version, and its
        data from where the state's left it."""
        optimizer = _optimizer(ctx)
        if optimizer is not None:
            optimizer.restore(self.flat.clone(), self.numbers)
        elif isinstance(ctx, WorkerContext):
            ctx.replica.load(self.flat)
        ctx.step, ctx.version = self.step, self.version
        if isinstance(ctx, WorkerContext):
            ctx.resume_data(self.data)
