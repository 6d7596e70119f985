"""Time accounting for simulated waits: how much of a wait was compute, moving data, or idle.

A role program yields :class:`strategies.handles.Handle` objects; each records when its work
started and finished (``started_at``, ``finished_at``) and its ``kind``
(:data:`strategies.handles.Kind`: ``"compute"``, ``"comm"``, ``"idle"``). The driver splits
the time a rank was blocked into *compute*, *communication* (some of the operation's data was
moving) and *idle* (waiting for a peer to join a collective or to post its receive, or
sleeping); :func:`wait_spans` says when, for the run's timeline.
"""

from __future__ import annotations

from typing import Any

from strategies.handles import Handle, Kind

__all__ = ["busy_time", "wait_spans"]


def busy_time(
    op: Handle[Any], since: float, until: float, kinds: tuple[Kind, ...] = ("comm",)
) -> float:
    """Length of the union of the active intervals of ``op``'s leaves of the given ``kinds``
    within ``[since, until]`` (for a communication op: while its data was moving).

    Examples
    --------
    >>> a, b = Handle(), Handle()
    >>> a.resolve(at=3.0, started_at=1.0); b.resolve(at=5.0, started_at=2.0)
    >>> parent = Handle(); parent.children = (a, b)
    >>> busy_time(parent, 0.0, 4.0)
    3.0
    """
    spans = sorted(
        (max(since, o.started_at), min(until, o.finished_at))
        for o in _leaves(op)
        if o.kind in kinds and o.started_at is not None and o.finished_at is not None
    )
    total, cursor = 0.0, since
    for start, stop in spans:
        start = max(start, cursor)
        if stop > start:
            total += stop - start
            cursor = stop
    return total


def wait_spans(op: Handle[Any], since: float, until: float) -> list[tuple[str, float, float]]:
    """A wait on ``op`` over ``[since, until]`` cut into sequential ``(category, start, end)``
    pieces covering it, as :func:`busy_time` counts it: ``"compute"`` while some compute leaf
    was active, else ``"comm"`` while some communication leaf was, else ``"idle"``.

    Examples
    --------
    >>> a, b = Handle("compute"), Handle("comm")
    >>> a.resolve(at=2.0, started_at=1.0); b.resolve(at=3.0, started_at=1.5)
    >>> both = Handle(); both.children = (a, b)
    >>> wait_spans(both, 0.0, 4.0)
    [('idle', 0.0, 1.0), ('compute', 1.0, 2.0), ('comm', 2.0, 3.0), ('idle', 3.0, 4.0)]
    """
    compute = _union(op, since, until, ("compute",))
    busy = _union(op, since, until, ("compute", "comm"))
    cuts = sorted({since, until, *(t for span in compute + busy for t in span)})
    pieces: list[tuple[str, float, float]] = []
    for start, stop in zip(cuts, cuts[1:]):
        mid = (start + stop) / 2
        if any(a <= mid < b for a, b in compute):
            category = "compute"
        elif any(a <= mid < b for a, b in busy):
            category = "comm"
        else:
            category = "idle"
        if pieces and pieces[-1][0] == category:
            pieces[-1] = (category, pieces[-1][1], stop)
        else:
            pieces.append((category, start, stop))
    return pieces


def _union(
    op: Handle[Any], since: float, until: float, kinds: tuple[Kind, ...]
) -> list[tuple[float, float]]:
    """The active intervals of ``op``'s leaves of ``kinds``, clipped and merged."""
    merged: list[tuple[float, float]] = []
    for start, stop in sorted(
        (max(since, o.started_at), min(until, o.finished_at))
        for o in _leaves(op)
        if o.kind in kinds and o.started_at is not None and o.finished_at is not None
    ):
        if stop <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _leaves(op: Handle[Any]) -> list[Handle[Any]]:
    if not op.children:
        return [op]
    out: list[Handle[Any]] = []
    for child in op.children:
        out.extend(_leaves(child))
    return out
