"""Timing-only state: a model's parameters, gradients and payloads as shapes without numbers.

A timing-only run (``sim.run(..., timing_only=True)``) asks how long training takes, not
what it learns. Its tensors live on PyTorch's ``meta`` device: they have a shape and a dtype,
so every payload's size is the true one, and no storage, so a thousand replicas of a
70-billion-parameter model cost no memory. Strategies run unchanged: the maths they do on
meta tensors is shape propagation, and what reads a value (``float(x)``, ``x.item()``) is
refused by torch, which is why a strategy whose decisions depend on numbers says so
(:meth:`strategies.base.Strategy.reads_values`) and is refused before the run.

A worker's :class:`ShapeReplica` computes no forward or backward: its gradient is a meta
tensor of the model's size, over ``batch_size x accumulate`` samples (what a
``workloads.Workload`` batch holds), with a loss of NaN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from strategies.optim import OptimizerSpec, ScheduleSpec
from strategies.replica import FlatOptimizer, Objective, Replica

__all__ = ["META", "ShapeReplica", "meta_model", "no_batches", "numbers_device"]

#: Where a timing-only run's tensors live.
META = torch.device("meta")


def numbers_device(device: torch.device) -> torch.device:
    """Where a small tensor of numbers that a program reads back (a step, a version) goes:
    the rank's ``device``, or the CPU in a timing-only run, whose device (meta) holds none.

    Examples
    --------
    >>> numbers_device(META), numbers_device(torch.device("cpu"))
    (device(type='cpu'), device(type='cpu'))
    """
    return torch.device("cpu") if device.type == "meta" else device


def meta_model(make_model: Callable[[int], nn.Module], seed: int) -> nn.Module:
    """``make_model(seed)`` with its parameters on the meta device.

    The model is built under ``torch.device("meta")``, so layers that take the default
    device allocate nothing; a factory that names a device explicitly builds there and is
    moved (its memory is then needed once, while it is built).

    Examples
    --------
    >>> model = meta_model(lambda seed: nn.Linear(8192, 8192), seed=0)
    >>> model.weight.device.type, model.weight.shape
    ('meta', torch.Size([8192, 8192]))
    """
    with META:
        model = make_model(seed)
    if any(p.device.type != "meta" for p in model.parameters()):
        model = model.to(META)
    return model


def no_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A timing-only worker's data: empty batches, as many as asked for (a restarted rank
    skips its data position through them), never read."""
    empty = torch.empty(0, device=META)
    return itertools.repeat((empty, empty))


class ShapeReplica(Replica):
    """A replica with the shapes of a model and no numbers: a flat meta parameter buffer,
    its gradient and (for a role that applies updates) an optimizer over it.

    Parameters
    ----------
    numel, dtype
        The model's trained parameters: their count and the dtype its flat buffer has.
    samples
        Samples of one micro-batch (the workload's ``batch_size``).
    spec, schedule, total_steps
        As :class:`~strategies.replica.Replica` (``spec=None``: no optimizer).
    model
        The module the replica stands for (shared by every rank of a run, on meta), or None.

    Examples
    --------
    >>> r = ShapeReplica(10, torch.float32, samples=4, spec=OptimizerSpec.parse("sgd"))
    >>> grads, samples, loss = r.compute_gradients(iter(()), lambda m, b: next(b), accumulate=2)
    >>> grads.device.type, grads.shape, samples, math.isnan(loss)
    ('meta', torch.Size([10]), 8, True)
    >>> r.apply(grads); r.parameters().device.type
    'meta'
    """

    def __init__(
        self,
        numel: int,
        dtype: torch.dtype,
        samples: int,
        spec: OptimizerSpec | None = None,
        schedule: ScheduleSpec | None = None,
        total_steps: int = 1,
        model: nn.Module | None = None,
    ) -> None:
        # Replica.__init__ re-points a model's parameters into the flat buffer; a shape
        # replica has no model of its own to re-point, so it is not called.
        self.model = model if model is not None else nn.Module()
        self.flat = torch.empty(numel, dtype=dtype, device=META)
        self.grad = torch.empty_like(self.flat)
        self.samples = samples
        self.optimizer = (
            FlatOptimizer(self.flat, spec, schedule, total_steps) if spec is not None else None
        )

    def compute_gradients(
        self,
        batches: Iterator[Any],
        objective: Objective,
        accumulate: int = 1,
    ) -> tuple[torch.Tensor, int, float]:
        """A gradient of the model's shape over ``accumulate`` micro-batches; no batch is
        drawn and nothing is computed (the loss is NaN). It is the replica's one gradient
        buffer each time: a meta tensor holds nothing to overwrite."""
        return self.grad, self.samples * accumulate, math.nan
