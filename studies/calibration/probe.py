"""The measurements ``commsim calibrate`` makes, written as a strategy.

Running the probe through the ordinary backends means it measures what strategies meet:
the same transport (a message is an envelope, then its payload), the same collectives, the
same compute path and launcher. The same probe runs in ``sim``, where it must give back the
simulator's own parameters, which is how the fits are tested.

Each measurement is a ``w.log`` row (``rank``, ``time`` plus):

* ``pingpong``: one-way seconds (half a round trip) of ``size`` payload bytes from ``src``
  to ``dst``, logged by ``src``;
* ``all_reduce`` / ``broadcast``: seconds from a barrier's end to the collective's end on
  this rank, for ``size`` bytes per rank, repeat ``repeat``;
* ``fanout``: seconds from a barrier's end until this rank (``dst``) has received the largest
  size from the first rank (``src``), which sent it to every other rank at once, repeat
  ``repeat`` (how unevenly concurrent flows share the sender's link: TCP ends them apart);
* ``compute``: seconds of one worker step (a gradient and its optimizer step), ``gradient``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import torch

from strategies.base import Program, Strategy
from strategies.context import WorkerContext
from strategies.handles import all_of

__all__ = ["CalibrationProbe", "probe_sizes"]


def probe_sizes(min_size: int, max_size: int, points: int) -> list[int]:
    """``points`` payload sizes from ``min_size`` to ``max_size`` bytes, evenly spaced in
    log scale and rounded to whole float32 values.

    >>> probe_sizes(1024, 4 * 2**20, 4)
    [1024, 16384, 262144, 4194304]
    """
    if points < 2 or not 4 <= min_size < max_size:
        raise ValueError(
            f"sizes {min_size}..{max_size} bytes in {points} points: need 4 <= min_size < "
            "max_size and points >= 2"
        )
    raw = np.geomspace(min_size, max_size, points)
    sizes = sorted({max(4, int(round(x / 4)) * 4) for x in raw})
    if len(sizes) < 2:
        raise ValueError(
            f"sizes {min_size}..{max_size} bytes give one float32 size; widen the range"
        )
    return sizes


class CalibrationProbe(Strategy):
    """Ping-pong every pair of ranks, time all-reduce and broadcast, send from one rank to all
    at once, then time worker steps.

    Parameters
    ----------
    min_size, max_size, points
        Payload bytes of each message and collective: ``points`` sizes, log-spaced
        (:func:`probe_sizes`).
    repeats
        Timed repetitions per size (after one untimed warm-up); the fan-out, a distribution
        rather than one time, is timed three times as often.
    pairs
        ``"all"`` pairs of ranks, or ``"first"``: rank 0 with each other rank.

    The run's ``steps`` is the number of worker steps timed last (all ranks at once, as in
    training, so ranks sharing cores slow each other as they would).

    Examples
    --------
    >>> CalibrationProbe(max_size=65536, points=3).sizes
    [1024, 8192, 65536]
    >>> CalibrationProbe(repeats=0)
    Traceback (most recent call last):
    ...
    ValueError: repeats=0 must be an int >= 1
    """

    name = "calibration_probe"

    def __init__(
        self,
        min_size: int = 1024,
        max_size: int = 4 * 2**20,
        points: int = 7,
        repeats: int = 3,
        pairs: str = "all",
    ) -> None:
        sizes = probe_sizes(min_size, max_size, points)
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats={repeats!r} must be an int >= 1")
        if pairs not in ("all", "first"):
            raise ValueError(f"pairs={pairs!r} must be 'all' or 'first'")
        super().__init__(
            min_size=min_size, max_size=max_size, points=points, repeats=repeats, pairs=pairs
        )
        self.sizes, self.repeats, self.pairs = sizes, repeats, pairs

    def _pairs(self, ranks: Sequence[int]) -> list[tuple[int, int]]:
        if self.pairs == "first":
            return [(ranks[0], r) for r in ranks[1:]]
        return list(combinations(ranks, 2))

    def worker(self, w: WorkerContext) -> Program:
        yield from self._pingpong(w)
        yield from self._collectives(w)
        yield from self._fanout(w)
        gradient = 0
        while not w.done:
            start = w.now
            grads = yield w.compute_gradients()
            w.apply(grads)
            w.log(compute=w.now - start, gradient=gradient)
            gradient += 1

    def _pingpong(self, w: WorkerContext) -> Program:
        for src, dst in self._pairs(w.workers):
            for size in self.sizes:
                yield w.comm.barrier()  # one pair at a time, on a quiet network
                if w.rank not in (src, dst):
                    continue
                buffer = torch.zeros(size // 4)
                for repeat in range(self.repeats + 1):
                    start = w.now
                    if w.rank == src:
                        yield w.comm.send(buffer, dst)
                        yield w.comm.recv(buffer, dst)
                    else:
                        yield w.comm.recv(buffer, src)
                        yield w.comm.send(buffer, src)
                    if w.rank == src and repeat:  # the first pays for connection set-up
                        one_way = (w.now - start) / 2
                        w.log(pingpong=one_way, size=size, src=src, dst=dst)

    def _collectives(self, w: WorkerContext) -> Program:
        for op in ("all_reduce", "broadcast"):
            for size in self.sizes:
                buffer = torch.zeros(size // 4)
                for repeat in range(self.repeats + 1):
                    yield w.comm.barrier()
                    start = w.now
                    if op == "all_reduce":
                        yield w.comm.all_reduce(buffer)
                    else:
                        yield w.comm.broadcast(buffer, src=w.workers[0])
                    if repeat:
                        values: dict[str, Any] = {op: w.now - start}
                        w.log(**values, size=size, repeat=repeat)

    def _fanout(self, w: WorkerContext) -> Program:
        root, size = w.workers[0], self.sizes[-1]
        buffer = torch.zeros(size // 4)
        for repeat in range(3 * self.repeats + 1):
            yield w.comm.barrier()
            start = w.now
            if w.rank == root:
                yield all_of([w.comm.send(buffer, dst) for dst in w.workers if dst != root])
                continue
            yield w.comm.recv(buffer, root)
            if repeat:
                w.log(fanout=w.now - start, size=size, src=root, dst=w.rank, repeat=repeat)
