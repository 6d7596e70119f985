"""Recursive halving and doubling (Rabenseifner / Thakur-Rabenseifner-Gropp, as in MPICH).

With ``p`` the largest power of two <= ``n`` and ``r = n - p``, the first ``2r`` ranks fold:
each even rank ``2i`` hands its data to ``2i+1`` and sits out, leaving ``p`` participants
(participant ``j`` is rank ``2j+1`` for ``j < r``, else rank ``j + r``). Participant ``j``
stands for ``blocks[j]`` blocks of ``nbytes/n`` (2 if it absorbed a partner, else 1).

* reduce-scatter (recursive halving): in step ``k`` participant ``j`` swaps with ``j ^ d``,
  ``d = p >> (k+1)``, sending the blocks of the partner's aligned group of ``d`` participants.
* all-gather (recursive doubling): distances ``1, 2, ..., p/2``; each participant sends all the
  blocks of its own aligned group of ``d``.
* all-reduce: reduce-scatter then all-gather (Rabenseifner), then unfold.

With ``n`` a power of two on a contention-free fabric an all-reduce costs
``2 log2(n) L + 2 (n-1)/n * nbytes / B``.
"""

from __future__ import annotations

import math

import numpy as np

from sim.collectives.schedule import Chain, Schedule, Step

__all__ = ["all_gather", "all_reduce", "barrier", "reduce_scatter"]


class _Fold:
    """The participants of a halving-doubling run over ``n`` ranks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.p = 1 << (n.bit_length() - 1)
        self.r = n - self.p
        j = np.arange(self.p)
        self.rank = np.where(j < self.r, 2 * j + 1, j + self.r)
        self.blocks = np.where(j < self.r, 2, 1)
        self.cum = np.concatenate(([0], np.cumsum(self.blocks)))
        self.levels = int(math.log2(self.p))

    def group_blocks(self, first: np.ndarray, d: int) -> np.ndarray:
        """Blocks held by the aligned groups of ``d`` participants starting at ``first``."""
        return self.cum[first + d] - self.cum[first]

    def exchange(self, d: int, own: bool, nbytes: float) -> Step:
        j = np.arange(self.p)
        group = ((j if own else j ^ d) // d) * d
        size = self.group_blocks(group, d) * (nbytes / self.n)
        return Step(self.n, self.rank, self.rank[j ^ d], size)

    def fold(self, nbytes: float, back: bool) -> Schedule:
        """Extra ranks hand ``nbytes`` to their partner (or get it back when ``back``)."""
        if self.r == 0:
            return Schedule(self.n, 0, lambda s: Step(self.n, [], [], 0.0))
        even = 2 * np.arange(self.r)
        src, dst = (even + 1, even) if back else (even, even + 1)
        return Schedule.of(self.n, [Step(self.n, src, dst, nbytes)])


def reduce_scatter(n: int, nbytes: float) -> Schedule:
    """Recursive-halving reduce-scatter (folding non-powers of two).

    >>> s = reduce_scatter(4, 8.0)
    >>> s.n_steps, s.step(0).dst.tolist(), s.step(0).nbytes.tolist()
    (2, [2, 3, 0, 1], [4.0, 4.0, 4.0, 4.0])
    """
    f = _Fold(n)
    halving = Schedule.of(n, [f.exchange(f.p >> (k + 1), False, nbytes) for k in range(f.levels)])
    return Chain([f.fold(nbytes, False), halving, f.fold(nbytes / n, True)])


def all_gather(n: int, nbytes: float) -> Schedule:
    """Recursive-doubling all-gather (folding non-powers of two).

    >>> [s.nbytes.tolist() for s in (all_gather(4, 8.0).step(k) for k in range(2))]
    [[2.0, 2.0, 2.0, 2.0], [4.0, 4.0, 4.0, 4.0]]
    """
    f = _Fold(n)
    doubling = Schedule.of(n, [f.exchange(1 << k, True, nbytes) for k in range(f.levels)])
    return Chain([f.fold(nbytes / n, False), doubling, f.fold(nbytes, True)])


def all_reduce(n: int, nbytes: float) -> Schedule:
    """Rabenseifner all-reduce: fold, halving reduce-scatter, doubling all-gather, unfold.

    >>> all_reduce(4, 8.0).n_steps, all_reduce(6, 8.0).n_steps
    (4, 6)
    """
    f = _Fold(n)
    halving = [f.exchange(f.p >> (k + 1), False, nbytes) for k in range(f.levels)]
    doubling = [f.exchange(1 << k, True, nbytes) for k in range(f.levels)]
    return Chain([f.fold(nbytes, False), Schedule.of(n, halving + doubling), f.fold(nbytes, True)])


def barrier(n: int) -> Schedule:
    """Dissemination barrier: ``ceil(log2 n)`` rounds, in round ``k`` rank i signals ``i + 2**k``.

    >>> barrier(5).n_steps, barrier(5).step(2).dst.tolist()
    (3, [4, 0, 1, 2, 3])
    """
    i = np.arange(n)
    rounds = math.ceil(math.log2(n)) if n > 1 else 0
    return Schedule(n, rounds, lambda k: Step(n, i, (i + 2**k) % n, 0.0))
