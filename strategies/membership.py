"""Who is alive: quorums of live ranks, and healing a rank that rejoined, in both backends.

A program that must survive crashes asks for a quorum before each round (torchft's
``start_quorum``): ``q = yield w.quorum()`` waits until every live rank of the round has
asked (a crashed one is left out once its crash is detected, a restarted one is waited for),
and gives every member the same :class:`Quorum`: its id, its members, who joined since the
last one, each member's optimizer step, and a group of the members for collectives (a new
group per quorum, as torchft rebuilds its process groups). :func:`heal` then brings members
that are behind (a restarted rank starts with no state) up to date from a live peer over the
network, so the bytes are charged (``sim``) or sent (``real``).

Examples
--------
>>> from strategies.checks import Group
>>> q = Quorum(3, (0, 1, 2), (2,), (40, 40, 0), Group((0, 1, 2), 3))
>>> q.max_step, q.behind, q.source
(40, (2,), 0)
>>> q = Quorum(4, (0, 1, 2), (2,), (40, 40, 40), Group((0, 1, 2), 4), reconnected=(0,))
>>> q.behind, q.source
((0,), 1)
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.checks import Group
from strategies.shapes import numbers_device

if TYPE_CHECKING:
    from strategies.context import WorkerContext

__all__ = ["Quorum", "heal"]


@dataclass(frozen=True)
class Quorum:
    """One agreed membership (see the module docstring).

    Attributes
    ----------
    id
        Increases with every quorum of the same ranks' rounds (from 1).
    members
        The live ranks that asked, in rank order.
    joined
        Members that were not members of the previous quorum (a restarted rank, a rank that
        was slow to ask); empty in the first quorum.
    steps
        Each member's optimizer step when it asked, in ``members`` order.
    group
        A group of the members (``Group(members, epoch=id)``) for collectives this round.
    reconnected
        Members admitted again after a partition cut them off (``sim``): alive all along,
        but their state is no longer the quorum's, so they are healed whatever their step.
    """

    id: int
    members: tuple[int, ...]
    joined: tuple[int, ...]
    steps: tuple[int, ...]
    group: Group
    reconnected: tuple[int, ...] = ()

    @property
    def max_step(self) -> int:
        """The furthest step any member has reached."""
        return max(self.steps)

    @property
    def behind(self) -> tuple[int, ...]:
        """Members whose step is behind :attr:`max_step` (they need healing)."""
        top, again = self.max_step, self.reconnected
        return tuple(r for r, s in zip(self.members, self.steps) if s < top or r in again)

    @property
    def source(self) -> int:
        """The member that heals the others: the lowest rank at :attr:`max_step` (one that
        stayed in the quorum, where one did)."""
        top, again = self.max_step, self.reconnected
        at_top = [r for r, s in zip(self.members, self.steps) if s == top]
        return next((r for r in at_top if r not in again), at_top[0])


def heal(w: WorkerContext, quorum: Quorum) -> Generator[Any, Any, None]:
    """A sub-program (``yield from heal(w, q)``): the quorum's :attr:`~Quorum.source`
    broadcasts its state (parameters, optimizer buffers, then its step, version and the
    optimizer's numbers) over the quorum's group; every member that is
    :attr:`~Quorum.behind` takes it (``w.restore``), the others let it go. Every member
    calls it. A broadcast over the quorum's own group, not point-to-point: a restarted
    process on ``real`` has no group but the quorum's (torchft heals over its own
    transport; the bytes a behind member receives are the same)."""
    behind = quorum.behind
    if not behind:
        return
    # Every member has the same optimizer, so the same numbers' names (a behind one's own
    # values are replaced by the source's).
    flat, numbers = w.export()
    if w.rank == quorum.source:
        flat = flat.clone()  # sent as it is now, whatever the program does next
    else:
        flat = torch.empty(w.export_numel(), dtype=w.replica.flat.dtype, device=w.device)
    names = sorted(numbers)
    meta = torch.tensor(
        [float(w.step), float(w.version), *(float(numbers[k]) for k in names)],
        dtype=torch.float64,
        device=numbers_device(w.device),
    )
    flat = yield w.comm.broadcast(flat, src=quorum.source, group=quorum.group)
    meta = yield w.comm.broadcast(meta, src=quorum.source, group=quorum.group)
    if w.rank in behind:
        values = meta.tolist()
        w.restore(
            flat,
            step=int(values[0]),
            version=int(values[1]),
            numbers=dict(zip(names, values[2:])),
            nbytes=float(flat.numel() * flat.element_size()),
        )
