"""Receiving from any rank without the library's help (``portable``): the transport's matching.

NCCL has no receive from any source, and it runs one pair of ranks' sends and receives on
one stream, in the order they were issued. So a receive from ``s`` must never be posted
*speculatively*: a later send to ``s`` would queue behind it, and when ``s`` sends only after
getting that send (a server replies to worker ``w``, whose next push comes after the reply),
neither ever runs. The portable transport (``portable=True``, the default, and the only mode
on NCCL) is the documented equivalent of a receive from any source built from receives from
one rank each, posted only when the program asked for them:

* Every receive, from one rank or from any, is *posted* to the rank's
  :class:`~strategies.matching.Matcher` (the simulator's too), in the order the program
  posted them. No library receive from any source is ever posted.
* Each sender ``s`` has one *channel* (a thread) that keeps at most one envelope receive from
  ``s`` in flight, and posts it only while some posted receive accepts ``s`` (one for ``s``,
  or one from any rank).
* When an envelope from ``s`` arrives, the matcher gives it the first posted receive for
  ``s``, else the first posted from any rank: the simulator's rule and gloo's. The channel
  then receives the payload into that receive's buffers (the payload follows its envelope on
  the pair's stream), and only then looks for the next envelope, so messages from one sender
  are matched in the order they were sent.
* An envelope can arrive with no posted receive accepting it: two senders' envelopes raced
  for one receive from any rank, and the loser's receive was already in flight (a library
  receive cannot be withdrawn). It is *kept* by its channel (and held by the matcher), which
  stops there until the next receive that accepts it (which claims it at once, when
  posted); a receive from any rank takes the kept envelope that arrived first.
* Whoever sent first: a receive from any rank posted while several senders already wait
  must take the earliest (the simulator's rule, and gloo's own, which queues the senders'
  notices as they come). Only an envelope that has arrived has a place in that order, so
  on gloo, once the program has posted a receive from any rank, every channel keeps an
  envelope receive in flight at all times (*first come*): a sender's envelope is received,
  and kept, as soon as it comes, and the order of arrival decides. Without it the senders'
  channels would race when the receive is posted: an asynchronous server on a two-level
  tree took a remote worker's push that came 0.34 s after the near worker's, and the near
  worker pushed half as often as in the simulator. NCCL cannot receive speculatively, so
  there the senders already waiting race as before. :meth:`Receiving.quiesce` stops it (a
  test that builds a second transport on the same process group needs that).
* On gloo, a message is offered to a receive only once its payload has come too, unless a
  receive from its sender itself is posted (which receives straight into its buffers, no
  copy): gloo moves a payload whose receive is posted after the send only with the sender's
  help, so a receive from any rank that claimed the envelope of a sender stopped right
  after sending (SIGSTOP, a hung process) would wait for it while other senders' messages
  are here; an asynchronous server froze on one stopped worker. Such a payload lands in
  buffers of its own and is copied into the receive's; a kept message holds its payload.
* A posted receive is never cancelled. A program may abandon a handle (``wait_any`` with a
  timeout that won); like an MPI posted receive, and as in the simulator, the receive still
  takes the next message it matches.

With ``portable=False`` (gloo only) a receive from any rank is gloo's own
``irecv(src=None)``, one waiter thread per receive (:mod:`real.transport.delivery`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from real.transport.delivery import Delivery
from real.transport.envelope import ENVELOPE_BYTES, ENVELOPE_TAG, Arrived, decode
from strategies.comm import Received
from strategies.handles import Handle
from strategies.matching import Matcher
from strategies.operations import Operation

__all__ = ["Posted", "Receiving"]


@dataclass(eq=False)
class Posted:
    """A receive the program posted."""

    src: int | None
    buffers: list[torch.Tensor]
    handle: Handle[Received]
    started: float


class _Channel:
    """One sender's side of the portable matching: its thread, and an envelope it keeps."""

    def __init__(self, lock: threading.Lock) -> None:
        self.wake = threading.Condition(lock)
        self.kept: Arrived | None = None
        #: The library failed this channel's receive: it posts none it was not asked for.
        self.broken = False


class Receiving(Delivery):
    """Posting receives and matching the envelopes that come (a part of
    :class:`~real.transport.TorchTransport`; see the module's notes)."""

    rank: int
    world_size: int
    portable: bool
    _may_come_first: bool

    def _init_receiving(self) -> None:
        # Portable matching: the posted receives and kept envelopes, each sender's channel.
        self._lock = threading.Lock()
        self._match: Matcher[Arrived, Posted] = Matcher()
        self._channels: dict[int, _Channel] = {}
        #: First come (see the module's notes): on gloo, after a receive from any rank.
        self._first_come = False

    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: Operation
    ) -> Handle[Received]:
        handle: Handle[Received] = Handle("comm", op=what)
        posted = Posted(src, buffers, handle, self._clock())
        if self.portable:
            self._post(posted)
        else:
            self._recv_native(posted)
        return handle

    def quiesce(self) -> None:
        """Stop keeping envelope receives in flight that no posted receive asked for (first
        come). One already in flight stays until its sender's next message, which the next
        receive that accepts that sender gets."""
        with self._lock:
            self._first_come = False

    def _post(self, posted: Posted) -> None:
        """Portable matching: a kept envelope this receive accepts, else join the posted."""
        with self._lock:
            kept = self._match.post(posted.src, posted)
            if kept is not None:  # its channel waits for this claim
                kept.recv = posted
                self._channels[kept.src].wake.notify()
                return
            if posted.src is None and self._may_come_first:
                self._first_come = True
            senders = [posted.src] if posted.src is not None else range(self.world_size)
            for sender in senders:
                if sender != self.rank:
                    self._channel(sender).wake.notify()

    def _channel(self, sender: int) -> _Channel:
        """``sender``'s channel, its thread started on first use (under the lock)."""
        channel = self._channels.get(sender)
        if channel is None:
            channel = self._channels[sender] = _Channel(self._lock)
            self._thread(lambda: self._serve(sender, channel))
        return channel

    def _serve(self, sender: int, channel: _Channel) -> None:
        """A channel's thread: one envelope from ``sender`` at a time, and its payload."""
        while True:
            with self._lock:
                while True:
                    kept = channel.kept
                    if kept is not None and kept.recv is not None:
                        channel.kept = None
                        break
                    if kept is None and self._match.wants(sender):
                        break  # post an envelope receive: a posted receive wants one
                    if kept is None and self._first_come and not channel.broken:
                        break  # first come: have the next envelope as soon as it comes
                    channel.wake.wait()
            if kept is None:
                kept = self._next_envelope(sender, channel)
                if kept is None:
                    continue
            self._deliver(kept)

    def _next_envelope(self, sender: int, channel: _Channel) -> Arrived | None:
        """Receive ``sender``'s next envelope; the claimed envelope, or ``None`` (kept, or
        the library failed and a receive that wanted the envelope got its error)."""
        try:
            link, theirs = self._link_of(sender)
        except Exception as exc:  # (the sender, restarted before, is down again)
            self._broken(sender, channel, exc)
            return None
        device = self.device if link is None else torch.device("cpu")  # (a pair's is gloo's)
        frame = torch.empty(ENVELOPE_BYTES, dtype=torch.uint8, device=device)
        try:
            work = self._irecv(link, frame, sender, ENVELOPE_TAG)
            self._settle([work], patient=True)
            header, sent, tag = decode(frame.cpu())
        except Exception as exc:
            self._broken(sender, channel, exc, link, theirs)
            return None
        payload = None
        if not self._cuda or link is not None:
            with self._lock:
                awaited = self._match.awaits(sender) and link is None
            if not awaited:
                # Only a receive from ``sender`` itself may wait on it: gloo moves a payload
                # whose receive is posted after the send only with the sender's help, so a
                # receive from any rank that claimed a stalled sender's envelope would wait
                # for it while other senders' messages are here (an asynchronous server froze
                # on one stopped worker). Such a message is offered whole, payload and all.
                try:
                    payload = [
                        torch.empty(shape, dtype=getattr(torch, dtype)) for shape, dtype in sent
                    ]
                    self._settle([self._irecv(link, b, sender, tag) for b in payload], patient=True)
                except Exception as exc:
                    self._broken(sender, channel, exc, link, theirs)
                    return None
        arrived = Arrived(sender, header, sent, tag, payload=payload)
        with self._lock:
            arrived.recv = self._match.offer(sender, arrived)
            if arrived.recv is None:
                channel.kept = arrived  # until a receive that accepts it is posted
                return None
        return arrived

    def _broken(
        self, sender: int, channel: _Channel, exc: Exception, link: Any = None, theirs: int = 0
    ) -> None:
        """The library failed a receive from ``sender`` (incarnation ``theirs``, over
        ``link``: None for the world group): the receive that wanted its envelope gets the
        error, and the channel posts none it is not asked for."""
        with self._lock:
            posted = self._match.claim(sender)
            channel.broken = True  # the library is failing: ask it only when asked to
        if posted is not None:
            self._failed_from(posted, exc, sender, link, theirs)

    def _link_of(self, sender: int) -> tuple[Any, int]:
        """The link ``sender``'s messages come over now (None: the world group) and the
        sender's incarnation (:mod:`real.transport.links`); the world, here."""
        return None, 0

    def _irecv(self, link: Any, tensor: torch.Tensor, src: int, tag: int) -> Any:
        """Post the library's receive of ``tensor`` from ``src`` over ``link``."""
        if link is None:
            return dist.irecv(tensor, src=src, tag=tag)
        return link.recv(tensor, tag, self._link_timeout)

    _link_timeout = 0.0

    def _failed_from(
        self, posted: Posted, exc: Exception, sender: int, link: Any, theirs: int
    ) -> None:
        """A receive failed by the library on ``sender``'s messages (see :meth:`_broken`)."""
        self._failed(posted, exc)
