"""What PyTorch's gloo backend runs where no other family here builds the same messages.

``nbytes`` is the full buffer per rank, as everywhere in :mod:`sim.collectives` (the input of
a reduction). Sources: ``pytorch/gloo`` ``gloo/reduce.cc`` and PyTorch's
``torch/csrc/distributed/c10d/ProcessGroupGloo.cpp`` (see ``docs/collectives.md``).

* reduce (``ring_to_root``): gloo's ``reduce()`` runs a ring reduce-scatter (``n-1`` steps of
  ``nbytes/n``), then every rank but the root sends its reduced chunk of ``nbytes/n``
  straight to the root. Each non-root rank sends ``nbytes`` in all, the root
  ``(n-1)/n * nbytes``.
* reduce-scatter (``ring_all_reduce``): ``ProcessGroupGloo::_reduce_scatter_base`` clones the
  input, runs a full ring all-reduce on it and keeps this rank's chunk, so every rank sends
  ``2(n-1)/n * nbytes``: twice a ring reduce-scatter.

gloo's ring sends to ``rank-1`` where commsim's sends to ``rank+1``; on a symmetric fabric the
times are the same, and the direction is kept commsim's so that these builders share the ring
family's routed rounds.
"""

from __future__ import annotations

import numpy as np

from sim.collectives import ring
from sim.collectives.schedule import Chain, Schedule, Step

__all__ = ["reduce", "reduce_scatter"]


def reduce(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Ring reduce-scatter, then each rank's reduced chunk straight to ``root``.

    >>> s = reduce(4, 8.0, root=1)
    >>> s.n_steps, s.step(3).src.tolist(), s.step(3).dst.tolist(), s.step(3).nbytes.tolist()
    (4, [0, 2, 3], [1, 1, 1], [2.0, 2.0, 2.0])
    """
    if n < 2:
        return Schedule.of(n, [])
    others = np.delete(np.arange(n), root)
    to_root = Step(n, others, np.full(others.size, root), nbytes / n)
    return Chain([ring.reduce_scatter(n, nbytes), Schedule.of(n, [to_root])])


def reduce_scatter(n: int, nbytes: float) -> Schedule:
    """A ring all-reduce of the whole input (each rank then keeps its own chunk).

    >>> reduce_scatter(4, 8.0).n_steps, reduce_scatter(4, 8.0).step(0).nbytes.tolist()
    (6, [2.0, 2.0, 2.0, 2.0])
    """
    return ring.all_reduce(n, nbytes)
