"""Who is alive, and a process group of just them: quorums over the run's store.

Surviving ranks of a real run keep training after a peer is killed the way torchft does it:
the live ranks agree on a *quorum* (an id, its members, who joined since the last one), and
build a fresh gloo process group of just the members, under a store prefix of its own
(``quorum/ID``), so that the dead rank's group is never touched again and a process that
replaces it (same rank id, new process) meets the others in the next quorum's group.

It needs only the run's store, which must outlive every rank: the local launcher hosts it
(:func:`real.rendezvous.host_store`) and torchrun's agent does; a store hosted by rank 0
(srun without an agent) dies with rank 0, and no quorum can form after that.

* **Heartbeats.** A daemon thread adds 1 to ``beat/RANK`` every ``interval`` seconds and
  reads every rank's counter (one round trip); a rank whose counter has not moved for
  ``detect`` seconds of this rank's own observation is *silent*. Counters, not clocks, so
  nodes' clocks need not agree, and a watcher thread that was held up (a loaded machine)
  declares nobody dead for it: silence is measured up to its last observation.
* **Quorum ``q``.** A rank announces itself for ``q`` (``q`` is one past the latest quorum
  formed, found on the store, so a restarted process needs no memory of it). The quorum is
  decided as soon as every rank that is not silent has announced and there are
  ``min_size`` of them, or at ``timeout`` with ``min_size`` announced; the first rank to see
  that writes the members with ``compare_set``, and every rank reads the one written, so
  all agree even where their views of who is alive differ. A rank that announced too late
  for ``q`` (the members were written without it) announces for ``q + 1``.
* **Groups.** :meth:`Membership.group` builds a ``torch.distributed.ProcessGroup`` with a gloo
  backend over ``PrefixStore("quorum/ID", store)`` (as torchft's reconfigurable
  ``ProcessGroupGloo`` does): member ``members[i]`` is group rank ``i``. ``dist.new_group``
  cannot be used: it needs the default group, which holds the dead rank. Call the group's
  own methods (``group.allreduce([t]).wait()``, ``group.broadcast([t], root).wait()`` with
  the root's *group* rank); ``dist.all_reduce(t, group=group)`` works, but the
  ``torch.distributed`` calls that translate global ranks (``dist.broadcast``,
  ``dist.send``) refuse a group they did not register.
* **After a peer failure** (:func:`real.peer_failure.is_peer_failure`), drop every reference
  to the failed group (and its works): destroying a gloo group closes its connections, so a
  member blocked on *this* rank fails at once instead of at the group's timeout (gloo's
  ``abort()`` and ``shutdown()`` close nothing). Let the last reference go on the rank's own
  thread, once none of its works is in flight, never in a work's callback: the destructor
  joins gloo's threads, and on one of them aborts the process ("Resource deadlock avoided"). Name the dead with :meth:`Membership.dead`,
  then form the next quorum; it waits up to ``detect`` seconds for the dead to fall silent.

Why not torchft's own ``Manager``: it installs and runs here (torchft 0.2.0 on torch 2.13,
CPU), but it is built around replica groups that all-reduce once per step, averaged, with a
lighthouse server, a manager server per replica and healing over HTTP; commsim's programs
use any collective, send and receive, and its asynchronous strategies need the live members
without a per-step barrier. This module keeps torchft's mechanism (quorum ids, a group per
quorum under its own store prefix, healing from a live member) on the store the run has.

Examples
--------
Two quorums on one process (a world of one); the second has nobody new:

>>> import torch, torch.distributed as dist
>>> store = dist.HashStore()
>>> with Membership(lambda: store, rank=0, world_size=1, interval=0.05) as m:
...     first = m.quorum(min_size=1, timeout=5.0, detect=1.0)
...     second = m.quorum(min_size=1, timeout=5.0, detect=1.0)
...     t = torch.ones(2)
...     _ = m.group(second).allreduce([t]).wait()
>>> first, second
(Quorum(id=1, members=(0,), joined=(0,)), Quorum(id=2, members=(0,), joined=()))
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Membership", "PartitionStuck", "Quorum", "QuorumError", "space"]

PREFIX = "membership/"
_BEAT, _MEMBERS, _ANNOUNCE = "beat/{rank}", "{q}/members", "{q}/rank/{rank}"
_POLL = 0.01  # how often a rank waiting for a quorum looks at the store


class QuorumError(RuntimeError):
    """No quorum of the size asked for formed in time."""


class PartitionStuck(QuorumError):
    """No quorum can ever form: links down for good left a primary part smaller than the
    quorum's minimum (its message is the run's one-line end, as ``sim``'s)."""


def space(ranks: Iterable[int] | None, world_size: int) -> str:
    """Where the quorums of ``ranks`` live on the store, under the membership's prefix: each
    set of ranks has its own sequence of quorums (ids from 1), as in ``sim`` (a parameter
    server's workers form theirs without the servers). ``""`` for every rank of the run
    (``None``), so a run whose quorums are over every rank keeps its keys.

    >>> space(None, 4), space(range(4), 4), space([1, 2, 3], 4)
    ('', '', 'of/ce405b5bfdbf/')
    """
    if ranks is None:
        return ""
    members = tuple(sorted(set(ranks)))
    if members == tuple(range(world_size)):
        return ""
    digest = hashlib.blake2s(",".join(map(str, members)).encode(), digest_size=6).hexdigest()
    return f"of/{digest}/"


@dataclass(frozen=True)
class Quorum:
    """A membership the live ranks agreed on: its ``id`` (1, 2, ...: one per quorum formed
    in the run), its ``members`` in ascending order (``members[i]`` is rank ``i`` of its
    group), and those of them that ``joined``: not members of the quorum before it (every
    member, for the first).

    >>> q = Quorum(id=3, members=(0, 1, 2), joined=(2,))
    >>> q.index(2), q.size
    (2, 3)
    """

    id: int
    members: tuple[int, ...]
    joined: tuple[int, ...]
    #: Whose quorums these are (:func:`space`): ``""`` for every rank of the run.
    space: str = field(default="", repr=False)
    #: Live ranks a partition cut off (:mod:`real.partitions`): left out since this quorum
    #: (``cut``), or admitted again by it (``reconnected``, healed whatever their step).
    cut: tuple[int, ...] = field(default=(), repr=False)
    reconnected: tuple[int, ...] = field(default=(), repr=False)

    @property
    def size(self) -> int:
        return len(self.members)

    def index(self, rank: int) -> int:
        """``rank``'s rank in this quorum's group."""
        return self.members.index(rank)


class Membership:
    """One rank's view of the run's live ranks, its heartbeat, and its quorums (see the
    module docstring).

    Parameters
    ----------
    connect
        Returns a new client of the run's store (a ``SignedStore`` or a raw
        ``torch.distributed`` store; e.g. ``lambda: real.rendezvous.client(addr, port,
        timeout, secret)``). Called twice: one client for the heartbeat thread, one for the
        quorums and groups, since a client serves one call at a time and a group's
        rendezvous blocks its client.
    rank, world_size
        This rank (a restarted process keeps its rank id) and how many rank ids the run has.
    interval
        Seconds between heartbeats.
    prefix
        Where the membership's keys live on the store.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        rank: int,
        world_size: int,
        *,
        interval: float = 0.5,
        prefix: str = PREFIX,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is not in 0..{world_size - 1} (world_size)")
        if interval <= 0:
            raise ValueError(f"interval={interval} must be > 0 seconds")
        self.rank, self.world_size, self.interval = rank, world_size, interval
        self._prefix = prefix
        self._store = connect()
        self._beats = connect()
        self._previous: dict[str, Quorum] = {}  # the last quorum joined, per set of ranks
        self._lock = threading.Lock()
        # When each rank's counter last moved, on this process's clock. A rank not seen yet
        # counts from now: it is silent once it has not beaten for `detect` seconds of this
        # rank's watch, whether it died before or has not started (a counter's first value
        # says nothing about when it last moved).
        self._observed = time.monotonic()
        self._moved = [self._observed] * world_size
        self._counts: list[int | None] = [None] * world_size
        self._closing = threading.Event()
        keys = [self._key(_BEAT.format(rank=r)) for r in range(world_size)]
        for key in keys:  # every counter exists from now on: reading them is one round trip
            self._beats.add(key, 0)
        self._beat_keys = keys
        self._beat()
        self._thread = threading.Thread(target=self._beat_loop, name="membership", daemon=True)
        self._thread.start()

    # -- heartbeats -----------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return self._prefix + name

    def _beat(self) -> None:
        self._beats.add(self._beat_keys[self.rank], 1)
        counts = [int(bytes(v).decode() or 0) for v in self._beats.multi_get(self._beat_keys)]
        now = time.monotonic()
        with self._lock:
            for r, count in enumerate(counts):
                if self._counts[r] is not None and count != self._counts[r]:
                    self._moved[r] = now
                self._counts[r] = count
            self._observed = now

    def _beat_loop(self) -> None:
        while not self._closing.wait(self.interval):
            try:
                self._beat()
            except Exception:  # the store is gone (the run is over): stop beating
                return

    def silent(self, detect: float) -> tuple[int, ...]:
        """The ranks whose heartbeat has not moved for ``detect`` seconds (by this rank's
        last observation, which began when this membership did): dead, stopped or never
        started. Never this rank.

        >>> import time, torch.distributed as dist
        >>> store = dist.HashStore()
        >>> with Membership(lambda: store, 0, 3, interval=0.05) as m:
        ...     early = m.silent(detect=10.0)
        ...     time.sleep(0.3)
        ...     late = m.silent(detect=0.1)  # ranks 1 and 2 never started
        >>> early, late
        ((), (1, 2))
        """
        with self._lock:
            seen = self._observed
            return tuple(
                r
                for r in range(self.world_size)
                if r != self.rank and seen - self._moved[r] > detect
            )

    def dead(self, among: Iterable[int], detect: float, timeout: float) -> tuple[int, ...]:
        """The ranks of ``among`` that are silent for ``detect`` seconds, waiting up to
        ``timeout`` seconds for one to be: who to name after an operation with them failed
        (gloo's error does not say reliably, see :mod:`real.peer_failure`). ``()`` if none
        fell silent in time (the failure was not a death, or the peer came back).

        >>> import torch.distributed as dist
        >>> store = dist.HashStore()
        >>> with Membership(lambda: store, 0, 3, interval=0.05) as m:
        ...     m.dead([1], detect=0.1, timeout=5.0), m.dead([0], detect=0.1, timeout=0.2)
        ((1,), ())
        """
        others = set(among) - {self.rank}
        deadline = time.monotonic() + timeout
        while True:
            silent = tuple(r for r in self.silent(detect) if r in others)
            if silent or time.monotonic() > deadline:
                return silent
            time.sleep(min(self.interval, _POLL * 5))

    # -- quorums --------------------------------------------------------------------------
    def latest(self, ranks: Iterable[int] | None = None) -> int:
        """The id of the latest quorum of ``ranks`` (None: every rank) formed in the run
        (0: none yet). Quorums form one after the other, so their members' keys exist for
        ids 1..latest and for no other: found by doubling then halving, in a few round
        trips."""
        where = space(ranks, self.world_size)

        def formed(q: int) -> bool:
            return self._formed(q, where)

        previous = self._previous.get(where)
        if previous is not None and formed(previous.id + 1) is False:
            return previous.id
        low, high = 0, 1  # formed(low) holds (0 trivially); find a high that does not
        while formed(high):
            low, high = high, high * 2
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if formed(mid) else (low, mid)
        return low

    def _formed(self, q: int, where: str = "") -> bool:
        return bool(self._store.check([self._key(where + _MEMBERS.format(q=q))]))

    def _record(self, q: int, where: str) -> Any:
        return json.loads(bytes(self._store.get(self._key(where + _MEMBERS.format(q=q)))))

    def _members(self, q: int, where: str = "") -> tuple[int, ...]:
        record = self._record(q, where)  # a list, or with a partition a dict (_decide)
        return tuple(record["members"] if isinstance(record, dict) else record)

    def _out(self, q: int, where: str) -> tuple[int, ...]:
        """The live ranks cut off when quorum ``q`` formed (a partition's, :meth:`wait`)."""
        record = self._record(q, where)
        return tuple(record["out"]) if isinstance(record, dict) else ()

    def _announced(self, q: int, where: str, ranks: Iterable[int]) -> list[int]:
        return [
            r
            for r in ranks
            if self._store.check([self._key(where + _ANNOUNCE.format(q=q, rank=r))])
        ]

    def _ranks(self, ranks: Iterable[int] | None) -> tuple[int, ...]:
        """``ranks`` checked (this rank among them), or every rank for None."""
        if ranks is None:
            return tuple(range(self.world_size))
        out = tuple(sorted(set(ranks)))
        if not out or out[0] < 0 or out[-1] >= self.world_size or self.rank not in out:
            raise ValueError(
                f"ranks={out} must be ranks of the run (0..{self.world_size - 1}) and hold "
                f"this rank, {self.rank}"
            )
        return out

    def quorum(
        self,
        min_size: int,
        timeout: float,
        detect: float = 5.0,
        *,
        step: int = 0,
        expect: Iterable[int] = (),
        down: Callable[[], Iterable[int]] | None = None,
        ranks: Iterable[int] | None = None,
    ) -> Quorum:
        """Join the next quorum of ``ranks`` (None: every rank of the run) and return it
        once its members are decided.

        It is decided when every rank of ``ranks`` not silent for ``detect`` seconds has
        announced itself and at least ``min_size`` have, or after ``timeout`` seconds when
        at least ``min_size`` have; else :class:`QuorumError`. A rank that died since the
        last quorum therefore delays this one by up to ``detect`` seconds.

        ``step`` is announced with this rank (:meth:`steps` reads the members'); ``expect``:
        ranks it waits for too, silent or not (a rank being restarted); ``down()``: ranks
        known dead, not waited for (killed by a fault schedule).
        """
        q = self.announce(min_size, step, ranks)
        return self.wait(q, min_size, timeout, detect, expect, down, step, ranks=ranks)

    def announce(self, min_size: int, step: int = 0, ranks: Iterable[int] | None = None) -> int:
        """Announce this rank for the next quorum of ``ranks`` (one store write); its id,
        for :meth:`wait`. A rank that announced is counted in by the others from now on."""
        among = self._ranks(ranks)
        if not 1 <= min_size <= len(among):
            raise ValueError(f"min_size={min_size} must be in 1..{len(among)} (the quorum's ranks)")
        where = space(among, self.world_size)
        q = self.latest(among) + 1
        self._store.set(self._key(where + _ANNOUNCE.format(q=q, rank=self.rank)), str(int(step)))
        return q

    def wait(
        self,
        q: int,
        min_size: int,
        timeout: float,
        detect: float = 5.0,
        expect: Iterable[int] = (),
        down: Callable[[], Iterable[int]] | None = None,
        step: int = 0,
        live: Callable[[], Iterable[int]] | None = None,
        ranks: Iterable[int] | None = None,
        partition: Any = None,
    ) -> Quorum:
        """Wait for quorum ``q`` of ``ranks`` that this rank announced itself for (see
        :meth:`quorum`). ``live()``, when given, says which ranks to wait for instead of
        the heartbeats (a run whose every death is announced on the store:
        :mod:`real.crashes`); a rank whose heartbeat has not been seen moving yet (it just
        started) is waited for. ``partition`` (a testbed's links down,
        :meth:`real.crashes.RankFaults.primary`): a quorum holds only the primary part of
        the live ranks, as ``sim``'s; a rank cut off waits, past ``timeout``, until a
        quorum admits it again; a primary part too small with no repair to come raises
        :class:`QuorumError` with the run's one-line end."""
        among = self._ranks(ranks)
        where = space(among, self.world_size)
        deadline = time.monotonic() + timeout
        expected = set(expect)
        while True:
            members = self._decide(
                q, min_size, deadline, detect, timeout, expected, down, live, among, partition
            )
            if self.rank in members:
                break
            if partition is not None:  # cut off: its wait for a quorum starts again once back
                deadline = time.monotonic() + timeout
            # Announced after the members were written: this rank is in the next one.
            q = self.latest(among) + 1
            key = self._key(where + _ANNOUNCE.format(q=q, rank=self.rank))
            self._store.set(key, str(int(step)))
        before = set() if q == 1 else set(self._members(q - 1, where))
        out, was_out = self._out(q, where), set() if q == 1 else set(self._out(q - 1, where))
        quorum = Quorum(
            q,
            members,
            tuple(r for r in members if r not in before),
            where,
            tuple(r for r in out if r not in was_out),
            tuple(r for r in members if r in was_out),
        )
        self._previous[where] = quorum
        return quorum

    def steps(self, quorum: Quorum) -> tuple[int, ...]:
        """Each member's step as it announced it, in ``members`` order."""
        keys = [
            self._key(quorum.space + _ANNOUNCE.format(q=quorum.id, rank=r)) for r in quorum.members
        ]
        return tuple(int(bytes(self._store.get(key)).decode() or 0) for key in keys)

    def _decide(
        self,
        q: int,
        min_size: int,
        deadline: float,
        detect: float,
        timeout: float,
        expected: set[int] | None = None,
        down: Callable[[], Iterable[int]] | None = None,
        alive: Callable[[], Iterable[int]] | None = None,
        among: tuple[int, ...] | None = None,
        partition: Any = None,
    ) -> tuple[int, ...]:
        among = tuple(range(self.world_size)) if among is None else among
        where = space(among, self.world_size)
        key = self._key(where + _MEMBERS.format(q=q))
        while not self._store.check([key]):
            announced = self._announced(q, where, among)
            if alive is not None:
                live = set(alive())
            else:
                live = set(among) - set(self.silent(detect))
            if down is not None:
                live -= set(down())
            live |= expected or set()
            late = time.monotonic() > deadline
            record: Any = announced
            if partition is not None:
                record, live, late = self._partitioned(
                    q, where, announced, live, min_size, late, partition
                )
                announced = record["members"]
            if len(announced) >= min_size and (late or live <= set(announced)):
                self._store.compare_set(key, "", json.dumps(record))
                break
            if late:
                raise QuorumError(
                    f"rank {self.rank}: quorum {q} has {len(announced)} rank(s) "
                    f"{tuple(announced)} after {timeout:g} s, fewer than min_size={min_size}; "
                    "lower min_size or restart the dead ranks"
                )
            time.sleep(_POLL)
        return self._members(q, where)

    def _partitioned(
        self,
        q: int,
        where: str,
        announced: list[int],
        live: set[int],
        min_size: int,
        late: bool,
        partition: Any,
    ) -> tuple[dict[str, Any], set[int], bool]:
        """Quorum ``q``'s record under a partition: the members it may hold (the announced
        ranks of the primary part) and the live ranks cut off (``out``: left out by a
        quorum since, and not admitted again); the live ranks it waits for; and whether a
        late rank gives up waiting (never while it is cut off itself: it waits for its
        link)."""
        primary = partition.primary(sorted(live))
        before = set() if q == 1 else set(self._out(q - 1, where))
        if primary is None:
            return {"members": announced, "out": sorted(before - set(announced))}, live, late
        line = partition.stuck(primary, sorted(live), min_size)
        if line is not None:
            raise PartitionStuck(line)
        members = [r for r in announced if r in primary]
        out = sorted((before | (live - primary)) - set(members))
        return {"members": members, "out": out}, live & primary, late and self.rank in primary

    # -- groups ---------------------------------------------------------------------------
    def group(self, quorum: Quorum, timeout: float = 60.0) -> Any:
        """A gloo process group of ``quorum``'s members, this rank as
        ``quorum.index(rank)``, met under ``quorum/ID`` on the run's store (a quorum of a
        subset of the ranks under its set's own prefix; every member must call it; it
        waits up to ``timeout`` for them, and that is also the group's timeout for an
        operation whose peer stopped answering)."""
        raw = getattr(self._store, "raw", self._store)  # gloo's own keys are not signed
        store = dist.PrefixStore(self._key(f"quorum/{quorum.space}{quorum.id}"), raw)
        index, size, wait = quorum.index(self.rank), quorum.size, timedelta(seconds=timeout)
        group = dist.ProcessGroup(store, index, size)
        group._set_default_backend(dist.ProcessGroup.BackendType.GLOO)
        backend = dist.ProcessGroupGloo(store, index, size, wait)
        backend._set_sequence_number_for_group()
        group._register_backend(torch.device("cpu"), dist.ProcessGroup.BackendType.GLOO, backend)
        return group

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the heartbeat (peers then see this rank silent after ``detect``)."""
        self._closing.set()
        self._thread.join()

    def __enter__(self) -> Membership:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
