"""Receive matching, written once: which posted receive a message goes to, and which waiting
message a receive takes. Both backends use it: the simulator's fabric (``sim.comm``) and the
real transport's portable matching (``real.transport.matching``).

The rule is gloo's (and what torch.distributed programs may rely on everywhere):

* a message from ``s`` goes to the first receive posted for ``s``, else to the first posted
  from any rank;
* a receive takes the earliest waiting message it accepts: from one sender, that sender's
  next message (one pair's messages match in the order sent); from any rank, whoever came
  first.

One :class:`Matcher` holds one receiver's state: the receives posted and not yet matched,
and the messages that came with no receive to take them, each in the order they came. It
knows nothing of tensors, clocks or threads; what a message or a receive is stays the
backend's (a simulated send, a real envelope), and a backend that runs on threads calls it
under its own lock.

Examples
--------
>>> m = Matcher()
>>> m.post(None, "any"), m.post(2, "from 2")  # nothing waiting: both receives wait
(None, None)
>>> m.offer(1, "a"), m.offer(2, "b")  # 2's goes to the receive for 2, 1's to the one from any
('any', 'from 2')
>>> m.offer(3, "c"), m.offer(1, "d")  # no receive left: the messages wait, in order
(None, None)
>>> m.post(1, "from 1"), m.post(None, "any")  # 1's next message; then whoever came first
('d', 'c')
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Matcher"]

M = TypeVar("M")
R = TypeVar("R")


class Matcher(Generic[M, R]):
    """One receiver's posted receives and unmatched messages (``M``: a message, ``R``: a
    receive; both opaque here). Senders and sources are ranks; ``None`` is any rank."""

    __slots__ = ("_recvs", "_messages")

    def __init__(self) -> None:
        self._recvs: list[tuple[int | None, R]] = []  # in the order posted
        self._messages: list[tuple[int, M]] = []  # in the order they came

    # -- a message comes ------------------------------------------------------------------
    def offer(self, sender: int, message: M) -> R | None:
        """``sender``'s message came: the receive it goes to (removed), or ``None`` if none
        accepts it and it waits (:meth:`hold`)."""
        recv = self.claim(sender)
        if recv is None:
            self._messages.append((sender, message))
        return recv

    def claim(self, sender: int) -> R | None:
        """Remove and return the receive a message from ``sender`` goes to: the first posted
        for ``sender``, else the first from any rank; ``None`` if there is none (nothing
        changes then)."""
        recvs = self._recvs
        for i, (src, _) in enumerate(recvs):
            if src == sender:
                return recvs.pop(i)[1]
        for i, (src, _) in enumerate(recvs):
            if src is None:
                return recvs.pop(i)[1]
        return None

    def hold(self, sender: int, message: M) -> None:
        """Keep ``sender``'s message until a receive accepts it (after :meth:`claim` found
        none)."""
        self._messages.append((sender, message))

    # -- a receive is posted --------------------------------------------------------------
    def post(self, src: int | None, recv: R) -> M | None:
        """A receive from ``src`` (``None``: any rank) was posted: the earliest waiting message
        it accepts (removed), or ``None`` if there is none and the receive waits."""
        messages = self._messages
        for i, (sender, _) in enumerate(messages):
            if src is None or src == sender:
                return messages.pop(i)[1]
        self._recvs.append((src, recv))
        return None

    # -- reading --------------------------------------------------------------------------
    def wants(self, sender: int) -> bool:
        """Whether some waiting receive would take a message from ``sender``."""
        return any(src is None or src == sender for src, _ in self._recvs)

    def awaits(self, sender: int) -> bool:
        """Whether a receive for ``sender`` itself (not from any rank) is waiting."""
        return any(src == sender for src, _ in self._recvs)

    def drop(self, sender: int) -> tuple[list[M], list[R]]:
        """Remove what waits here from or for ``sender`` (it crashed): its messages, and the
        receives posted for it by name (a receive from any rank stays); return them."""
        messages = [m for s, m in self._messages if s == sender]
        recvs = [r for src, r in self._recvs if src == sender]
        self._messages = [(s, m) for s, m in self._messages if s != sender]
        self._recvs = [(src, r) for src, r in self._recvs if src != sender]
        return messages, recvs

    def clear(self) -> tuple[list[M], list[R]]:
        """Remove everything waiting here (its receiver crashed); return it."""
        messages, recvs = [m for _, m in self._messages], [r for _, r in self._recvs]
        self._messages, self._recvs = [], []
        return messages, recvs

    def receives(self) -> Iterator[R]:
        """The waiting receives, in the order posted."""
        return (recv for _, recv in self._recvs)

    def messages(self) -> Iterator[M]:
        """The waiting messages, in the order they came."""
        return (message for _, message in self._messages)

    def __len__(self) -> int:
        """Receives and messages waiting."""
        return len(self._recvs) + len(self._messages)
