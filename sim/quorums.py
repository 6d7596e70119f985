"""Quorums in simulated time: the membership rendezvous behind ``w.quorum``.

A round of a set of ranks forms once every one of them that is live has asked (a crashed
rank is waited for until its crash is detected, a restarted one is waited for again), or at
the first asker's ``timeout`` with at least ``min_size`` members; every member then gets the
same :class:`strategies.membership.Quorum`. Asking costs no simulated time beyond that wait
(torchft's lighthouse answers in one round trip, small beside a step).

With links down (:mod:`sim.partitions`), a round holds only the primary part of its live
ranks: a rank the links down cut off from it is not waited for, and if it asks it waits in
the next round; it is ``cut`` out of the run's owners then, and once a quorum admits it
again it is healed from a live peer (:attr:`~strategies.membership.Quorum.reconnected`). A
primary part smaller than ``min_size`` with no link repair to come ends the run
(``on_stuck``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import simpy

from sim.failures import Failures
from sim.partitions import Partitions
from strategies.checks import Group
from strategies.handles import Handle
from strategies.membership import Quorum
from strategies.operations import Operation
from topologies.partitions import stuck

__all__ = ["Quorums"]


@dataclass
class _Round:
    ranks: tuple[int, ...]
    min_size: int
    callers: dict[int, tuple[Handle[Quorum], int]] = field(default_factory=dict)
    watched: set[int] = field(default_factory=set)  # undetected crashes a check is set for


class Quorums:
    """Every set of ranks' current round, and the last quorum each formed."""

    def __init__(self, env: simpy.Environment, failures: Failures) -> None:
        self.env = env
        self.failures = failures
        self._rounds: dict[tuple[int, ...], _Round] = {}
        self._ids: dict[tuple[int, ...], int] = {}
        self._last: dict[tuple[int, ...], tuple[int, ...]] = {}
        #: Links down (None: the run has no link fault, and no round ever asks).
        self.partitions: Partitions | None = None
        #: Hears of a rank cut off from the quorums (True) and admitted again (False), and
        #: since when (the links' failure, for a cut; now, for a return).
        self.on_cut: Callable[[int, bool, float], None] | None = None
        #: Hears of a round that can no longer form (a sentence naming the links).
        self.on_stuck: Callable[[str], None] | None = None
        self._out: set[int] = set()  # ranks cut off from the quorums, until one admits them

    def ask(
        self,
        rank: int,
        ranks: tuple[int, ...],
        min_size: int,
        timeout: float | None,
        step: int,
        what: Operation,
    ) -> Handle[Quorum]:
        handle: Handle[Quorum] = Handle("comm", op=what)
        round_ = self._rounds.get(ranks)
        if round_ is None:
            round_ = self._rounds[ranks] = _Round(ranks, min_size)
        round_.min_size = max(round_.min_size, min_size)
        round_.callers[rank] = (handle, step)
        if timeout is not None:
            self.env.timeout(timeout).callbacks.append(
                functools.partial(self._recheck, round_, True)
            )
        self._check(round_)
        return handle

    def crash(self, rank: int) -> None:
        """``rank`` crashed: it leaves the rounds it asked in; the others stop waiting for
        it once the crash is detected."""
        self._out.discard(rank)  # a restarted rank is healed as one
        for round_ in list(self._rounds.values()):
            if rank in round_.ranks:
                round_.callers.pop(rank, None)
                round_.watched.add(rank)
                self.env.timeout(self.failures.detect).callbacks.append(
                    functools.partial(self._recheck, round_, False)
                )

    def restart(self, rank: int) -> None:
        """``rank`` is back: rounds that were about to form without it wait for it."""

    def _recheck(self, round_: _Round, timed_out: bool, _: simpy.Event) -> None:
        self._check(round_, timed_out)

    def recheck(self) -> None:
        """The links changed (one went down ``detect`` ago, or came back): every round
        looks again at whom it holds."""
        for round_ in list(self._rounds.values()):
            self._check(round_)

    def _primary(self, round_: _Round) -> frozenset[int] | None:
        """The round's ranks in the primary part, or None where no partition is known."""
        if self.partitions is None:
            return None
        failures = self.failures
        live = [r for r in round_.ranks if not failures.known_down(r)]
        primary = self.partitions.primary(live)
        if primary is None:
            return None
        if len(primary) < round_.min_size and not self.partitions.pending_ups:
            self._stuck(round_, primary)
        return primary

    def _stuck(self, round_: _Round, primary: frozenset[int]) -> None:
        if self.on_stuck is None or self.partitions is None:
            return
        failures = self.failures
        out = sorted(r for r in round_.ranks if r not in primary and not failures.known_down(r))
        self.on_stuck(stuck(self.partitions.cut_by(), out, primary, round_.min_size))

    def _check(self, round_: _Round, timed_out: bool = False) -> None:
        if self._rounds.get(round_.ranks) is not round_:
            return  # formed already
        callers = round_.callers
        primary = self._primary(round_)
        if primary is not None:
            if sum(r in primary for r in callers) < round_.min_size:
                return
        elif len(callers) < round_.min_size:
            return
        failures = self.failures
        waiting = [
            r
            for r in round_.ranks
            if r not in callers and not failures.known_down(r) and (primary is None or r in primary)
        ]
        if waiting and not timed_out:
            for r in waiting:  # a crash not yet detected: look again when it is
                if failures.is_down(r) and r not in round_.watched:
                    round_.watched.add(r)
                    delay = failures.detected_at(r) - float(self.env.now)
                    self.env.timeout(max(delay, 0.0)).callbacks.append(
                        functools.partial(self._recheck, round_, False)
                    )
            return
        self._form(round_, primary)

    def _form(self, round_: _Round, primary: frozenset[int] | None = None) -> None:
        ranks = round_.ranks
        del self._rounds[ranks]
        qid = self._ids[ranks] = self._ids.get(ranks, 0) + 1
        if primary is None:
            members = tuple(sorted(round_.callers))
        else:
            members = tuple(sorted(r for r in round_.callers if r in primary))
        reconnected = self._admit(round_, members, primary)
        last = self._last.get(ranks)
        joined = () if last is None else tuple(r for r in members if r not in last)
        self._last[ranks] = members
        group = Group(members, qid)
        self.failures.born[group.key] = float(self.env.now)
        quorum = Quorum(
            qid,
            members,
            joined,
            tuple(round_.callers[r][1] for r in members),
            group,
            reconnected,
        )
        for r in members:
            round_.callers[r][0].resolve(quorum, at=self.env.now, started_at=self.env.now)

    def _admit(
        self, round_: _Round, members: tuple[int, ...], primary: frozenset[int] | None
    ) -> tuple[int, ...]:
        """Who is cut off by this quorum (callers left out wait in the next round) and who
        is admitted again; returns the latter (they are healed)."""
        if primary is None and not self._out:
            return ()
        if primary is not None:
            failures = self.failures
            left = {r: c for r, c in round_.callers.items() if r not in primary}
            if left:  # they wait for a quorum that can hold them
                self._rounds[round_.ranks] = _Round(round_.ranks, round_.min_size, left)
            assert self.partitions is not None
            since = self.partitions.since()
            for r in round_.ranks:
                if r not in primary and r not in self._out and not failures.is_down(r):
                    self._out.add(r)
                    if self.on_cut is not None:
                        self.on_cut(r, True, since)
        back = tuple(r for r in members if r in self._out)
        for r in back:
            self._out.discard(r)
            if self.on_cut is not None:
                self.on_cut(r, False, float(self.env.now))
        return back

    def waiting(self, handle: Handle[Any]) -> list[int]:
        """Live ranks a pending quorum ``handle`` still waits for (deadlock reports)."""
        for round_ in self._rounds.values():
            if any(h is handle for h, _ in round_.callers.values()):
                return [r for r in round_.ranks if r not in round_.callers]
        return []
