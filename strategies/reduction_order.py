"""Sums in the order a collective library adds them: gloo's ring, chunk by chunk.

A float sum of three or more contributions depends on its grouping, so a simulator that adds
``(x0 + x1) + x2`` everywhere ends a few ulps from a library that adds each chunk starting
from a different rank. gloo (what PyTorch runs on CPU tensors, ``pytorch/gloo``
``gloo/allreduce.cc`` ``ring()`` and ``gloo/reduce.cc``) splits the buffer into one chunk per
rank of the group, made of equal *segments*; chunk ``c`` starts at group index ``c - 1``,
travels down the ring (``c - 2``, ``c - 3``, ...) and ends, fully reduced, at index ``c``,
each hop adding the arriving partial sum to the local contribution. So every element of
chunk ``c`` is the left fold ``((x[c-1] + x[c-2]) + ...) + x[c]`` (indices mod ``n``).

The segment size (and so where chunks end) is in whole elements:

* all-reduce: ``S = roundUp(max(ceil(numel / M), 2n), n)`` segments of ``ceil(numel / S)``
  elements, ``M`` the elements in gloo's 1 MiB segment limit;
* reduce: segments of ``min(ceil(numel / 2n), M)`` elements, ``S`` as above from that size.

Chunk ``c`` is segments ``[c * S/n, (c+1) * S/n)``, cut at ``numel`` (the last chunks may be
short or empty). ``benchmarks/gloo_sum_order.py`` checks this against gloo bit for bit.
NCCL's order is not modelled (it needs a GPU to observe): under its rule sums stay in rank
order. Max and min do not depend on order.

Examples
--------
>>> gloo_chunks(10, 3)
[(0, 4), (4, 8), (8, 10)]
>>> gloo_order(0, 3), gloo_order(1, 3), gloo_order(2, 3)
((2, 1, 0), (0, 2, 1), (1, 0, 2))
>>> x = [torch.tensor([1.0] * 10), torch.tensor([1e8] * 10), torch.tensor([-1e8] * 10)]
>>> reduce_in_order(x, "sum", "gloo").tolist()  # 1e8 + 1 rounds to 1e8 in float32
[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from strategies.aggregate import check_reduce_op, reduce_tensors

__all__ = ["GLOO_MAX_SEGMENT_BYTES", "ORDERED", "gloo_chunks", "gloo_order", "reduce_in_order"]

#: gloo's ``AllreduceOptionsImpl::kMaxSegmentSize`` (also reduce's default limit).
GLOO_MAX_SEGMENT_BYTES = 1024 * 1024
#: Libraries whose order :func:`reduce_in_order` follows; any other adds in rank order.
ORDERED = ("gloo",)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def gloo_chunks(
    numel: int, n: int, element_size: int = 4, kind: str = "all_reduce"
) -> list[tuple[int, int]]:
    """The ``(start, stop)`` elements of each group index's chunk in gloo's ring.

    Parameters
    ----------
    numel, n
        Elements of the buffer, ranks in the group (at least 2).
    element_size
        Bytes per element (the 1 MiB segment limit is in bytes).
    kind
        ``"all_reduce"`` or ``"reduce"`` (they size segments differently past 1 MiB).

    Examples
    --------
    >>> gloo_chunks(10, 4)  # segments of 2 elements, 2 per rank: the last chunk is empty
    [(0, 4), (4, 8), (8, 10), (10, 10)]
    >>> gloo_chunks(1_200_000, 2)[0], gloo_chunks(1_200_000, 2, kind="reduce")[0]
    ((0, 600000), (0, 786432))
    """
    if n < 2:
        raise ValueError(f"n={n}: a ring needs at least 2 ranks")
    if kind not in ("all_reduce", "reduce"):
        raise ValueError(f"kind={kind!r} has no gloo ring here; use all_reduce or reduce")
    limit = max(1, GLOO_MAX_SEGMENT_BYTES // element_size)  # elements per segment at most
    if kind == "all_reduce":
        segments = _ceil(max(_ceil(numel, limit), 2 * n), n) * n
        seg = _ceil(numel, segments)
    else:
        seg = max(1, min(_ceil(numel, 2 * n), limit))
        segments = _ceil(max(_ceil(numel, seg), 2 * n), n) * n
    chunk = seg * (segments // n)
    return [(min(c * chunk, numel), min((c + 1) * chunk, numel)) for c in range(n)]


def gloo_order(chunk: int, n: int) -> tuple[int, ...]:
    """The group indices in the order gloo's ring adds chunk ``chunk``: it starts at
    ``chunk - 1`` and ends at ``chunk`` (``((x[a] + x[b]) + ...) + x[chunk]``).

    >>> gloo_order(0, 4)
    (3, 2, 1, 0)
    """
    return tuple((chunk - 1 - k) % n for k in range(n))


def reduce_in_order(
    tensors: Sequence[torch.Tensor],
    op: str = "sum",
    library: str = "commsim",
    kind: str = "all_reduce",
) -> torch.Tensor:
    """Reduce equally shaped contributions (ordered by group index) as ``library`` would.

    ``library="gloo"`` adds each chunk in gloo's ring order (a slice per chunk, ``n - 1``
    vectorised adds each); any other library adds in rank order
    (:func:`strategies.aggregate.reduce_tensors`, the same tensor it returns). ``"mean"``
    is the sum divided by the count, as the real backend computes it. ``kind`` is the
    collective (a reduce-scatter is an all-reduce on gloo).

    >>> ones = [torch.ones(3)] * 3
    >>> reduce_in_order(ones, "mean", "gloo").tolist()
    [1.0, 1.0, 1.0]
    """
    n = len(tensors)
    if library not in ORDERED or op in ("max", "min") or n < 3 or tensors[0].is_meta:
        return reduce_tensors(tensors, op)  # two terms commute; max and min ignore order
    check_reduce_op(op)
    first = tensors[0]
    flat = [t.reshape(-1) for t in tensors]
    out = torch.empty_like(first).reshape(-1)
    chunks = gloo_chunks(
        out.numel(), n, first.element_size(), "reduce" if kind == "reduce" else "all_reduce"
    )
    for c, (start, stop) in enumerate(chunks):
        if start == stop:
            continue
        order = gloo_order(c, n)
        part = out[start:stop]
        part.copy_(flat[order[0]][start:stop])
        for k in order[1:]:
            part.add_(flat[k][start:stop])
    if op == "mean":
        out.div_(n)
    return out.reshape(first.shape)
