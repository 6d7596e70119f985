"""A step's compute time from a per-operator roofline: each operator takes
``max(flops / peak, bytes / bandwidth)`` on the device, summed over one forward, loss and
backward (Williams, Waterman and Patterson 2009, "Roofline: an insightful visual performance
model").

The operators are those PyTorch dispatches for the workload's model on the meta device (so
any size costs nothing): FLOPs from ``torch.utils.flop_counter``'s formulas (matmuls,
convolutions, attention), bytes the operator's tensor inputs and outputs (views and aliases
move none). Every operator is taken to run at the device's dense bf16 tensor peak and its
full memory bandwidth, each derated by ``efficiency``; caches, fusion and kernel launch
overheads are not modelled, so elementwise chains cost what unfused eager kernels would.

Examples
--------
>>> import torch
>>> from torch import nn
>>> class W:  # what roofline_seconds reads from a workload
...     def meta_model(self):
...         with torch.device("meta"):
...             return nn.Linear(1024, 1024)
...     def meta_batch(self):
...         return torch.empty(512, 1024, device="meta"), torch.empty(512, 1024, device="meta")
...     def loss(self, out, y):
...         return nn.functional.mse_loss(out, y)
>>> r = roofline(W(), "H100")
>>> r.flops == 2 * 2 * 512 * 1024 * 1024, r.seconds > r.flops / 989e12
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from devices.catalog import Device, device

__all__ = ["Roofline", "roofline"]


class _OnMeta(Protocol):
    def meta_model(self) -> nn.Module: ...

    def meta_batch(self) -> tuple[Tensor, Tensor]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Roofline:
    """One step's roofline on a device.

    Attributes
    ----------
    seconds : float
        Sum over operators of ``max(flops / (peak x efficiency), bytes / (bandwidth x
        efficiency))``.
    flops, bytes : float
        The step's FLOPs (as FlopCounterMode counts them) and bytes moved.
    memory_bound : float
        The share of ``seconds`` spent in operators limited by bandwidth.
    operators : int
        Operators counted (views left out).
    """

    seconds: float
    flops: float
    bytes: float
    memory_bound: float
    operators: int


class _Counter(TorchDispatchMode):
    def __init__(self, peak: float, bandwidth: float) -> None:
        super().__init__()
        self.peak, self.bandwidth = peak, bandwidth
        self.seconds = self.bound = self.flops = self.bytes = 0.0
        self.operators = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        outputs = [t for t in tree_leaves(out) if isinstance(t, Tensor)]
        formula = flop_registry.get(func._overloadpacket)
        flops = float(formula(*args, **kwargs, out_val=out)) if formula else 0.0
        if not flops and _aliases(func, inputs, outputs):
            return out  # a view moves no data
        nbytes = float(sum(t.numel() * t.element_size() for t in inputs + outputs))
        compute, memory = flops / self.peak, nbytes / self.bandwidth
        self.seconds += max(compute, memory)
        self.bound += memory if memory > compute else 0.0
        self.flops += flops
        self.bytes += nbytes
        self.operators += 1
        return out


def _aliases(func: Any, inputs: list[Tensor], outputs: list[Tensor]) -> bool:
    """A view or alias: no output has storage of its own (in-place operators still count)."""
    if getattr(func, "is_view", False):
        return True
    if func._schema.is_mutable:
        return False
    storages = {t.untyped_storage()._cdata for t in inputs}
    return bool(outputs) and all(t.untyped_storage()._cdata in storages for t in outputs)


def roofline(workload: _OnMeta, on: str | Device, efficiency: float = 1.0) -> Roofline:
    """The roofline time of one forward, loss and backward of ``workload``'s micro-batch on
    device ``on``, with both the peak and the bandwidth derated by ``efficiency``.

    A workload whose model repeats identical blocks (``n_blocks`` and ``with_blocks(n)``, as
    :class:`workloads.transformer.TokenLM` has) is measured with one and two blocks and
    extended: every block dispatches the same operators, so ``f(1) + (n - 1) * (f(2) -
    f(1))`` is the whole model's count (a test checks it), at a fraction of the cost.
    """
    dev = device(on)
    blocks = int(getattr(workload, "n_blocks", 0))
    with_blocks = getattr(workload, "with_blocks", None)
    if blocks > 2 and with_blocks is not None:
        one = _measure(with_blocks(1), dev, efficiency)
        two = _measure(with_blocks(2), dev, efficiency)
        seconds, flops, nbytes, bound, operators = (
            a + (blocks - 1) * (b - a) for a, b in zip(one, two)
        )
    else:
        seconds, flops, nbytes, bound, operators = _measure(workload, dev, efficiency)
    return Roofline(
        seconds=seconds,
        flops=flops,
        bytes=nbytes,
        memory_bound=bound / seconds if seconds else 0.0,
        operators=int(operators),
    )


def _measure(
    workload: _OnMeta, dev: Device, efficiency: float
) -> tuple[float, float, float, float, float]:
    """``(seconds, flops, bytes, memory-bound seconds, operators)`` of one step."""
    model = workload.meta_model()
    x, y = workload.meta_batch()
    counter = _Counter(dev.peak_flops * efficiency, dev.memory_bandwidth * efficiency)
    with torch.random.fork_rng(devices=[]), counter:
        workload.loss(model(x), y).backward()
    return counter.seconds, counter.flops, counter.bytes, counter.bound, counter.operators
