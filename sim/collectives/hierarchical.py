"""Hierarchical all-reduce: reduce-scatter inside each node, all-reduce across nodes, all-gather.

Ranks are grouped by their host's ``node`` attribute into a grid of ``N`` nodes by ``G``
local ranks (local index = position in rank order within the node; every node must hold the
same number of the participating ranks). Phases, each a ring:

1. intra-node reduce-scatter of ``nbytes``: ``G-1`` steps of ``nbytes/G``;
2. inter-node all-reduce of each rank's ``nbytes/G`` shard among the ``N`` ranks with the same
   local index (``G`` independent rings running side by side): ``2(N-1)`` steps of
   ``nbytes/(G N)``;
3. intra-node all-gather: ``G-1`` steps of ``nbytes/G``.

Only ``nbytes/G`` per rank crosses the slow inter-node network, against the flat ring's
``2(n-1)`` steps that all wait on the slowest (inter-node) hop.
"""

from __future__ import annotations

import numpy as np

from sim.collectives.schedule import Chain, Schedule, Step

__all__ = ["all_reduce"]


def _ring(n: int, src: np.ndarray, dst: np.ndarray, nbytes: float, n_steps: int) -> Schedule:
    step = Step(n, src, dst, nbytes)
    return Schedule(n, n_steps, lambda s: step)


def all_reduce(grid: np.ndarray, nbytes: float) -> Schedule:
    """Hierarchical all-reduce over ``grid[node, local]`` (local rank indices).

    >>> grid = np.arange(6).reshape(2, 3)
    >>> s = all_reduce(grid, 6.0)
    >>> s.n_steps, s.step(0).dst.tolist(), s.step(2).dst.tolist()
    (6, [1, 2, 0, 4, 5, 3], [3, 4, 5, 0, 1, 2])
    >>> float(s.step(2).nbytes[0])
    1.0
    """
    nodes, local = grid.shape
    n = grid.size
    src = grid.ravel()
    intra = np.roll(grid, -1, axis=1).ravel()
    inter = np.roll(grid, -1, axis=0).ravel()
    return Chain(
        [
            _ring(n, src, intra, nbytes / local, local - 1),
            _ring(n, src, inter, nbytes / (local * nodes), 2 * (nodes - 1)),
            _ring(n, src, intra, nbytes / local, local - 1),
        ]
    )
