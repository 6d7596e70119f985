"""Quorums in simulated time: the membership rendezvous behind ``w.quorum``.

A round of a set of ranks forms once every one of them that is live has asked (a crashed
rank is waited for until its crash is detected, a restarted one is waited for again), or at
the first asker's ``timeout`` with at least ``min_size`` members; every member then gets the
same :class:`strategies.membership.Quorum`. Asking costs no simulated time beyond that wait
(torchft's lighthouse answers in one round trip, small beside a step).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import simpy

from sim.failures import Failures
from strategies.checks import Group
from strategies.handles import Handle
from strategies.membership import Quorum
from strategies.operations import Operation

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

    def _check(self, round_: _Round, timed_out: bool = False) -> None:
        if self._rounds.get(round_.ranks) is not round_:
            return  # formed already
        callers = round_.callers
        if len(callers) < round_.min_size:
            return
        failures = self.failures
        waiting = [r for r in round_.ranks if r not in callers and not failures.known_down(r)]
        if waiting and not timed_out:
            for r in waiting:  # a crash not yet detected: look again when it is
                if failures.is_down(r) and r not in round_.watched:
                    round_.watched.add(r)
                    delay = failures.detected_at(r) - float(self.env.now)
                    self.env.timeout(max(delay, 0.0)).callbacks.append(
                        functools.partial(self._recheck, round_, False)
                    )
            return
        self._form(round_)

    def _form(self, round_: _Round) -> None:
        ranks = round_.ranks
        del self._rounds[ranks]
        qid = self._ids[ranks] = self._ids.get(ranks, 0) + 1
        members = tuple(sorted(round_.callers))
        last = self._last.get(ranks)
        joined = () if last is None else tuple(r for r in members if r not in last)
        self._last[ranks] = members
        group = Group(members, qid)
        self.failures.born[group.key] = float(self.env.now)
        quorum = Quorum(qid, members, joined, tuple(round_.callers[r][1] for r in members), group)
        for r in members:
            round_.callers[r][0].resolve(quorum, at=self.env.now, started_at=self.env.now)

    def waiting(self, handle: Handle[Any]) -> list[int]:
        """Live ranks a pending quorum ``handle`` still waits for (deadlock reports)."""
        for round_ in self._rounds.values():
            if any(h is handle for h, _ in round_.callers.values()):
                return [r for r in round_.ranks if r not in round_.callers]
        return []
