"""When a rank's transport call may start: after its groups exist and its own work is done.

torch.distributed makes every rank create every group, in one order, and ``new_group`` is a
collective of the whole world that blocks on a real world: nothing a rank does after creating
a group can happen before every rank has created it. A rank's own work (a server's step)
likewise keeps a real rank's thread busy. :class:`Admission` checks the group order and holds
the calls that must wait, each behind a proxy handle, starting them in program order when they
may. :class:`sim.comm.Fabric` passes every call through it.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strategies.comm import CommError, Group
from strategies.handles import Handle
from strategies.operations import Operation

__all__ = ["Admission"]


@dataclass
class _Held:
    needed: int  # groups the rank had created when it made the call
    work: Handle[Any] | None  # the rank's own work running then
    proxy: Handle[Any]
    start: Callable[[], Handle[Any]]


def _finish_as(proxy: Handle[Any], inner: Handle[Any]) -> None:
    """Finish a held call's ``proxy`` as the call it stood for (``inner``) finished."""
    value, error = inner.outcome()
    if error is not None:
        proxy.fail(error, at=inner.finished_at)
    else:
        proxy.resolve(value, at=inner.finished_at, started_at=inner.started_at)


class Admission:
    """The group creations of every rank of one world, and each rank's calls held until then.

    Parameters
    ----------
    world_size : int
        The ranks that must each create every group.

    Examples
    --------
    Rank 0 creates a group; its next call waits until rank 1 has created it too:

    >>> from strategies.comm import Group
    >>> from strategies.handles import Handle, done
    >>> from strategies.operations import Operation
    >>> gate = Admission(2)
    >>> gate.new_group(0, Group((0, 1)))
    >>> call = gate.admit(0, Operation("barrier"), None, lambda: done("started"))
    >>> call.done, call.held
    (False, 0)
    >>> gate.new_group(1, Group((0, 1)))
    >>> call.value
    'started'
    >>> gate.check_groups()  # every rank created every group
    """

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._group_order: list[tuple[int, ...]] = []
        self._groups_made: dict[int, int] = {}
        self._creators: list[int] = []  # ranks that created each group so far
        self._complete = 0  # leading groups every rank has created
        # Each rank's calls that cannot start yet, in program order: (groups the rank had
        # made, its own work then running, the handle returned, how to start the call).
        self._held: dict[int, deque[_Held]] = {}
        # Restarted ranks re-create the groups that exist already (their new process runs
        # the program from the start): how many each has re-created.
        self._replaying: dict[int, int] = {}

    def crash(self, rank: int) -> None:
        """``rank`` crashed: its calls held here never start."""
        self._held.pop(rank, None)

    def restart(self, rank: int) -> None:
        """``rank`` is back as a new process: the groups it creates again are the ones that
        exist (a real rank's new process makes its process groups anew, alone)."""
        self._replaying[rank] = 0

    def new_group(self, rank: int, group: Group) -> None:
        """Record ``rank``'s next group creation; it must match every other rank's."""
        replayed = self._replaying.get(rank)
        if replayed is not None and replayed < self._groups_made.get(rank, 0):
            if not _same(self._group_order[replayed], group.ranks):
                raise CommError(
                    f"rank {rank}, restarted, created group #{replayed} over {group.ranks} but "
                    f"the run's group #{replayed} is {self._group_order[replayed]}; a restarted "
                    "rank's program must create the groups its first one did, in that order"
                )
            self._replaying[rank] = replayed + 1
            return
        index = self._groups_made.get(rank, 0)
        if index < len(self._group_order) and not _same(self._group_order[index], group.ranks):
            raise CommError(
                f"rank {rank} created group #{index} over {group.ranks} but another rank's "
                f"group #{index} is {self._group_order[index]}; every rank must create the same "
                "groups in the same order (torch.distributed requires it)"
            )
        if index == len(self._group_order):
            self._group_order.append(group.ranks)
            self._creators.append(0)
        self._groups_made[rank] = index + 1
        self._creators[index] += 1
        while (
            self._complete < len(self._creators)
            and self._creators[self._complete] == self.world_size
        ):
            self._complete += 1
        for held in list(self._held):
            self._release(held)

    def admit(
        self,
        rank: int,
        what: Operation,
        work: Handle[Any] | None,
        start: Callable[[], Handle[Any]],
    ) -> Handle[Any]:
        """Start a call of ``rank`` now (``start()``), or hold it and return its handle.

        A call waits until every rank has created the groups ``rank`` had created when it
        was made (``new_group`` is a collective of the whole world that blocks on a real
        world, so nothing the rank does after it can happen before), until the rank's own
        ``work`` running then has finished (a real rank's thread is busy with it: a server's
        step), and until the rank's earlier held calls have started: calls start in program
        order. A wait on the handle counts as compute while that work runs, then as
        communication.
        """
        needed = self._groups_made.get(rank, 0)
        queue = self._held.get(rank)
        if not queue and needed <= self._complete and work is None:
            return start()
        # Why it is held, as the handle's notes (its description names them).
        held = needed - 1 if needed > self._complete else None
        proxy: Handle[Any] = Handle("comm", op=what, held=held, after=work)
        proxy.children = (work,) if work is not None else ()
        self._held.setdefault(rank, deque()).append(_Held(needed, work, proxy, start))
        if work is not None:
            work.add_callback(lambda _: self._release(rank))
        return proxy

    def _release(self, rank: int) -> None:
        """Start ``rank``'s held calls that may start now, in the order they were made."""
        queue = self._held.get(rank)
        while queue:
            held = queue[0]
            if held.needed > self._complete or (held.work is not None and not held.work.done):
                return
            queue.popleft()
            inner = held.start()
            proxy = held.proxy
            proxy.children = (held.work, inner) if held.work is not None else (inner,)
            inner.add_callback(functools.partial(_finish_as, proxy))
        self._held.pop(rank, None)

    def check_groups(self) -> None:
        """Raise if some rank did not create every group (a real run would hang there)."""
        for rank in range(self.world_size):
            made = self._groups_made.get(rank, 0)
            if made != len(self._group_order):
                raise CommError(
                    f"rank {rank} created {made} of the {len(self._group_order)} groups the other "
                    "ranks created; every rank of the world must call new_group for every group, "
                    "members or not (torch.distributed requires it)"
                )


def _same(ranks: tuple[int, ...], other: tuple[int, ...]) -> bool:
    """Whether two groups' ranks are equal; the one shared tuple every rank's group holds is
    recognised at once (a tuple's ``==`` walks all its items even against itself)."""
    return ranks is other or ranks == other
