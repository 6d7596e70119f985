"""Time accounting for simulated waits: how much of a wait was compute, moving data, or idle.

A role program yields :class:`strategies.handles.Handle` objects; each records when its work
started and finished (``started_at``, ``finished_at``) and its ``kind`` (``"compute"``,
``"comm"``, ``"idle"``). The driver splits the time a rank was blocked into *compute*, *communication* (some
of the operation's data was moving) and *idle* (waiting for a peer to join a collective or to
post its receive, or sleeping).
"""

from __future__ import annotations

from typing import Any

from strategies.handles import Handle

__all__ = ["busy_time"]


def busy_time(
    op: Handle[Any], since: float, until: float, kinds: tuple[str, ...] = ("comm",)
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


def _leaves(op: Handle[Any]) -> list[Handle[Any]]:
    if not op.children:
        return [op]
    out: list[Handle[Any]] = []
    for child in op.children:
        out.extend(_leaves(child))
    return out
