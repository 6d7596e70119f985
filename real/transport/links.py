"""Point-to-point links to and from restarted ranks: a gloo group per pair and incarnation.

A rank the fault schedule restarts is a new process (incarnation 1, 2, ...: how many times
the launcher restarted it, :func:`real.crashes.mark_restarted`), and it joins no world
process group: the survivors' world group still holds the killed process's place, and
torch cannot add a process to it. Its sends and receives therefore go over a gloo group of
two, one per pair of ranks *and* per pair of incarnations, built as
:class:`real.membership.Membership` builds a quorum's (a ``ProcessGroupGloo`` constructed
directly over a prefix of the run's store, not ``dist.new_group``, which needs the default
group): ``p2p/LO-HI/INCARNATION_LO-INCARNATION_HI``, rank ``LO`` its group rank 0. Both
sides build it lazily, the first time they exchange after the restart (a survivor's channel
receiving from the restarted rank, or either side's first send), so nobody waits for a
link it never uses; the build waits for the other side up to the run's ``timeout``.

Which link a message takes is decided per operation from the run's store (the restart
counter of the peer, one round trip) and only for peers the schedule can restart, so a
run with no restart makes no link, no thread, no store call more than before, and a pair
of processes that were never restarted keeps the world group:

* both incarnations 0: the world group (as before);
* the peer is down (killed, not back yet) and was restarted before: the operation fails at
  once with :class:`~strategies.PeerFailure`, as one on the world group does with a killed
  peer (gloo refuses at the call once the pair's connection was reset);
* else the pair's link for the two incarnations, built on first use; a link to an older
  incarnation of the peer is let go.

A link's sends are issued in program order by one thread of its own (the first may wait
for the peer to build the group; the program's thread never does), and finished by waiter
threads, as the world group's are. A failed link is let go from those threads (never from
a library callback: point-to-point operations have none), so that its group is destroyed
once its last operation has finished (:mod:`real.membership` on why not in a callback).

Examples
--------
The key of a pair's group, and which end is its rank 0:

>>> pair_key(3, 0, 1, 0), pair_key(0, 3, 0, 1), pair_index(3, 0), pair_index(0, 3)
('p2p/0-3/0-1', 'p2p/0-3/0-1', 1, 0)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from real.peer_failure import is_peer_failure
from strategies.comm import PeerFailure

__all__ = ["Link", "Links", "pair_index", "pair_key"]

PREFIX = "p2p/"


def pair_key(rank: int, peer: int, incarnation: int, theirs: int) -> str:
    """Where the group of ``rank`` (``incarnation``) and ``peer`` (``theirs``) meets on the
    run's store: the same key from either end."""
    (lo, lo_inc), (hi, hi_inc) = sorted([(rank, incarnation), (peer, theirs)])
    return f"{PREFIX}{lo}-{hi}/{lo_inc}-{hi_inc}"


def pair_index(rank: int, peer: int) -> int:
    """``rank``'s rank in its pair's group: 0 for the lower rank id."""
    return 0 if rank < peer else 1


class Link:
    """One pair's gloo group for one pair of incarnations, built on first use (by whichever
    of the rank's threads needs it first; the others wait for it), and the thread that
    issues its sends in program order."""

    def __init__(
        self, rank: int, peer: int, incarnation: int, theirs: int, connect: Callable[[], Any]
    ) -> None:
        self.rank, self.peer, self.theirs = rank, peer, theirs
        self.key = pair_key(rank, peer, incarnation, theirs)
        self._connect = connect
        self._lock = threading.Lock()  # held while the group is built
        self._queue_lock = threading.Lock()  # never held for long: the program's thread takes it
        self._group: Any = None
        self._failed: BaseException | None = None
        self._sends: queue.SimpleQueue[Callable[[], None] | None] | None = None

    def group(self, timeout: float) -> Any:
        """The pair's ``ProcessGroupGloo`` (the peer must build it too: waits up to
        ``timeout`` seconds for it, then raises the library's error)."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._group is None:
                client = self._connect()
                raw = getattr(client, "raw", client)  # gloo's own keys are not signed
                store = dist.PrefixStore(self.key, raw)
                index = pair_index(self.rank, self.peer)
                try:
                    self._group = dist.ProcessGroupGloo(store, index, 2, timedelta(seconds=timeout))
                except RuntimeError as exc:
                    self._failed = self._failed or exc
                    raise
            if self._failed is not None:  # let go while it was being built
                self._group = None
                raise self._failed
            return self._group

    def send(self, tensors: list[torch.Tensor], tags: list[int], timeout: float) -> list[Any]:
        """Issue one send per tensor (with its tag) to the peer; the works."""
        group = self.group(timeout)
        return [
            group.send([t], 1 - pair_index(self.rank, self.peer), tag)
            for t, tag in zip(tensors, tags)
        ]

    def recv(self, tensor: torch.Tensor, tag: int, timeout: float) -> Any:
        """Post a receive of ``tensor`` with ``tag`` from the peer; the work."""
        return self.group(timeout).recv([tensor], 1 - pair_index(self.rank, self.peer), tag)

    def issue(self, job: Callable[[], None]) -> None:
        """Run ``job`` on this link's sending thread, after the jobs issued before it."""
        with self._queue_lock:
            if self._sends is None:
                self._sends = queue.SimpleQueue()
                jobs = self._sends
                threading.Thread(target=_drain, args=(jobs,), daemon=True).start()
            self._sends.put(job)

    def close(self) -> None:
        """Let the group go: its sending thread ends after the jobs it has, and the group is
        destroyed when the last operation holding it has finished."""
        with self._queue_lock:
            if self._sends is not None:
                self._sends.put(None)
                self._sends = None
            # A send still queued fails at once (its peer's process was killed), rather than
            # waiting for a group that process will never build. Not under the build's lock:
            # a build in progress holds it up to the timeout, and this is said from the
            # program's thread too.
            self._failed = RuntimeError(f"the link {self.key} was let go: its peer was killed")
            self._group = None


def _drain(jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        job()


class Links:
    """A rank's links to the ranks the schedule restarts (see the module's notes).

    Parameters
    ----------
    rank, incarnation
        This rank and its process's incarnation (0: never restarted).
    restartable
        The ranks some crash of the schedule brings back.
    faults
        The rank's :class:`real.crashes.RankFaults`: each peer's incarnation, whether it is
        down, and whether a given incarnation of it was killed.
    timeout
        The longest a link's build waits for its peer.
    """

    def __init__(
        self, rank: int, incarnation: int, restartable: set[int], faults: Any, timeout: float
    ) -> None:
        self.rank, self.incarnation, self.timeout = rank, incarnation, timeout
        self.restartable = restartable - {rank}
        self._faults = faults
        self._lock = threading.Lock()
        self._links: dict[int, Link] = {}

    def link(self, peer: int) -> tuple[Link | None, int]:
        """The link to ``peer`` now (None: the world group) and the peer's incarnation it
        reaches; :class:`~strategies.PeerFailure` at once if the peer, restarted before, is
        down again."""
        theirs = self._faults.incarnation_of(peer) if peer in self.restartable else 0
        if self.incarnation == 0 and theirs == 0:
            return None, 0
        if theirs > 0 and self._faults.down((peer,)):
            self.drop(peer)
            raise self._faults.killed(f"rank {self.rank}: a message with rank {peer}", peer)
        with self._lock:
            link = self._links.get(peer)
            if link is not None and link.theirs == theirs:
                return link, theirs
            if link is not None:
                link.close()  # an older incarnation's: it was killed
            link = self._links[peer] = Link(
                self.rank, peer, self.incarnation, theirs, self._faults.connect
            )
            return link, theirs

    def drop(self, peer: int, link: Link | None = None) -> None:
        """Let ``peer``'s link go (``link``: only if it is still that one)."""
        with self._lock:
            current = self._links.get(peer)
            if current is None or (link is not None and current is not link):
                return
            del self._links[peer]
        current.close()

    def failure(
        self, what: str, error: BaseException, peer: int, theirs: int, link: Link | None
    ) -> PeerFailure | None:
        """``error``, raised by an operation with incarnation ``theirs`` of ``peer``, as the
        :class:`~strategies.PeerFailure` it is when that incarnation was killed (it may be
        back as a newer one by now); None when it is not one. A failed link is let go."""
        if isinstance(error, PeerFailure):
            return error
        if not is_peer_failure(error) and link is None:
            return None
        if not self._faults.was_killed(peer, theirs):
            return None
        if link is not None:
            self.drop(peer, link)
        return self._faults.killed(what, peer)
