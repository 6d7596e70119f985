"""The real transport: each checked communicator call becomes ``torch.distributed`` calls.

Calls are issued with ``async_op=True`` and return :class:`~strategies.handles.Handle`
objects resolved from the library's completion: collectives through their futures,
point-to-point operations (gloo has no futures for them) through a small waiter thread. The
strategy's ``value = yield handle`` is where the rank blocks, exactly as in the simulator.

A message travels as an *envelope* and its payload. The envelope is a fixed-size int64 frame
holding the header and the payload's shapes and dtypes (JSON); it goes with tag 0, so a
receive from any rank matches envelopes only. The payload tensors follow with a tag unique to
the message on its channel (``1 + n`` for the sender's ``n``-th message to that rank), so a
receiver can never mix up two messages' payloads, whichever thread gets there first (the
envelope names the tag). With the
shapes in hand, a receiver checks them against its buffers and raises the same
:class:`~strategies.comm.CommError` the simulator raises (after draining the payload, so the
sender still completes, as in the simulator).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
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

__all__ = ["GlooTransport"]

_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}
ENVELOPE_TAG = 0


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


def _in_thread(body: Callable[[], None]) -> None:
    threading.Thread(target=body, daemon=True).start()


class GlooTransport:
    """One rank's ``strategies.comm.Transport`` over the default process group.

    Parameters
    ----------
    rank, world_size
        This rank and the world's size.
    clock
        Seconds since the run started (handles record when they finish).
    charged
        Called with the bytes charged for each operation this rank starts.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        clock: Callable[[], float],
        charged: Callable[[float], None],
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self._clock = clock
        self._charged = charged
        self._groups: dict[tuple[int, ...], Any] = {}
        self._sent_to = [0] * world_size  # messages sent to each rank (payload tags)

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, rank: int, group: Group) -> None:
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
        finish: Callable[[], Any]
        if kind == "all_reduce":
            work = dist.all_reduce(tensor, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge_ring(tensor, n, 2.0)
            finish = (lambda: tensor.div_(n)) if op == "mean" else (lambda: tensor)
        elif kind == "broadcast":
            work = dist.broadcast(tensor, src=root, group=pg, async_op=True)  # type: ignore[arg-type]
            self._charge_ring(tensor, n, 1.0)
            finish = lambda: tensor  # noqa: E731
        elif kind == "reduce":
            # gloo leaves partial sums in the other ranks' buffers; the contract (and sim)
            # leaves them unchanged, so those ranks reduce from a copy.
            source = tensor if rank == root else tensor.clone()
            work = dist.reduce(source, dst=root, op=_OPS[op or "sum"], group=pg, async_op=True)  # type: ignore[arg-type]
            self._charge_ring(tensor, n, 1.0)
            mean_here = op == "mean" and rank == root
            finish = (lambda: tensor.div_(n)) if mean_here else (lambda: tensor)
        elif kind == "all_gather":
            outs = [torch.empty_like(tensor) for _ in range(n)]
            work = dist.all_gather(outs, tensor, group=pg, async_op=True)
            self._charge_ring(tensor, n, float(n))  # a ring forwards n-1 whole inputs
            finish = lambda: outs  # noqa: E731
        elif kind == "reduce_scatter":
            # gloo has no reduce_scatter for uneven chunks: all-reduce, then keep this rank's
            # chunk (charged as the all-reduce it is: twice a ring reduce-scatter's traffic).
            full = tensor.clone()
            work = dist.all_reduce(full, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge_ring(tensor, n, 2.0)
            index = group.index(rank)

            def finish() -> torch.Tensor:
                if op == "mean":
                    full.div_(n)
                return torch.tensor_split(full, n)[index].clone()

        else:  # barrier
            work = dist.barrier(group=pg, async_op=True)
            finish = lambda: None  # noqa: E731
        self._on_future(work, handle, finish, started)
        return handle

    def _charge_ring(self, tensor: torch.Tensor, n: int, factor: float) -> None:
        # The library hides its algorithm; charge what a ring would send from this rank.
        self._charged(factor * (n - 1) / n * message_nbytes([tensor]))

    # -- point to point ----------------------------------------------------------------
    def send(
        self, rank: int, tensors: list[torch.Tensor], header: dict[str, Any], dst: int, what: str
    ) -> Handle[None]:
        handle: Handle[None] = Handle("comm", what)
        started = self._clock()
        self._sent_to[dst] += 1
        tag = self._sent_to[dst]
        envelope = _encode(header, tensors, tag)
        works = [dist.isend(envelope, dst=dst, tag=ENVELOPE_TAG)]
        works += [dist.isend(t, dst=dst, tag=tag) for t in tensors]
        self._charged(message_nbytes(tensors) + header_nbytes(header))

        def wait() -> None:
            try:
                for work in works:
                    work.wait()
            except Exception as exc:
                handle.fail(CommError(f"rank {rank}: {what} failed: {exc}"), at=self._clock())
                return
            handle.resolve(None, at=self._clock(), started_at=started)

        _in_thread(wait)
        return handle

    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: str
    ) -> Handle[Received]:
        handle: Handle[Received] = Handle("comm", what)
        started = self._clock()
        envelope = torch.empty(ENVELOPE_BYTES, dtype=torch.uint8)
        first = dist.irecv(envelope, src=src, tag=ENVELOPE_TAG)

        def wait() -> None:
            try:
                first.wait()
                sender = int(first._source_rank()) if src is None else src
                header, sent, tag = _decode(envelope)
                try:
                    check_received(rank, sender, sent, buffers)
                    into = buffers
                    mismatch: CommError | None = None
                except CommError as exc:  # drain the payload so the sender completes
                    into = [torch.empty(shape, dtype=getattr(torch, d)) for shape, d in sent]
                    mismatch = exc
                for buffer in into:
                    dist.irecv(buffer, src=sender, tag=tag).wait()
            except Exception as exc:
                handle.fail(CommError(f"rank {rank}: {what} failed: {exc}"), at=self._clock())
                return
            if mismatch is not None:
                handle.fail(mismatch, at=self._clock())
                return
            handle.resolve(Received(sender, buffers, header), at=self._clock(), started_at=started)

        _in_thread(wait)
        return handle
