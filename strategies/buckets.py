"""Gradient buckets: a gradient handed out in parts as backward produces them, as DDP does.

PyTorch's ``DistributedDataParallel`` (Li et al., *PyTorch Distributed: Experiences on
Accelerating Data Parallel Training*, VLDB 2020) groups parameters into buckets and starts a
bucket's all-reduce as soon as backward has produced the gradients of all its parameters, so
that communication overlaps the rest of backward. :func:`bucket_bounds` builds the buckets as
DDP's ``_compute_bucket_assignment_by_size`` does: parameters are taken in definition order,
each is added to the open bucket, and a bucket closes once its bytes reach its cap; the first
bucket's cap is ``first_bucket_mb`` (DDP: 1 MiB), the others' ``bucket_mb`` (DDP: 25 MiB; a
"MB" is a MiB, as DDP counts it). The list is then reversed: backward produces gradients in
reverse definition order, so the bucket holding the last parameters is ready first, and the
small first bucket is ready last (a short all-reduce after backward ends). Because a
replica's parameters are views into one flat buffer in definition order, every bucket is one
contiguous slice ``[start, stop)`` of the flat gradient.

When a bucket is ready in simulated time is :func:`ready_fractions`: the forward pass takes
the first third of a gradient's time and backward the other two thirds (backward computes the
gradients of activations and weights: about twice the forward's FLOPs), apportioned to the
parameters by their count, in reverse order; a bucket is ready when its last parameter's
share is done. ``real`` needs no rule: a bucket is ready when autograd's
``register_post_accumulate_grad_hook`` has fired for each of its parameters.

Examples
--------
>>> bucket_bounds([10, 20, 30, 40], bucket_bytes=100, first_bucket_bytes=40)
[(60, 100), (10, 60), (0, 10)]
>>> [round(f, 4) for f in ready_fractions([(60, 100), (10, 60), (0, 10)], numel=100)]
[0.6, 0.9333, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from strategies.handles import Handle

__all__ = [
    "BACKWARD_SHARE",
    "FIRST_BUCKET_MB",
    "MIB",
    "Bucket",
    "GradientBuckets",
    "bucket_bounds",
    "ready_fractions",
]

#: Bytes in DDP's "MB" (``bucket_cap_mb`` counts MiB).
MIB = 1024 * 1024
#: DDP's first bucket (``dist._DEFAULT_FIRST_BUCKET_BYTES``), in MiB.
FIRST_BUCKET_MB = 1.0
#: The part of a gradient's compute time that is backward (backward ~ 2x forward's FLOPs).
BACKWARD_SHARE = 2.0 / 3.0


def bucket_bounds(
    sizes: Sequence[int], bucket_bytes: float, first_bucket_bytes: float, element_size: int = 4
) -> list[tuple[int, int]]:
    """DDP's buckets over parameters of ``sizes`` elements (definition order), as slices
    ``(start, stop)`` of the flat buffer, in the order backward makes them ready.

    A bucket closes once its bytes reach its cap (so it may pass the cap by its last
    parameter, as DDP's does); the first bucket's cap is ``first_bucket_bytes``.

    Examples
    --------
    >>> bucket_bounds([3, 3, 3], bucket_bytes=1e9, first_bucket_bytes=1e9)
    [(0, 9)]
    >>> bucket_bounds([3, 3, 3], bucket_bytes=4, first_bucket_bytes=4)
    [(6, 9), (3, 6), (0, 3)]
    """
    bounds: list[tuple[int, int]] = []
    start = offset = 0
    cap = first_bucket_bytes
    for size in sizes:
        offset += int(size)
        if (offset - start) * element_size >= cap:
            bounds.append((start, offset))
            start, cap = offset, bucket_bytes
    if offset > start or not bounds:
        bounds.append((start, offset))
    return bounds[::-1]


def ready_fractions(bounds: Sequence[tuple[int, int]], numel: int) -> list[float]:
    """When each bucket of ``bounds`` (in ready order) is ready, as a fraction of its
    gradient's compute time: forward takes ``1 - BACKWARD_SHARE``, then backward runs over
    the parameters in reverse order, each taking its share of parameters; the last bucket is
    ready at exactly 1 (when the whole gradient is).

    Examples
    --------
    >>> ready_fractions([(2, 4), (0, 2)], numel=4)
    [0.6666666666666667, 1.0]
    """
    fractions = []
    forward = 1.0 - BACKWARD_SHARE
    for i, (start, _) in enumerate(bounds):
        last = i == len(bounds) - 1
        done = (numel - start) / numel if numel else 1.0
        fractions.append(1.0 if last else forward + BACKWARD_SHARE * done)
    return fractions


@dataclass(frozen=True)
class Bucket:
    """One bucket of a gradient: the slice ``[start, stop)`` of the flat gradient and the
    handle whose value is that slice once backward has produced it."""

    start: int
    stop: int
    handle: Handle[torch.Tensor]

    @property
    def numel(self) -> int:
        return self.stop - self.start


class GradientBuckets:
    """A gradient in buckets, in the order backward makes them ready (reverse parameter order).

    Iterate to get the :class:`Bucket` objects; ``yield bucket.handle`` gives the bucket's
    slice of the flat gradient (a tensor of its own, which a program may reduce in place).
    :meth:`assemble` puts the (reduced) slices back into one flat tensor.

    Examples
    --------
    >>> from strategies.handles import done
    >>> parts = GradientBuckets([Bucket(2, 4, done(torch.tensor([3.0, 4.0]))),
    ...                          Bucket(0, 2, done(torch.tensor([1.0, 2.0])))])
    >>> len(parts), parts.numel
    (2, 4)
    >>> parts.assemble([torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])])
    tensor([1., 2., 3., 4.])
    """

    def __init__(self, buckets: Sequence[Bucket]) -> None:
        self.buckets = tuple(buckets)

    def __iter__(self) -> Iterator[Bucket]:
        return iter(self.buckets)

    def __len__(self) -> int:
        return len(self.buckets)

    @property
    def numel(self) -> int:
        return sum(b.numel for b in self.buckets)

    @property
    def handles(self) -> list[Handle[torch.Tensor]]:
        return [b.handle for b in self.buckets]

    def assemble(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """One flat tensor from ``parts``, one per bucket in this object's order (each
        bucket's slice, reduced or not): the values are copied, not added, so no bit
        changes."""
        if len(parts) != len(self.buckets):
            raise ValueError(
                f"assemble got {len(parts)} parts for {len(self.buckets)} buckets; pass one "
                "tensor per bucket, in the buckets' order"
            )
        order = sorted(range(len(parts)), key=lambda i: self.buckets[i].start)
        return torch.cat([parts[i].reshape(-1) for i in order])
