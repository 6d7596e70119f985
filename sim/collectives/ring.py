"""Ring algorithms: every rank sends to its right neighbour, step after step.

``nbytes`` is always the full buffer per rank (input of a reduction, output of a gather).

* all-reduce: reduce-scatter then all-gather, ``2(n-1)`` steps of ``nbytes/n``.
* reduce-scatter / all-gather: ``n-1`` steps of ``nbytes/n``.
* broadcast / reduce: a pipelined chain from (or to) the root, the buffer cut into
  :func:`pipeline_chunks` chunks; ``n - 2 + chunks`` steps.
* all-to-all: pairwise exchange, step ``k`` (1..n-1) sends ``nbytes/n`` from ``i`` to ``i+k``.
"""

from __future__ import annotations

import math

import numpy as np

from sim.collectives.schedule import Schedule, Step

__all__ = [
    "PIPELINE_CHUNK_BYTES",
    "all_gather",
    "all_reduce",
    "all_to_all",
    "broadcast",
    "pipeline_chunks",
    "reduce",
    "reduce_scatter",
]

#: Pipelined algorithms (chain broadcast/reduce, tree all-reduce) cut buffers into chunks of
#: about this size, NCCL-like, at most :data:`_MAX_CHUNKS` of them.
PIPELINE_CHUNK_BYTES = 4 * 1024 * 1024
_MAX_CHUNKS = 256


def pipeline_chunks(nbytes: float) -> int:
    """Number of pipeline chunks for a buffer: ``ceil(nbytes / 4 MiB)`` clamped to 1..256.

    >>> pipeline_chunks(0), pipeline_chunks(4 * 2**20), pipeline_chunks(4 * 2**20 + 1)
    (1, 1, 2)
    """
    return min(max(1, math.ceil(nbytes / PIPELINE_CHUNK_BYTES)), _MAX_CHUNKS)


def _neighbour_steps(n: int, nbytes: float, n_steps: int) -> Schedule:
    i = np.arange(n)
    step = Step(n, i, (i + 1) % n, nbytes / n)
    return Schedule(n, n_steps if n > 1 else 0, lambda s: step)


def reduce_scatter(n: int, nbytes: float) -> Schedule:
    """Ring reduce-scatter.

    >>> s = reduce_scatter(4, 8.0)
    >>> s.n_steps, s.step(0).dst.tolist(), s.step(0).nbytes.tolist()
    (3, [1, 2, 3, 0], [2.0, 2.0, 2.0, 2.0])
    """
    return _neighbour_steps(n, nbytes, n - 1)


def all_gather(n: int, nbytes: float) -> Schedule:
    """Ring all-gather (same traffic as the reduce-scatter)."""
    return _neighbour_steps(n, nbytes, n - 1)


def all_reduce(n: int, nbytes: float) -> Schedule:
    """Ring all-reduce: ``2(n-1)`` neighbour steps of ``nbytes/n``.

    >>> all_reduce(4, 8.0).n_steps
    6
    """
    return _neighbour_steps(n, nbytes, 2 * (n - 1))


def _chain(n: int, nbytes: float, order: np.ndarray, chunks: int | None) -> Schedule:
    """Pipeline along ``order`` (position p sends chunk ``s - p`` to position p+1 at step s)."""
    if n < 2:
        return Schedule(n, 0, lambda s: Step(n, [], [], 0.0))
    chunks = pipeline_chunks(nbytes) if chunks is None else chunks
    size = nbytes / chunks
    pos = np.arange(n - 1)

    def step(s: int) -> Step:
        live = pos[(s - pos >= 0) & (s - pos < chunks)]
        return Step(n, order[live], order[live + 1], size)

    return Schedule(n, n - 2 + chunks, step)


def broadcast(n: int, nbytes: float, root: int = 0, chunks: int | None = None) -> Schedule:
    """Pipelined chain broadcast from ``root`` (root, root+1, ... around the ring), in
    ``chunks`` pieces (default :func:`pipeline_chunks`).

    >>> s = broadcast(3, 8.0, root=1)
    >>> s.n_steps, s.step(0).src.tolist(), s.step(1).src.tolist()
    (2, [1], [2])
    """
    return _chain(n, nbytes, (root + np.arange(n)) % n, chunks)


def reduce(n: int, nbytes: float, root: int = 0, chunks: int | None = None) -> Schedule:
    """Pipelined chain reduction ending at ``root`` (root+1 first, root last)."""
    return _chain(n, nbytes, (root + 1 + np.arange(n)) % n, chunks)


def all_to_all(n: int, nbytes: float) -> Schedule:
    """Pairwise-exchange all-to-all: ``n-1`` steps, in step k rank i sends to rank i+k.

    >>> all_to_all(3, 9.0).step(1).dst.tolist()
    [2, 0, 1]
    """
    i = np.arange(n)
    return Schedule(n, n - 1, lambda s: Step(n, i, (i + s + 1) % n, nbytes / n))
