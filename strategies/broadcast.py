"""Centralised synchronous SGD: reduce the gradients to one root, step there, broadcast."""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated, Any

import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.aggregate import reduce_tensors
from strategies.base import Program, Strategy
from strategies.comm import ALGORITHMS_FOR, Group
from strategies.compression import Compression
from strategies.compression.codec import charge
from strategies.context import WorkerContext
from strategies.fields import Compressed
from strategies.messages import message_nbytes
from strategies.registry import register

__all__ = ["Broadcast"]


@register
class Broadcast(Strategy):
    """Reduce-then-broadcast SGD: only the root worker holds an optimizer that steps.

    Every step, every worker computes a gradient; the gradients are reduced (summed) to the
    root, which divides by the number of workers and applies one optimizer step; the root
    then broadcasts its new *parameters*, which the other workers load (not a step). The
    root's replica is the global model (``global_model = "primary"``). With any optimizer it
    equals :class:`~strategies.allreduce.AllReduceSGD` run on the root's replica.

    Traffic per step, for ``n`` workers and a model of ``numel`` float32 parameters
    (``M = 4 * numel`` bytes): one reduce and one broadcast of ``M`` bytes each, which the
    simulator's algorithms (``tree``, ``ring``, ``direct``) carry as ``(n - 1) * M`` bytes
    each, so ``2 * (n - 1) * M`` bytes a step. All of it goes through the root's link, which
    is what makes this scheme the centralised baseline.

    Parameters
    ----------
    root
        The root's worker index (its position in ``workers``, not its rank); checked against
        the world size when the run starts.
    reduce_algorithm, broadcast_algorithm
        Collective algorithms the simulator decomposes the reduce and the broadcast into
        (``"auto"`` picks as the network engine does: ``tree`` for small messages, a
        pipelined ``ring`` otherwise). The real backend leaves the choice to gloo.
    compression
        A ``strategies.compression`` scheme for the gradients: each worker sends its encoded
        payload to the root (a gather by point-to-point messages, ``(n - 1)`` payloads into
        the root's link, instead of the reduce), which decodes and sums them in rank order
        with its own gradient; the parameters are broadcast uncompressed.

    Examples
    --------
    >>> Broadcast(root=1, reduce_algorithm="tree")
    Broadcast(root=1, reduce_algorithm='tree', broadcast_algorithm='auto', compression=None)
    >>> Broadcast().primary(4), Broadcast(root=2).primary(4)
    (0, 2)
    >>> Broadcast(root=-1)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: root=-1 must be an integer >= 0 (a worker index)
    >>> Broadcast(broadcast_algorithm="halving_doubling")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: broadcast_algorithm='halving_doubling' is unknown; use one of auto, ring, tree, direct (the algorithms that implement broadcast)
    >>> Broadcast(root=4).check_world(4)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: root=4 is not a worker index: the world has 4 workers (0..3)
    """

    name = "broadcast"
    #: Only the root steps; the others load its parameters, so its replica is the model.
    global_model = "primary"

    root: Annotated[int, Field(ge=0, description="a worker index")] = 0
    reduce_algorithm: Annotated[
        str,
        OneOf(("auto", *ALGORITHMS_FOR["reduce"])),
        Field(description="the algorithms that implement reduce"),
    ] = "auto"
    broadcast_algorithm: Annotated[
        str,
        OneOf(("auto", *ALGORITHMS_FOR["broadcast"])),
        Field(description="the algorithms that implement broadcast"),
    ] = "auto"
    compression: Compressed = None

    def __post_init__(self) -> None:
        try:
            self.compression = Compression.parse(self.compression)
        except ValueError as exc:
            raise OptionError(str(exc), "compression") from None
        if self.compression is not None and self.compression.name == "powersgd":
            raise OptionError(
                "compression='powersgd' needs all-reduces (its factors are averaged twice); "
                "Broadcast gathers single payloads: use topk, randomk, qsgd, uint8, fp16, bf16 "
                "or signsgd",
                "compression",
            )

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        n = len(self.workers(world_size))
        if self.root >= n:
            raise OptionError(
                f"root={self.root} is not a worker index: the world has {n} workers (0..{n - 1})",
                "root",
            )

    def primary(self, world_size: int) -> int:
        """The root's rank: the only replica that takes optimizer steps."""
        return self.workers(world_size)[self.root]

    def worker(self, w: WorkerContext) -> Program:
        group = w.comm.new_group(w.workers)
        root = w.workers[self.root]
        n = len(w.workers)
        codec = self.compression.codec(w, salt="gradients") if self.compression else None
        while not w.done:
            grads = yield w.compute_gradients()
            total = yield from self.reduce_gradients(w, grads, group, root, codec)
            if w.rank == root:
                w.apply(total / n)
                params = w.parameters()
                if codec is not None and w.is_eval_step():  # what each payload weighs
                    w.log(compression_ratio=message_nbytes(codec.buffers()) / (4 * w.numel))
            else:
                params = torch.empty_like(grads)  # a buffer the broadcast fills
            params = yield w.comm.broadcast(
                params, src=root, group=group, algorithm=self.broadcast_algorithm
            )
            if w.rank != root:
                w.load_parameters(params)

    def reduce_gradients(
        self, w: WorkerContext, grads: torch.Tensor, group: Group, root: int, codec: Any = None
    ) -> Generator[Any, Any, torch.Tensor]:
        """The gradient exchange: the sum of the workers' gradients, valid on ``root`` only.

        One small sub-program (``yield from``), so that a variant (compression) can replace
        it without touching the rest of the step."""
        if codec is None:
            total = yield w.comm.reduce(
                grads, dst=root, op="sum", group=group, algorithm=self.reduce_algorithm
            )
            return total
        if w.rank != root:
            yield from charge(w, codec.encode_seconds())
            yield w.comm.send(codec.encode(grads), dst=root)
            return grads  # only the root's sum is used
        others = [r for r in w.workers if r != root]
        got = yield w.comm.wait_all([w.comm.recv(codec.buffers(), src=r) for r in others])
        yield from charge(w, codec.decode_seconds() * len(others))
        decoded = dict(zip(others, (codec.decode(m.tensors) for m in got)))
        decoded[root] = grads
        return reduce_tensors([decoded[r] for r in w.workers], "sum")
