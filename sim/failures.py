"""Crashed ranks in simulated time: which are down, since when, and when peers learn it.

A crash is known to the rank's peers ``detect`` simulated seconds after it happens (a
heartbeat timeout): an operation that involves a crashed rank fails with
:class:`strategies.PeerFailure` on every live rank it involves then, not earlier (a
collective with a dead member fails on every member, as NCCL aborts do). The world and the
groups of ``new_group`` are broken for good once a member crashed, as a real process group
is; a quorum's group is broken by a crash after the quorum formed.

Examples
--------
>>> import simpy
>>> from strategies.checks import Group
>>> env = simpy.Environment()
>>> failures = Failures(env, detect=3.0)
>>> failures.crash(2)
>>> failures.broken(Group((0, 1, 2))), failures.detected_at(2), failures.is_down(2)
((2,), 3.0, True)
>>> failures.restart(2); failures.is_down(2), failures.broken(Group((0, 1, 2)))
(False, (2,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import simpy

from strategies.checks import Group, PeerFailure
from strategies.handles import Handle

__all__ = ["Failures"]


class Failures:
    """The crashes of one simulated run (see the module docstring)."""

    def __init__(self, env: simpy.Environment, detect: float) -> None:
        self.env = env
        self.detect = detect
        self.down: dict[int, float] = {}  # rank -> when it crashed, while it is down
        self.crashed_at: dict[int, float] = {}  # rank -> its last crash, kept after a restart
        self.born: dict[Group, float] = {}  # a quorum group's formation

    def __bool__(self) -> bool:
        """Whether any rank ever crashed (a run without faults never asks more)."""
        return bool(self.crashed_at)

    def crash(self, rank: int) -> None:
        now = float(self.env.now)
        self.down[rank] = self.crashed_at[rank] = now

    def restart(self, rank: int) -> None:
        self.down.pop(rank, None)

    def is_down(self, rank: int) -> bool:
        return rank in self.down

    def detected_at(self, rank: int) -> float:
        """When peers learn ``rank``'s last crash."""
        return self.crashed_at[rank] + self.detect

    def known_down(self, rank: int) -> bool:
        """``rank`` is down and its peers know it by now."""
        return rank in self.down and self.env.now >= self.down[rank] + self.detect

    def broken(self, group: Group) -> tuple[int, ...]:
        """Members of ``group`` that crashed after it was made (it can never complete)."""
        if not self.crashed_at:
            return ()
        born = self.born.get(group.key, -math.inf)
        crashed = self.crashed_at
        return tuple(r for r in group.ranks if r in crashed and crashed[r] >= born)

    def fail(self, handle: Handle[Any], ranks: Sequence[int], what: str) -> None:
        """Fail ``handle`` with :class:`PeerFailure` once the crashes of ``ranks`` are known
        (at once if they are), unless it finished before."""
        ranks = tuple(sorted(set(ranks)))
        at = max(self.detected_at(r) for r in ranks)
        crashes = ", ".join(f"rank {r} crashed at t={self.crashed_at[r]:.6g}s" for r in ranks)
        error = PeerFailure(f"{what}: {crashes}", ranks)

        def now_fail(_: Any = None) -> None:
            if not handle.done:
                handle.fail(error, at=self.env.now)

        if at <= self.env.now:
            now_fail()
        else:
            self.env.timeout(at - self.env.now).callbacks.append(now_fail)
