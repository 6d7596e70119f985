"""The operations a rank starts: groups, collectives and sends (:class:`TorchTransport`).

Calls are issued with ``async_op=True``; their handles are finished by
:mod:`real.transport.completion`, and receives are matched by
:mod:`real.transport.matching`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from real.transport.charges import sent_bytes
from real.transport.envelope import ENVELOPE_TAG, Tags, encode
from real.transport.matching import Receiving
from real.transport.staging import resolve_device
from strategies.comm import CommError, Group, header_nbytes, message_nbytes
from strategies.handles import Handle
from strategies.operations import Operation

__all__ = ["TorchTransport"]

_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}


class TorchTransport(Receiving):
    """One rank's ``strategies.comm.Transport`` over the default process group (gloo or NCCL).

    Its parts, one job each: :mod:`~real.transport.envelope` (what a message is on the
    wire), :mod:`~real.transport.staging` (devices), :mod:`~real.transport.completion`
    (finishing handles), :mod:`~real.transport.matching` and
    :mod:`~real.transport.delivery` (receiving); this class starts the operations.

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
        NCCL. Tensors elsewhere are staged through it (:mod:`real.transport.staging`).
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
        any rank, so such a receive takes whoever sent first (:mod:`real.transport.matching`). On
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
        self.device = resolve_device(device)
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
        self._library = "nccl" if backend == "nccl" else "gloo"  # whose algorithms are charged
        self._may_come_first = not self._cuda if first_come is None else first_come
        self.inline = inline and not self._cuda
        self._held = {}  # collectives held for the waiting thread (completion)
        self._clock = clock
        self._charged = charged
        self._groups: dict[tuple[int, ...], Any] = {}
        self._agree = agree
        self._made = 0  # groups this rank has created (every call, the world's included)
        self._tags = Tags(world_size)  # each message's payload tag
        self._init_receiving()

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
        what: Operation,
    ) -> Handle[Any]:
        handle: Handle[Any] = Handle("comm", op=what)
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
            self._charge(kind, tensor, group, rank, root)
            finish = back(op == "mean")
        elif kind == "broadcast":
            work = dist.broadcast(moved, src=root, group=pg, async_op=True)
            self._charge(kind, tensor, group, rank, root)
            finish = back(False)
        elif kind == "reduce":
            # gloo leaves partial sums in the other ranks' buffers; the contract (and sim)
            # leaves them unchanged, so those ranks reduce from a copy (a staged one is).
            source = moved if rank == root or moved is not tensor else tensor.clone()
            work = dist.reduce(source, dst=root, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge(kind, tensor, group, rank, root)
            finish = back(op == "mean") if rank == root else (lambda: tensor)
        elif kind == "all_gather":
            outs = [torch.empty_like(moved) for _ in range(n)]
            work = dist.all_gather(outs, moved, group=pg, async_op=True)
            self._charge(kind, tensor, group, rank, root)

            def finish() -> list[torch.Tensor]:
                return outs if moved is tensor else [out.to(tensor.device) for out in outs]

        elif kind == "reduce_scatter":
            # gloo has no reduce_scatter for uneven chunks: all-reduce, then keep this rank's
            # chunk (charged as the all-reduce it is, as gloo's own reduce-scatter does).
            full = moved if moved is not tensor else tensor.clone()
            work = dist.all_reduce(full, op=_OPS[op or "sum"], group=pg, async_op=True)
            self._charge(kind, tensor, group, rank, root)
            index = group.index(rank)

            def finish() -> torch.Tensor:
                if op == "mean":
                    full.div_(n)
                chunk = torch.tensor_split(full, n)[index]
                return chunk.clone() if chunk.device == tensor.device else chunk.to(tensor.device)

        else:  # barrier
            work = dist.barrier(group=pg, async_op=True)
            finish = lambda: None  # noqa: E731
        self._complete_later(work, handle, finish, started)
        return handle

    def _charge(
        self, kind: str, tensor: torch.Tensor, group: Group, rank: int, root: int | None
    ) -> None:
        # The library hides its messages; charge what its algorithm sends from this rank.
        index = group.index(rank)
        self._charged(
            sent_bytes(
                kind,
                self._library,
                n=len(group.ranks),
                index=index,
                root=index if root is None else group.index(root),
                nbytes=message_nbytes([tensor]),
            )
        )

    # -- point to point: sending ----------------------------------------------------------
    def quorum(
        self,
        rank: int,
        ranks: tuple[int, ...],
        min_size: int,
        timeout: float | None,
        step: int,
        what: Operation,
    ) -> Handle[Any]:
        """Quorums need the run's membership over the launcher's store (faults on the real
        backend, issue 24's real part): refused with one line until then."""
        raise CommError(
            "w.quorum is not available on the real backend yet (fault tolerance runs in sim "
            "only for now); run this strategy with sim, or without fault_tolerance"
        )

    def send(
        self,
        rank: int,
        tensors: list[torch.Tensor],
        header: dict[str, Any],
        dst: int,
        what: Operation,
    ) -> Handle[None]:
        handle: Handle[None] = Handle("comm", op=what)
        started = self._clock()
        tag = self._tags.next(dst)
        frame = self._to_device(encode(header, tensors, tag))
        payload = [self._to_device(t) for t in tensors]
        works = [dist.isend(frame, dst=dst, tag=ENVELOPE_TAG)]
        works += [dist.isend(t, dst=dst, tag=tag) for t in payload]
        self._charged(message_nbytes(tensors) + header_nbytes(header))
        keep = [frame, *payload]  # staged copies outlive the transfer
        self._on_waiter(works, handle, keep.clear, started, f"rank {rank}: {handle.describe()}")
        return handle
