"""Simulated handles: SimPy events that remember when their data started and stopped moving.

A role program yields these; the driver waits on them and splits the time it was blocked into
*communication* (some of the operation's data was moving) and *idle* (waiting for a peer to
join a collective or to start sending).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import simpy

__all__ = ["Op", "busy_time"]


class Op(simpy.Event):
    """An event with the interval during which its data moved.

    ``kind`` is ``"compute"`` or ``"comm"``; ``started_at`` is when the transfer began (the
    last rank joined, or the sender started), ``finished_at`` when it completed. ``children``
    holds the ops a ``wait_all`` stands for.
    """

    def __init__(self, env: simpy.Environment, kind: str = "comm") -> None:
        super().__init__(env)
        self.kind = kind
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.children: Sequence[Op] = ()

    def finish(self, value: Any = None, started_at: float | None = None) -> None:
        """Succeed now, recording the interval."""
        now = self.env.now
        self.started_at = now if started_at is None else started_at
        self.finished_at = now
        self.succeed(value)


def busy_time(op: Op, since: float, until: float, kinds: tuple[str, ...] = ("comm",)) -> float:
    """Length of the union of the active intervals of ``op``'s leaves of the given ``kinds``
    within ``[since, until]`` (for a communication op: while its data was moving).

    Examples
    --------
    >>> env = simpy.Environment()
    >>> a, b = Op(env), Op(env)
    >>> a.started_at, a.finished_at, b.started_at, b.finished_at = 1.0, 3.0, 2.0, 5.0
    >>> parent = Op(env); parent.children = (a, b)
    >>> busy_time(parent, 0.0, 4.0)
    3.0
    """
    leaves = _leaves(op)
    spans = sorted(
        (max(since, o.started_at), min(until, o.finished_at))
        for o in leaves
        if o.kind in kinds and o.started_at is not None and o.finished_at is not None
    )
    total, cursor = 0.0, since
    for start, stop in spans:
        start = max(start, cursor)
        if stop > start:
            total += stop - start
            cursor = stop
    return total


def _leaves(op: Op) -> list[Op]:
    if not op.children:
        return [op]
    out: list[Op] = []
    for child in op.children:
        out.extend(_leaves(child))
    return out
