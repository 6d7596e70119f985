"""The pure maths strategies and backends share: reductions, shards, staleness scaling.

Both backends and the parameter server reduce with :func:`reduce_tensors`, which adds in list
order. Fixing the order is what makes a parameter server and an all-reduce produce *bitwise*
equal parameters in simulation, and keeps results independent of event ordering.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["REDUCE_OPS", "check_reduce_op", "reduce_tensors", "shard_bounds", "staleness_lr_scale"]

REDUCE_OPS = ("sum", "mean", "max", "min")


def check_reduce_op(op: str) -> str:
    """Return ``op`` if it is a reduction both backends know, else raise a one-line error.

    Examples
    --------
    >>> check_reduce_op("prod")
    Traceback (most recent call last):
    ...
    ValueError: op='prod' is not a reduction; use one of sum, mean, max, min
    """
    if op not in REDUCE_OPS:
        raise ValueError(f"op={op!r} is not a reduction; use one of {', '.join(REDUCE_OPS)}")
    return op


def reduce_tensors(tensors: Sequence[torch.Tensor], op: str = "sum") -> torch.Tensor:
    """Reduce equally shaped tensors elementwise, adding strictly in list order.

    Parameters
    ----------
    tensors
        The contributions, ordered by rank.
    op
        ``"sum"``, ``"mean"`` (sum, then divide by the count), ``"max"`` or ``"min"``.

    Examples
    --------
    >>> reduce_tensors([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])], "mean")
    tensor([2., 3.])
    """
    check_reduce_op(op)
    if not tensors:
        raise ValueError("tensors is empty; pass at least one tensor to reduce")
    out = tensors[0].clone()
    if out.is_meta:  # a timing-only run's tensors: the result has the shape, no element to add
        return out
    for t in tensors[1:]:
        if op in ("sum", "mean"):
            out.add_(t)
        elif op == "max":
            torch.maximum(out, t, out=out)
        else:
            torch.minimum(out, t, out=out)
    if op == "mean":
        out.div_(len(tensors))
    return out


def shard_bounds(numel: int, shards: int) -> list[tuple[int, int]]:
    """Split ``range(numel)`` into ``shards`` contiguous, nearly equal ``(start, stop)`` spans.

    The first ``numel % shards`` spans are one element longer, as ``torch.tensor_split`` does.

    Examples
    --------
    >>> shard_bounds(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    if shards < 1:
        raise ValueError(f"shards={shards} must be at least 1")
    if shards > numel:
        raise ValueError(f"shards={shards} exceeds the {numel} parameters; use fewer servers")
    base, extra = divmod(numel, shards)
    bounds, start = [], 0
    for i in range(shards):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def staleness_lr_scale(staleness: int) -> float:
    """Learning-rate factor ``1 / (1 + staleness)`` (Zhang et al., 2016, staleness-aware ASGD).

    Examples
    --------
    >>> staleness_lr_scale(0), staleness_lr_scale(3)
    (1.0, 0.25)
    """
    if staleness < 0:
        raise ValueError(f"staleness={staleness} is negative; a gradient cannot be from the future")
    return 1.0 / (1.0 + staleness)
