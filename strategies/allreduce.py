"""Synchronous data-parallel SGD: average gradients with one all-reduce per step."""

from __future__ import annotations

from strategies.averaging import check_compression, group_mean
from strategies.base import Program, Strategy
from strategies.context import WorkerContext
from strategies.fields import Algorithm, Compressed
from strategies.registry import register

__all__ = ["AllReduceSGD"]


@register
class AllReduceSGD(Strategy):
    """Every worker computes a gradient, all-reduces the mean, and applies it to its replica.

    Parameters
    ----------
    algorithm
        Collective algorithm the simulator decomposes the all-reduce into (``"auto"`` picks
        as the network engine does). The real backend leaves the choice to gloo/NCCL.
    compression
        A ``strategies.compression`` scheme for the gradients (``"fp16"``, ``"topk"``,
        ``{"name": "powersgd", "rank": 4}`` ...): its encoded payload is what travels, by
        the collective the scheme composes with (see ``docs/strategies.md``).

    Bytes per worker and step: one all-reduce of ``4 * numel`` bytes (a ring sends
    ``2 (n - 1) / n`` of it), or the scheme's payload.

    Examples
    --------
    >>> AllReduceSGD(algorithm="ring")
    AllReduceSGD(algorithm='ring', compression=None)
    >>> AllReduceSGD(algorithm="butterfly")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: algorithm='butterfly' is unknown; use one of auto, ring, tree, halving_doubling, direct, hierarchical
    """

    name = "allreduce"
    #: Every replica applies the same mean gradient, so any one of them is the global model.
    global_model = "primary"

    algorithm: Algorithm = "auto"
    compression: Compressed = None

    def __post_init__(self) -> None:
        self.compression = check_compression(self.compression, self.algorithm)

    def worker(self, w: WorkerContext) -> Program:
        group = w.comm.new_group(w.workers)
        codec = self.compression.codec(w, salt="gradients") if self.compression else None
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield from group_mean(w, grads, group, codec, self.algorithm)
            w.apply(grads)
