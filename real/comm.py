"""The real communicator: each call maps onto one ``torch.distributed`` call.

Calls are issued with ``async_op=True`` and return handles, so the strategy's
``value = yield handle`` is where the rank actually blocks, exactly as in the simulator.
Messages of several tensors travel as one send per tensor: the first with tag 0 and the rest
with tag 1, so that a receive from *any* rank (gloo's ``recvAnysource``) only ever matches
the first tensor of a message and the rest are then received from the sender it reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from strategies.aggregate import check_reduce_op
from strategies.comm import CommError, Group, as_message, make_group, message_nbytes
from strategies.handles import Done, Pending

__all__ = ["RealCommunicator"]

_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}
FIRST_TAG, REST_TAG = 0, 1


class _RecvAny:
    """Receive a message from whichever rank sends first, then the rest of it from that rank."""

    def __init__(self, buffers: list[torch.Tensor]) -> None:
        self._buffers = buffers
        self._first = dist.irecv(buffers[0], src=None, tag=FIRST_TAG)
        self._value: tuple[int, list[torch.Tensor]] | None = None

    def wait(self) -> tuple[int, list[torch.Tensor]]:
        if self._value is None:
            self._first.wait()
            src = int(self._first._source_rank())
            for buffer in self._buffers[1:]:
                dist.irecv(buffer, src=src, tag=REST_TAG).wait()
            self._value = (src, self._buffers)
        return self._value


class RealCommunicator:
    """One rank's ``strategies.Communicator`` over the default process group."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size
        self.bytes_sent = 0.0
        self._groups: dict[tuple[int, ...], Any] = {}

    def new_group(self, ranks: Sequence[int]) -> Group:
        group = make_group(ranks, self.world_size)
        if group.ranks != tuple(range(self.world_size)) and group.ranks not in self._groups:
            # torch requires every rank of the world to create every group, in the same order.
            self._groups[group.ranks] = dist.new_group(list(group.ranks))
        return group

    def _pg(self, group: Group | None) -> Any:
        if group is None or group.ranks == tuple(range(self.world_size)):
            return None
        if group.ranks not in self._groups:
            raise CommError(
                f"group {group.ranks} was not made by new_group on this rank; "
                "create every group with comm.new_group on every rank"
            )
        return self._groups[group.ranks]

    def _size(self, group: Group | None) -> int:
        return self.world_size if group is None else group.size

    def _op(self, op: str) -> Any:
        return _OPS[check_reduce_op(op)]

    def _charge_ring(self, tensor: torch.Tensor, group: Group | None, factor: float) -> None:
        # The backend hides its algorithm; charge what a ring would send from this rank.
        n = self._size(group)
        self.bytes_sent += factor * (n - 1) / n * message_nbytes([tensor])

    def all_reduce(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Pending[torch.Tensor]:
        work = dist.all_reduce(tensor, op=self._op(op), group=self._pg(group), async_op=True)
        self._charge_ring(tensor, group, 2.0)
        n = self._size(group)
        return Pending([work], lambda: tensor.div_(n) if op == "mean" else tensor)

    def broadcast(
        self, tensor: torch.Tensor, src: int, group: Group | None = None, algorithm: str = "auto"
    ) -> Pending[torch.Tensor]:
        work = dist.broadcast(tensor, src=src, group=self._pg(group), async_op=True)
        self._charge_ring(tensor, group, 1.0)
        return Pending([work], lambda: tensor)

    def reduce(
        self,
        tensor: torch.Tensor,
        dst: int,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Pending[torch.Tensor]:
        work = dist.reduce(tensor, dst=dst, op=self._op(op), group=self._pg(group), async_op=True)
        self._charge_ring(tensor, group, 1.0)
        n = self._size(group)
        return Pending(
            [work], lambda: tensor.div_(n) if op == "mean" and self.rank == dst else tensor
        )

    def all_gather(
        self, tensor: torch.Tensor, group: Group | None = None, algorithm: str = "auto"
    ) -> Pending[list[torch.Tensor]]:
        n = self._size(group)
        outs = [torch.empty_like(tensor) for _ in range(n)]
        work = dist.all_gather(outs, tensor, group=self._pg(group), async_op=True)
        self._charge_ring(tensor, group, float(n))  # a ring forwards n-1 whole inputs
        return Pending([work], lambda: outs)

    def reduce_scatter(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Pending[torch.Tensor]:
        # gloo has no reduce_scatter for uneven chunks: all-reduce, then keep this rank's chunk
        # (charged as the all-reduce it is: twice a ring reduce-scatter's traffic).
        full = tensor.clone()
        handle = self.all_reduce(full, op, group)
        index = group.index(self.rank) if group is not None else self.rank
        n = self._size(group)
        return Pending([handle], lambda: torch.tensor_split(full, n)[index].clone())

    def barrier(self, group: Group | None = None) -> Pending[None]:
        return Pending([dist.barrier(group=self._pg(group), async_op=True)], lambda: None)

    def send(self, tensors: torch.Tensor | Sequence[torch.Tensor], dst: int) -> Pending[None]:
        message = [t.contiguous() for t in as_message(tensors)]
        works = [dist.isend(message[0], dst=dst, tag=FIRST_TAG)]
        works += [dist.isend(t, dst=dst, tag=REST_TAG) for t in message[1:]]
        self.bytes_sent += message_nbytes(message)
        return Pending(works, lambda: None)

    def recv(self, buffers: torch.Tensor | Sequence[torch.Tensor], src: int | None = None) -> Any:
        message = as_message(buffers)
        if src is None:
            return _RecvAny(message)
        works = [dist.irecv(message[0], src=src, tag=FIRST_TAG)]
        works += [dist.irecv(b, src=src, tag=REST_TAG) for b in message[1:]]
        return Pending(works, lambda: (src, message))

    def wait_all(self, handles: Sequence[Any]) -> Any:
        handles = list(handles)
        if not handles:
            return Done([])
        return Pending([], lambda: [h.wait() for h in handles])
