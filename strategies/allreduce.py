"""Synchronous data-parallel SGD: average gradients with one all-reduce per step."""

from __future__ import annotations

from strategies.base import Program, Strategy
from strategies.comm import ALGORITHMS
from strategies.context import WorkerContext
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

    Examples
    --------
    >>> AllReduceSGD(algorithm="ring")
    AllReduceSGD(algorithm='ring')
    >>> AllReduceSGD(algorithm="butterfly")
    Traceback (most recent call last):
    ...
    ValueError: algorithm='butterfly' is unknown; use one of auto, ring, tree, halving_doubling, direct, hierarchical
    """

    name = "allreduce"
    #: Every replica applies the same mean gradient, so any one of them is the global model.
    global_model = "primary"

    def __init__(self, algorithm: str = "auto") -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm={algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}"
            )
        super().__init__(algorithm=algorithm)
        self.algorithm = algorithm

    def worker(self, w: WorkerContext) -> Program:
        group = w.comm.new_group(w.workers)
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.all_reduce(grads, op="mean", group=group, algorithm=self.algorithm)
            w.apply(grads)
