"""Communication overlapped with computation: how much of a rank's communication was hidden.

A rank's time splits into compute, communication and idle as its program waits (the
backends' drivers book each wait); the communication so booked is *exposed*: the rank
waited for data to move and computed nothing meanwhile. Communication that moved while the
rank computed (a bucket's all-reduce during backward, a gossip exchange beside a gradient) is
*overlapped*: it costs no time of its own. :class:`Overlap` keeps, per rank, when it computed
and when its communication moved data, and measures their intersection at the end.

What "moved" means is the backend's: ``sim`` knows when an operation's data started moving
(after every rank joined it); on ``real`` an operation's span runs from its call, since a
wall-clock wait cannot tell a peer's lateness from transfer time, so overlapped
communication there includes waiting for peers while the rank computed.

Intervals are kept as flat ``array('d')`` pairs (16 bytes each) and measured once, at the
end, by sorting: a communication may be booked long after it moved (a handle yielded late),
so no interval can be forgotten earlier without a guess.

Examples
--------
>>> o = Overlap()
>>> o.computing(0, 0.0, 3.0)
>>> o.communicating(0, 1.0, 2.0); o.communicating(0, 1.5, 4.0)  # a union: 1.0 to 4.0
>>> o.seconds(0), o.seconds(1)
(2.0, 0.0)

Kept with names (``labelled=True``, for the run's timeline), the overlapped communication is
also cut into sequential pieces, each named by the operation that moved then (the earliest
started one, while it lasts): the spans of a rank's second track in ``trace.json``.

>>> o = Overlap(labelled=True)
>>> o.computing(0, 0.0, 3.0)
>>> o.communicating(0, 1.0, 2.0, "a"); o.communicating(0, 1.5, 4.0, "b")
>>> o.pieces(0)
[('a', 1.0, 2.0), ('b', 2.0, 3.0)]
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from typing import Any

__all__ = ["Overlap", "comm_leaves"]


class Overlap:
    """Per rank, the compute and communication intervals, and their intersection."""

    __slots__ = ("_compute", "_comm", "_labels")

    def __init__(self, labelled: bool = False) -> None:
        self._compute: dict[int, array[float]] = {}
        self._comm: dict[int, array[float]] = {}
        # The name of each communication interval, in booking order (only for a trace: a
        # reference each, beside the interval's 16 bytes).
        self._labels: dict[int, list[Any]] | None = {} if labelled else None

    def computing(self, rank: int, start: float, end: float) -> None:
        """``rank`` computed over ``[start, end]``."""
        if end > start:
            spans = self._compute.get(rank)
            if spans is None:
                spans = self._compute[rank] = array("d")
            spans.extend((start, end))  # (one call a step, not two)

    def communicating(self, rank: int, start: float, end: float, label: Any = None) -> None:
        """Data of ``rank``'s communication moved over ``[start, end]``; ``label`` names it
        (kept when labelled)."""
        if end > start:
            spans = self._comm.get(rank)
            if spans is None:
                spans = self._comm[rank] = array("d")
            spans.extend((start, end))
            if self._labels is not None:
                self._labels.setdefault(rank, []).append(label)

    def seconds(self, rank: int) -> float:
        """Seconds in which ``rank``'s communication moved while it computed."""
        compute, comm = self._compute.get(rank), self._comm.get(rank)
        if not compute or not comm:
            return 0.0
        a, b = _union(compute), _union(comm)
        # A merge of the two sorted unions. Run once per rank at the end, but over two
        # intervals per step of the rank: comparisons, not max()/min() calls (the same
        # values: of two equal floats either is the one taken).
        total, i, j, na, nb = 0.0, 0, 0, len(a), len(b)
        while i < na and j < nb:
            (a0, a1), (b0, b1) = a[i], b[j]
            low = b0 if b0 > a0 else a0
            high = b1 if b1 < a1 else a1
            if high > low:
                total += high - low
            if a1 < b1:
                i += 1
            else:
                j += 1
        return total

    def pieces(self, rank: int) -> list[tuple[Any, float, float]]:
        """``rank``'s overlapped communication as sequential ``(label, start, end)`` pieces
        (their lengths add up to :meth:`seconds`): each moment of communication belongs to
        the earliest started operation still moving, and is kept where the rank computed.
        Without labels (``labelled=False``) the labels are None."""
        compute, comm = self._compute.get(rank), self._comm.get(rank)
        if not compute or not comm:
            return []
        labels = (self._labels or {}).get(rank) or [None] * (len(comm) // 2)
        # Sequential pieces covering the union of the communication, in start order (the
        # booking order breaks ties, so equal runs cut equally).
        order = sorted(range(len(labels)), key=lambda k: (comm[2 * k], k))
        moving: list[tuple[Any, float, float]] = []
        cursor = -math.inf
        for k in order:
            start, end = max(comm[2 * k], cursor), comm[2 * k + 1]
            if end > start:
                moving.append((labels[k], start, end))
                cursor = end
        a = _union(compute)
        out: list[tuple[Any, float, float]] = []
        i, j = 0, 0
        while i < len(a) and j < len(moving):
            label, since, until = moving[j]
            low, high = max(a[i][0], since), min(a[i][1], until)
            if high > low:
                out.append((label, low, high))
            if a[i][1] < until:
                i += 1
            else:
                j += 1
        return out


def comm_leaves(handle: Any) -> Iterable[tuple[Any, float, float]]:
    """When the communication leaves of a waited-on ``handle`` moved data, with each leaf's
    name (:attr:`Handle.label`): ``(label, started_at, finished_at)`` (a handle's
    ``children`` are what it stands for).

    >>> from strategies.handles import Handle, all_of
    >>> a = Handle("comm", "send"); a.resolve(at=2.0, started_at=1.0)
    >>> list(comm_leaves(a))
    [('send', 1.0, 2.0)]
    >>> b = Handle("compute"); b.resolve(at=3.0, started_at=0.0)
    >>> [(since, until) for _, since, until in comm_leaves(all_of([a, b]))]
    [(1.0, 2.0)]
    """
    stack = [handle]
    while stack:
        h = stack.pop()
        if h.children:
            stack.extend(h.children)
        elif h.kind == "comm" and h.started_at is not None and h.finished_at is not None:
            yield (h.label, h.started_at, h.finished_at)


def _union(flat: array[float]) -> list[tuple[float, float]]:
    pairs = sorted(zip(flat[0::2], flat[1::2]))
    merged: list[tuple[float, float]] = []
    for start, end in pairs:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
