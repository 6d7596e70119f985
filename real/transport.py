"""The real transport: each checked communicator call becomes ``torch.distributed`` calls.

One transport serves gloo (CPU tensors) and NCCL (tensors on the rank's GPU). Calls are
issued with ``async_op=True`` and return :class:`~strategies.handles.Handle` objects resolved
from the library's completion; the strategy's ``value = yield handle`` is where the rank
blocks, exactly as in the simulator.

Messages
--------
A message travels as an *envelope* and its payload. The envelope is a fixed-size byte frame
(an int64 length, then the header and the payload's shapes and dtypes as JSON); it goes with
tag 0. The payload tensors follow with a tag unique to the message on its channel (``1 + n``
for the sender's ``n``-th message to that rank), so on gloo a receiver can never mix up two
messages' payloads (the envelope names the tag); NCCL ignores tags and matches one pair's
operations in the order they are issued, which the receiver below follows. With the shapes in
hand, a receiver checks them against its buffers and raises the same
:class:`~strategies.comm.CommError` the simulator raises (after draining the payload, so the
sender still completes, as in the simulator).

Receiving from any rank without the library's help (``portable``)
-----------------------------------------------------------------
NCCL has no receive from any source, and it runs one pair of ranks' sends and receives on
one stream, in the order they were issued. So a receive from ``s`` must never be posted
*speculatively*: a later send to ``s`` would queue behind it, and when ``s`` sends only after
getting that send (a server replies to worker ``w``, whose next push comes after the reply),
neither ever runs. The portable transport (``portable=True``, the default, and the only mode
on NCCL) is the documented equivalent of a receive from any source built from receives from
one rank each, posted only when the program asked for them:

* Every receive, from one rank or from any, joins one list of *posted receives* (in the
  order the program posted them). No library receive from any source is ever posted.
* Each sender ``s`` has one *channel* (a thread) that keeps at most one envelope receive from
  ``s`` in flight, and posts it only while some posted receive accepts ``s`` (one for ``s``,
  or one from any rank).
* When an envelope from ``s`` arrives, the first posted receive for ``s`` claims it, else the
  first posted receive from any rank: the simulator's rule and gloo's (``sim.comm``). The
  channel then receives the payload into that receive's buffers (the payload follows its
  envelope on the pair's stream), and only then looks for the next envelope, so messages from
  one sender are matched in the order they were sent.
* An envelope can arrive with no posted receive accepting it: two senders' envelopes raced
  for one receive from any rank, and the loser's receive was already in flight (a library
  receive cannot be withdrawn). It is *kept* by its channel, which stops there until the next
  receive that accepts it (which claims it at once, when posted); a receive from any rank
  takes the kept envelope that arrived first.
* Whoever sent first: a receive from any rank posted while several senders already wait
  must take the earliest (the simulator's rule, and gloo's own, which queues the senders'
  notices as they come). Only an envelope that has arrived has a place in that order, so
  on gloo, once the program has posted a receive from any rank, every channel keeps an
  envelope receive in flight at all times (*first come*): a sender's envelope is received,
  and kept, as soon as it comes, and the order of arrival decides. Without it the senders'
  channels would race when the receive is posted: an asynchronous server on a two-level
  tree took a remote worker's push that came 0.34 s after the near worker's, and the near
  worker pushed half as often as in the simulator. NCCL cannot receive speculatively (see
  below), so there the senders already waiting race as before. :meth:`TorchTransport.quiesce`
  stops it (a test that builds a second transport on the same process group needs that).
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

What NCCL's ordering still asks of a program: while a receive that accepts ``s`` is
pending, its envelope (then payload) receive is on the pair's stream, so a send to ``s``
issued meanwhile queues behind it (NCCL's own rule: two ranks that each post a receive from
the other and then send to it wait forever, unless the sends are small enough for NCCL to
buffer). The transport adds two cases: an envelope receive posted for a receive from any
rank that another sender then satisfied stays in flight until its sender's next message, as a
library receive cannot be withdrawn; and a kept envelope's payload stays on the pair's stream
until a receive claims it. Each pair needs its own NCCL communicator and stream, which torch
creates when ``init_process_group`` gets no ``device_id``; eagerly initialised, torch may run
point-to-point operations on the collective communicator, where a pending receive would hold
up every collective. NCCL's watchdog fails a receive left in flight once the process group's
timeout has passed, so give an NCCL process group a long one (the runtime bounds the
program's waits itself). On gloo a channel waits for its envelope without the process
group's timeout, so a receive left in flight never closes the world (gloo fails every pair
when one wait times out). With ``portable=False`` (gloo only) a receive from any rank is gloo's own
``irecv(src=None)``, one waiter thread per receive, as before.

Devices and completion
----------------------
On the CPU (gloo), tensors move as they are: no copies. On a GPU (NCCL), a tensor the
program keeps on the CPU (``torch.empty(n)``, written the natural way) is *staged*: copied to
the device for the operation, and the result copied back into the caller's tensor before the
handle resolves; receive buffers likewise, and the envelope frame lives on the device and is
copied to the CPU to be decoded.

Collectives on the CPU are finished *inline* by the thread that waits for them: the handle
stays with the transport, and when the program yields it, the runtime asks the transport to
wait (:meth:`TorchTransport.finish_inline`: gloo's ``work.wait``, in slices, so the runtime
still sees the run's stop and its own timeout) and finish it (copy back, a mean's division)
on the rank's own thread. Resolving from the library's future instead costs a callback on
gloo's thread and a ``threading.Event`` hand-off back to the rank, about 0.2 ms a step, 10%
of a small model's step (``benchmarks/real_overhead.py``). Whatever else may need such a
handle to finish by itself (``wait_any``/``wait_all``, ``then``, a different handle yielded
first) gets it through :meth:`TorchTransport.release_inline`, which hands every collective
still held to the library's future, as before; after each inline wait, collectives the
library has finished meanwhile are resolved too, so ``handle.done`` is never stale for long.
Point-to-point operations resolve from waiter threads, as gloo has no futures for them. NCCL's futures and ``work.wait()`` do not
wait for the GPU (``wait`` only orders the *current stream* after NCCL's), so on a GPU a
waiter thread polls ``work.is_completed()`` (the end of the GPU work, seen from the host)
before calling ``wait()`` (which raises the library's error), then copies results back and
synchronises an event on its current stream before it resolves the handle. It does not call
``wait()`` first: that would stall the shared default stream, and with it the program's
compute and staging copies, until the peer sends (a deadlock for a receive posted before a
send). Waiter threads select the transport's device first (the current device is per thread).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from typing import Any

import torch
import torch.distributed as dist

from strategies.comm import (
    CommError,
    Group,
    Received,
    check_received,
    header_nbytes,
    message_nbytes,
)
from strategies.handles import Handle
from strategies.messages import ENVELOPE_BYTES, envelope

__all__ = ["ENVELOPE_TAG", "TorchTransport"]

_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}
ENVELOPE_TAG = 0
#: How long a channel's gloo envelope receive may wait for its sender (as good as forever).
_PATIENT = timedelta(days=365)
#: Polling an NCCL operation's completion: first and longest pause, in seconds.
_POLL_FIRST, _POLL_MAX = 2e-5, 1e-3


def _encode(header: dict[str, Any], tensors: list[torch.Tensor], tag: int) -> torch.Tensor:
    blob = envelope(header, tensors, tag)  # the communicator checked that it fits
    frame = torch.zeros(ENVELOPE_BYTES, dtype=torch.uint8)
    frame[:8] = torch.tensor([len(blob)], dtype=torch.int64).view(torch.uint8)
    frame[8 : 8 + len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return frame


def _decode(frame: torch.Tensor) -> tuple[dict[str, Any], list[tuple[tuple[int, ...], str]], int]:
    length = int(frame[:8].view(torch.int64)[0])
    record = json.loads(bytes(frame[8 : 8 + length].tolist()).decode())
    return record["h"], [(tuple(shape), dtype) for shape, dtype in record["s"]], record["t"]


def _device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass
class _Inline:
    """A collective the waiting thread finishes (see the module's notes)."""

    work: Any
    finish: Callable[[], Any]
    started: float


@dataclass(eq=False)
class _Recv:
    """A receive the program posted."""

    src: int | None
    buffers: list[torch.Tensor]
    handle: Handle[Received]
    started: float
    what: str

    def accepts(self, sender: int) -> bool:
        return self.src is None or self.src == sender


@dataclass(eq=False)
class _Envelope:
    """An envelope that arrived: its sender, header, payload signature and payload tag."""

    src: int
    header: dict[str, Any]
    sent: list[tuple[tuple[int, ...], str]]
    tag: int
    arrival: int = 0
    recv: _Recv | None = None  # the receive that claimed it
    #: The payload, when it came before any receive claimed the envelope (see _next_envelope).
    payload: list[torch.Tensor] | None = None


class _Channel:
    """One sender's side of the portable matching: its thread, and an envelope it keeps."""

    def __init__(self, lock: threading.Lock) -> None:
        self.wake = threading.Condition(lock)
        self.kept: _Envelope | None = None
        #: The library failed this channel's receive: it posts none it was not asked for.
        self.broken = False


class TorchTransport:
    """One rank's ``strategies.comm.Transport`` over the default process group (gloo or NCCL).

    Parameters
    ----------
    rank, world_size
        This rank and the world's size.
    clock
        Seconds since the run started (handles record when they finish).
    charged
        Called with the bytes charged for each operation this rank starts.
    device
        Where the library moves tensors: ``"cpu"`` for gloo, the rank's GPU (``cuda:N``) for
        NCCL. Tensors elsewhere are staged through it (see the module's notes).
    portable
        Match receives from any rank in the transport, never posting the library's receive
        from any source (required, and forced, on NCCL). ``False``: gloo's own, gloo only.
    inline
        On the CPU, let the waiting thread finish collectives (:meth:`finish_inline`)
        rather than the library's completion callback. ``False`` only to measure the
        difference; the results are the same.
    agree
        Called with each group's index and ranks when this rank creates it; it raises when
        the ranks of the world do not all create the same groups in the same order
        (:func:`real.rendezvous.agree_on_group`). ``None``: not checked.
    first_come
        Keep an envelope receive in flight from every sender once the program receives from
        any rank, so such a receive takes whoever sent first (see the module's notes). On
        by default on gloo; NCCL cannot (``True`` there is refused); ``False`` issues the
        library calls NCCL would get.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        clock: Callable[[], float],
        charged: Callable[[float], None],
        *,
        device: torch.device | str = "cpu",
        portable: bool = True,
        inline: bool = True,
        first_come: bool | None = None,
        agree: Callable[[int, tuple[int, ...]], None] | None = None,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = _device(device)
        backend = str(dist.get_backend()) if dist.is_initialized() else ""
        if backend == "nccl" and self.device.type != "cuda":
            raise ValueError(f"NCCL moves GPU tensors; pass device='cuda:N', not {device!r}")
        if backend == "gloo" and self.device.type != "cpu":
            raise ValueError(f"gloo moves CPU tensors here; pass device='cpu', not {device!r}")
        if not portable and backend not in ("gloo", ""):
            raise ValueError(
                f"portable=False uses gloo's receive from any rank; {backend} has none"
            )
        if first_come and self.device.type == "cuda":
            raise ValueError("first_come=True needs speculative receives, which NCCL cannot make")
        self.portable = portable
        self._cuda = self.device.type == "cuda"  # completion by polling, not futures
        self._may_come_first = not self._cuda if first_come is None else first_come
        self.inline = inline and not self._cuda
        #: Collectives held for the waiting thread, in the order they were started. Only the
        #: rank's own thread (the program's) touches it.
        self._held: dict[Handle[Any], _Inline] = {}
        self._clock = clock
        self._charged = charged
        self._groups: dict[tuple[int, ...], Any] = {}
        self._agree = agree
        self._made = 0  # groups this rank has created (every call, the world's included)
        self._sent_to = [0] * world_size  # messages sent to each rank (payload tags)
        # Portable matching: the posted receives, each sender's channel, arrival order.
        self._lock = threading.Lock()
        self._posted: list[_Recv] = []
        self._channels: dict[int, _Channel] = {}
        self._arrivals = count()
        #: First come (see the module's notes): on gloo, after a receive from any rank.
        self._first_come = False

    # -- devices --------------------------------------------------------------------------
    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` if the library can move it, else a copy on the device (staging)."""
        return tensor if tensor.device == self.device else tensor.to(self.device)

    def _buffer_for(self, tensor: torch.Tensor) -> torch.Tensor:
        """Where the library can receive ``tensor``'s contents: itself, or a device buffer."""
        return (
            tensor if tensor.device == self.device else torch.empty_like(tensor, device=self.device)
        )

    def _thread(self, body: Callable[[], None]) -> None:
        def run() -> None:
            if self._cuda:
                torch.cuda.set_device(self.device)  # the current device is per thread
            body()

        threading.Thread(target=run, daemon=True).start()

    def _settle(self, works: list[Any], *, patient: bool = False) -> None:
        """Block this thread until ``works`` have finished; raise the library's error."""
        if self._cuda:
            # NCCL's wait() would only make the current stream wait: poll the GPU's progress.
            delay = _POLL_FIRST
            while not all(work.is_completed() for work in works):
                time.sleep(delay)
                delay = min(2 * delay, _POLL_MAX)
            for work in works:
                work.wait()
            return
        for work in works:
            if patient:
                work.wait(_PATIENT)
            else:
                work.wait()

    def _synchronize(self) -> None:
        """On a GPU: wait for what this thread queued (copies back, a mean's division)."""
        if self._cuda:
            event = torch.cuda.Event(blocking=True)
            event.record()
            event.synchronize()

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, rank: int, group: Group) -> None:
        index, self._made = self._made, self._made + 1
        if self._agree is not None:  # every rank creates it, as sim requires (gloo does not)
            self._agree(index, group.ranks)
        if group.ranks != tuple(range(self.world_size)) and group.ranks not in self._groups:
            # torch requires every rank of the world to create every group, in the same order.
            self._groups[group.ranks] = dist.new_group(list(group.ranks))

    def _pg(self, group: Group) -> Any:
        return None if group.ranks == tuple(range(self.world_size)) else self._groups[group.ranks]

    # -- completion -----------------------------------------------------------------------
    def _on_future(
        self, work: Any, handle: Handle[Any], finish: Callable[[], Any], started: float
    ) -> None:
        def done(future: Any) -> None:
            try:
                future.value()  # raises the library's error, if any
                value = finish()
            except Exception as exc:  # the program receives it at its yield
                handle.fail(CommError(f"{handle.describe()} failed: {exc}"), at=self._clock())
                return
            handle.resolve(value, at=self._clock(), started_at=started)

        work.get_future().add_done_callback(done)

    def _on_waiter(
        self,
        works: list[Any],
        handle: Handle[Any],
        finish: Callable[[], Any],
        started: float,
        failed: str,
    ) -> None:
        """Resolve ``handle`` with ``finish()`` from a thread, once ``works`` have finished."""

        def wait() -> None:
            try:
                self._settle(works)
                value = finish()
                self._synchronize()
            except Exception as exc:
                handle.fail(CommError(f"{failed} failed: {exc}"), at=self._clock())
                return
            handle.resolve(value, at=self._clock(), started_at=started)

        self._thread(wait)

    # -- collectives ----------------------------------------------------------------------
    def collective(
        self,
        rank: int,
        kind: str,
        tensor: torch.Tensor,
        group: Group,
        op: str | None,
        root: int | None,
        algorithm: str,
        what: str,
    ) -> Handle[Any]:
        handle: Handle[Any] = Handle("comm", what)
        started = self._clock()
        pg, n = self._pg(group), group.size
        moved = self._to_device(tensor) if kind != "barrier" else tensor  # staged off-device

        def back(divide: bool) -> Callable[[], torch.Tensor]:
            def finish() -> torch.Tensor:
                if moved is not tensor:
                    tensor.copy_(moved)
                return tensor.div_(n) if divide else tensor

            return finish

        finish: Callable[[], Any]
        if kind == "all_reduce":
            work = dist.all_reduce(moved, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge_ring(tensor, n, 2.0)
            finish = back(op == "mean")
        elif kind == "broadcast":
            work = dist.broadcast(moved, src=root, group=pg, async_op=True)
            self._charge_ring(tensor, n, 1.0)
            finish = back(False)
        elif kind == "reduce":
            # gloo leaves partial sums in the other ranks' buffers; the contract (and sim)
            # leaves them unchanged, so those ranks reduce from a copy (a staged one is).
            source = moved if rank == root or moved is not tensor else tensor.clone()
            work = dist.reduce(source, dst=root, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge_ring(tensor, n, 1.0)
            finish = back(op == "mean") if rank == root else (lambda: tensor)
        elif kind == "all_gather":
            outs = [torch.empty_like(moved) for _ in range(n)]
            work = dist.all_gather(outs, moved, group=pg, async_op=True)
            self._charge_ring(tensor, n, float(n))  # a ring forwards n-1 whole inputs

            def finish() -> list[torch.Tensor]:
                return outs if moved is tensor else [out.to(tensor.device) for out in outs]

        elif kind == "reduce_scatter":
            # gloo has no reduce_scatter for uneven chunks: all-reduce, then keep this rank's
            # chunk (charged as the all-reduce it is: twice a ring reduce-scatter's traffic).
            full = moved if moved is not tensor else tensor.clone()
            work = dist.all_reduce(full, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge_ring(tensor, n, 2.0)
            index = group.index(rank)

            def finish() -> torch.Tensor:
                if op == "mean":
                    full.div_(n)
                chunk = torch.tensor_split(full, n)[index]
                return chunk.clone() if chunk.device == tensor.device else chunk.to(tensor.device)

        else:  # barrier
            work = dist.barrier(group=pg, async_op=True)
            finish = lambda: None  # noqa: E731
        if self._cuda:
            self._on_waiter([work], handle, finish, started, handle.describe())
        elif self.inline:
            self._held[handle] = _Inline(work, finish, started)
        else:
            self._on_future(work, handle, finish, started)
        return handle

    # -- inline completion (CPU collectives) ----------------------------------------------
    def holds(self, handle: Handle[Any]) -> bool:
        """Whether ``handle`` is a collective waiting for :meth:`finish_inline`."""
        return handle in self._held

    def finish_inline(self, handle: Handle[Any], seconds: float) -> bool:
        """Wait up to ``seconds`` for the held collective ``handle``; if the library has
        finished it, finish ``handle`` (and every other held one already finished) on this
        thread. Returns whether ``handle`` is done (resolved, or failed with the library's
        error as a :class:`~strategies.comm.CommError`)."""
        held = self._held[handle]
        try:
            held.work.wait(timedelta(seconds=seconds))
        except Exception:
            # A wait that timed out raises too, and leaves the operation running; one
            # that failed has completed (the error is reported by _complete below).
            if not held.work.is_completed():
                return False
        self._complete(handle)
        for other in [h for h, op in self._held.items() if op.work.is_completed()]:
            self._complete(other)
        return True

    def release_inline(self) -> None:
        """Hand every held collective to the library's completion callback, so that it
        finishes by itself (for ``wait_any``, ``then``, a program that ends holding it)."""
        held, self._held = self._held, {}
        for handle, op in held.items():
            self._on_future(op.work, handle, op.finish, op.started)

    def _complete(self, handle: Handle[Any]) -> None:
        op = self._held.pop(handle)
        try:
            op.work.wait()  # finished: returns at once, or raises the library's error
            value = op.finish()
        except Exception as exc:  # the program receives it at its yield
            handle.fail(CommError(f"{handle.describe()} failed: {exc}"), at=self._clock())
            return
        handle.resolve(value, at=self._clock(), started_at=op.started)

    def _charge_ring(self, tensor: torch.Tensor, n: int, factor: float) -> None:
        # The library hides its algorithm; charge what a ring would send from this rank.
        self._charged(factor * (n - 1) / n * message_nbytes([tensor]))

    # -- point to point: sending ----------------------------------------------------------
    def send(
        self, rank: int, tensors: list[torch.Tensor], header: dict[str, Any], dst: int, what: str
    ) -> Handle[None]:
        handle: Handle[None] = Handle("comm", what)
        started = self._clock()
        self._sent_to[dst] += 1
        tag = self._sent_to[dst]
        frame = self._to_device(_encode(header, tensors, tag))
        payload = [self._to_device(t) for t in tensors]
        works = [dist.isend(frame, dst=dst, tag=ENVELOPE_TAG)]
        works += [dist.isend(t, dst=dst, tag=tag) for t in payload]
        self._charged(message_nbytes(tensors) + header_nbytes(header))
        keep = [frame, *payload]  # staged copies outlive the transfer
        self._on_waiter(works, handle, keep.clear, started, f"rank {rank}: {what}")
        return handle

    # -- point to point: receiving --------------------------------------------------------
    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: str
    ) -> Handle[Received]:
        handle: Handle[Received] = Handle("comm", what)
        posted = _Recv(src, buffers, handle, self._clock(), what)
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

    def _recv_native(self, posted: _Recv) -> None:
        """gloo's own matching: the envelope receive names ``src``, or any rank."""
        frame = torch.empty(ENVELOPE_BYTES, dtype=torch.uint8, device=self.device)
        first = dist.irecv(frame, src=posted.src, tag=ENVELOPE_TAG)
        assert first is not None  # this rank is in the default group

        def wait() -> None:
            try:
                self._settle([first])
                sender = int(first._source_rank()) if posted.src is None else posted.src
                header, sent, tag = _decode(frame.cpu())
            except Exception as exc:
                self._failed(posted, exc)
                return
            self._deliver(_Envelope(sender, header, sent, tag, recv=posted))

        self._thread(wait)

    def _post(self, posted: _Recv) -> None:
        """Portable matching: a kept envelope this receive accepts, else join the posted."""
        with self._lock:
            kept = self._kept_for(posted)
            if kept is not None:  # its channel waits for this claim
                kept.recv = posted
                self._channels[kept.src].wake.notify()
                return
            self._posted.append(posted)
            if posted.src is None and self._may_come_first:
                self._first_come = True
            senders = [posted.src] if posted.src is not None else range(self.world_size)
            for sender in senders:
                if sender != self.rank:
                    self._channel(sender).wake.notify()

    def _kept_for(self, posted: _Recv) -> _Envelope | None:
        kept = [
            c.kept
            for s, c in self._channels.items()
            if c.kept is not None and c.kept.recv is None and posted.accepts(s)
        ]
        return min(kept, key=lambda e: e.arrival, default=None)

    def _channel(self, sender: int) -> _Channel:
        """``sender``'s channel, its thread started on first use (under the lock)."""
        channel = self._channels.get(sender)
        if channel is None:
            channel = self._channels[sender] = _Channel(self._lock)
            self._thread(lambda: self._serve(sender, channel))
        return channel

    def _claim(self, sender: int) -> _Recv | None:
        """The posted receive an envelope from ``sender`` goes to (under the lock): the first
        posted for ``sender``, else the first from any rank, as the simulator and gloo match."""
        for rule in (lambda r: r.src == sender, lambda r: r.src is None):
            for i, posted in enumerate(self._posted):
                if rule(posted):
                    return self._posted.pop(i)
        return None

    def _serve(self, sender: int, channel: _Channel) -> None:
        """A channel's thread: one envelope from ``sender`` at a time, and its payload."""
        while True:
            with self._lock:
                while True:
                    kept = channel.kept
                    if kept is not None and kept.recv is not None:
                        channel.kept = None
                        break
                    if kept is None and any(r.accepts(sender) for r in self._posted):
                        break  # post an envelope receive: a posted receive wants one
                    if kept is None and self._first_come and not channel.broken:
                        break  # first come: have the next envelope as soon as it comes
                    channel.wake.wait()
            if kept is None:
                kept = self._next_envelope(sender, channel)
                if kept is None:
                    continue
            self._deliver(kept)

    def _next_envelope(self, sender: int, channel: _Channel) -> _Envelope | None:
        """Receive ``sender``'s next envelope; the claimed envelope, or ``None`` (kept, or
        the library failed and a receive that wanted the envelope got its error)."""
        frame = torch.empty(ENVELOPE_BYTES, dtype=torch.uint8, device=self.device)
        try:
            work = dist.irecv(frame, src=sender, tag=ENVELOPE_TAG)
            self._settle([work], patient=True)
            header, sent, tag = _decode(frame.cpu())
        except Exception as exc:
            with self._lock:
                posted = self._claim(sender)
                channel.broken = True  # the library is failing: ask it only when asked to
            if posted is not None:
                self._failed(posted, exc)
            return None
        payload = None
        if not self._cuda:
            with self._lock:
                awaited = any(r.src == sender for r in self._posted)
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
                    self._settle(
                        [dist.irecv(b, src=sender, tag=tag) for b in payload], patient=True
                    )
                except Exception as exc:
                    with self._lock:
                        posted = self._claim(sender)
                        channel.broken = True
                    if posted is not None:
                        self._failed(posted, exc)
                    return None
        arrived = _Envelope(sender, header, sent, tag, next(self._arrivals), payload=payload)
        with self._lock:
            arrived.recv = self._claim(sender)
            if arrived.recv is None:
                channel.kept = arrived  # until a receive that accepts it is posted
                return None
        return arrived

    def _failed(self, posted: _Recv, exc: Exception) -> None:
        error = CommError(f"rank {self.rank}: {posted.what} failed: {exc}")
        posted.handle.fail(error, at=self._clock())

    def _deliver(self, arrived: _Envelope) -> None:
        """Receive the payload of a claimed envelope into its receive's buffers (draining it
        when it does not fit, so the sender completes), then finish that receive."""
        posted = arrived.recv
        assert posted is not None
        if arrived.payload is not None:  # received already: check it, copy it
            try:
                check_received(self.rank, arrived.src, arrived.sent, posted.buffers)
            except CommError as exc:
                posted.handle.fail(exc, at=self._clock())
                return
            for buffer, got in zip(posted.buffers, arrived.payload):
                buffer.copy_(got)
            done = Received(arrived.src, posted.buffers, arrived.header)
            posted.handle.resolve(done, at=self._clock(), started_at=posted.started)
            return
        mismatch: CommError | None = None
        try:
            try:
                check_received(self.rank, arrived.src, arrived.sent, posted.buffers)
                into = [self._buffer_for(b) for b in posted.buffers]
            except CommError as exc:
                mismatch = exc
                into = [
                    torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
                    for shape, dtype in arrived.sent
                ]
            works = [dist.irecv(b, src=arrived.src, tag=arrived.tag) for b in into]
            self._settle(works)
            if mismatch is None:
                for buffer, moved in zip(posted.buffers, into):
                    if moved is not buffer:
                        buffer.copy_(moved)
            self._synchronize()
        except Exception as exc:
            self._failed(posted, exc)
            return
        if mismatch is not None:
            posted.handle.fail(mismatch, at=self._clock())
            return
        received = Received(arrived.src, posted.buffers, arrived.header)
        posted.handle.resolve(received, at=self._clock(), started_at=posted.started)
