"""Direct algorithms: every message goes straight to its final destination in one step.

All pairs at once: all-to-all, reduce-scatter and all-gather send ``nbytes/n`` from every rank
to every other; all-reduce is a direct reduce-scatter then a direct all-gather; broadcast and
scatter go from the root to everyone, reduce and gather from everyone to the root; the barrier
is everyone signalling rank 0, then rank 0 signalling everyone.
"""

from __future__ import annotations

import numpy as np

from sim.collectives.schedule import Schedule, Step

__all__ = [
    "all_gather",
    "all_reduce",
    "all_to_all",
    "barrier",
    "broadcast",
    "gather",
    "reduce",
    "reduce_scatter",
    "scatter",
]


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    src, dst = np.divmod(np.arange(n * n), n)
    keep = src != dst
    return src[keep], dst[keep]


def all_to_all(n: int, nbytes: float) -> Schedule:
    """Every rank sends ``nbytes/n`` to every other rank, all at once.

    >>> s = all_to_all(3, 6.0).step(0)
    >>> s.src.tolist(), s.dst.tolist(), float(s.nbytes[0])
    ([0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1], 2.0)
    """
    src, dst = _pairs(n)
    return Schedule.of(n, [Step(n, src, dst, nbytes / n)] if n > 1 else [])


reduce_scatter = all_to_all
all_gather = all_to_all


def all_reduce(n: int, nbytes: float) -> Schedule:
    """Direct reduce-scatter then direct all-gather: two all-pairs steps of ``nbytes/n``."""
    src, dst = _pairs(n)
    step = Step(n, src, dst, nbytes / n)
    return Schedule.of(n, [step, step] if n > 1 else [])


def _from_root(n: int, nbytes: float, root: int, inward: bool) -> Schedule:
    others = np.delete(np.arange(n), root)
    roots = np.full(others.size, root)
    step = Step(n, others, roots, nbytes) if inward else Step(n, roots, others, nbytes)
    return Schedule.of(n, [step] if n > 1 else [])


def broadcast(n: int, nbytes: float, root: int = 0) -> Schedule:
    """The root sends the whole buffer to every other rank at once."""
    return _from_root(n, nbytes, root, inward=False)


def reduce(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Every rank sends its whole buffer to the root at once."""
    return _from_root(n, nbytes, root, inward=True)


def scatter(n: int, nbytes: float, root: int = 0) -> Schedule:
    """The root sends each rank its ``nbytes/n`` block."""
    return _from_root(n, nbytes / n, root, inward=False)


def gather(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Every rank sends its ``nbytes/n`` block to the root."""
    return _from_root(n, nbytes / n, root, inward=True)


def barrier(n: int) -> Schedule:
    """Everyone signals rank 0, then rank 0 signals everyone (zero-byte messages).

    >>> barrier(3).n_steps
    2
    """
    if n < 2:
        return Schedule.of(n, [])
    others = np.arange(1, n)
    zeros = np.zeros(n - 1, dtype=np.int64)
    return Schedule.of(n, [Step(n, others, zeros, 0.0), Step(n, zeros, others, 0.0)])
