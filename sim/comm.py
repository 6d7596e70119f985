"""The simulated communicator: torch.distributed semantics on the simulated network.

Tensor maths is exact and immediate; *time* comes from the network engine. A collective
waits until every rank of its group has called it, computes the result once (reducing in
rank order, so results never depend on event order), asks the network to run the
collective's point-to-point schedule, and hands each rank its result when that finishes.
Point-to-point messages travel as flows and land in the receiver's mailbox, in the order
they were sent between each pair of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
import torch

from sim.ops import Op
from strategies.aggregate import check_reduce_op, reduce_tensors
from strategies.comm import CommError, Group, as_message, check_rank, make_group, message_nbytes

__all__ = ["Fabric", "SimCommunicator", "CommError"]


@dataclass
class _Message:
    src: int
    tensors: list[torch.Tensor]
    sent_at: float


@dataclass
class _Rendezvous:
    """One collective call in progress: contributions gathered until the group is complete."""

    kind: str
    signature: tuple[Any, ...]
    tensors: dict[int, torch.Tensor] = field(default_factory=dict)
    ops: dict[int, Op] = field(default_factory=dict)


class Fabric:
    """State shared by all ranks' communicators in one simulation: mailboxes and rendezvous."""

    def __init__(self, env: simpy.Environment, network: Any, world_size: int) -> None:
        self.env = env
        self.network = network
        self.world_size = world_size
        self.world = Group(tuple(range(world_size)))
        self.mailboxes = [simpy.FilterStore(env) for _ in range(world_size)]
        self._pending: dict[tuple[tuple[int, ...], int], _Rendezvous] = {}
        self._calls: dict[tuple[int, tuple[int, ...]], int] = {}
        # The last delivery on each (src, dst) channel: messages between one pair arrive in
        # the order they were sent (as in torch.distributed), even when a later, smaller
        # message would finish its flow first.
        self._last_delivery: dict[tuple[int, int], simpy.Event] = {}
        # torch.distributed makes every rank create every group, in one order; a strategy
        # that skips that would hang on a real world, so the simulator checks it too.
        self._group_order: list[tuple[int, ...]] = []
        self._groups_made: dict[int, int] = {}

    def communicator(self, rank: int) -> SimCommunicator:
        return SimCommunicator(self, rank)

    def new_group(self, rank: int, ranks: Sequence[int]) -> Group:
        """Record ``rank``'s next group creation; it must match every other rank's."""
        group = make_group(ranks, self.world_size)
        index = self._groups_made.get(rank, 0)
        if index < len(self._group_order) and self._group_order[index] != group.ranks:
            raise CommError(
                f"rank {rank} created group #{index} over {group.ranks} but another rank's "
                f"group #{index} is {self._group_order[index]}; every rank must create the same "
                "groups in the same order (torch.distributed requires it)"
            )
        if index == len(self._group_order):
            self._group_order.append(group.ranks)
        self._groups_made[rank] = index + 1
        return group

    def check_groups(self) -> None:
        """Raise if some rank did not create every group (a real run would hang there)."""
        for rank in range(self.world_size):
            made = self._groups_made.get(rank, 0)
            if made != len(self._group_order):
                raise CommError(
                    f"rank {rank} created {made} of the {len(self._group_order)} groups the other "
                    "ranks created; every rank of the world must call new_group for every group, "
                    "members or not (torch.distributed requires it)"
                )

    # -- collectives -------------------------------------------------------------------
    def join(
        self, rank: int, group: Group, kind: str, tensor: torch.Tensor, signature: tuple[Any, ...]
    ) -> Op:
        """Register ``rank``'s call of a collective; start it when the group is complete."""
        if rank not in group.ranks:
            raise CommError(f"rank {rank} called {kind} on a group it is not in: {group.ranks}")
        key = (rank, group.ranks)
        seq = self._calls.get(key, 0)
        self._calls[key] = seq + 1
        slot = self._pending.get((group.ranks, seq))
        if slot is None:
            slot = self._pending[(group.ranks, seq)] = _Rendezvous(kind, signature)
        elif (slot.kind, slot.signature) != (kind, signature):
            raise CommError(
                f"collective #{seq} on group {group.ranks}: rank {rank} called {kind}{signature} "
                f"but rank {next(iter(slot.ops))} called {slot.kind}{slot.signature}; every rank "
                "must make the same collective calls in the same order"
            )
        if slot.tensors:
            first_rank, first = next(iter(slot.tensors.items()))
            if (tensor.shape, tensor.dtype) != (first.shape, first.dtype):
                raise CommError(
                    f"collective #{seq} {kind} on group {group.ranks}: rank {rank} passed a "
                    f"{tuple(tensor.shape)} {tensor.dtype} tensor but rank {first_rank} passed "
                    f"{tuple(first.shape)} {first.dtype}; every rank must pass the same shape"
                )
        op = Op(self.env)
        slot.tensors[rank] = tensor
        slot.ops[rank] = op
        if len(slot.ops) == group.size:
            del self._pending[(group.ranks, seq)]
            self._start(group, slot)
        return op

    def _start(self, group: Group, slot: _Rendezvous) -> None:
        started = self.env.now
        ordered = [slot.tensors[r] for r in group.ranks]
        results = _collective_results(slot.kind, slot.signature, group, ordered)
        # The network takes the full buffer per rank: a reduction's input, a gather's output.
        if slot.kind == "barrier":
            nbytes = 0
        elif slot.kind == "all_gather":
            nbytes = message_nbytes(ordered)
        else:
            nbytes = message_nbytes([ordered[0]])
        algorithm, root = (
            slot.signature[-1],
            slot.signature[1] if slot.kind in ("broadcast", "reduce") else None,
        )

        def deliver(_: Any = None) -> None:
            # In-place results land when the network says the data has arrived, not earlier.
            for rank, value in zip(group.ranks, results):
                if slot.kind in _IN_PLACE:
                    tensor = slot.tensors[rank]
                    if value is not None:
                        tensor.copy_(value)
                    value = tensor
                slot.ops[rank].finish(value, started_at=started)

        if group.size == 1:
            deliver()
            return
        done = self.network.collective(
            slot.kind, nbytes, ranks=list(group.ranks), algorithm=algorithm, root=root
        )
        done.callbacks.append(deliver)

    # -- point to point ----------------------------------------------------------------
    def send(self, src: int, tensors: list[torch.Tensor], dst: int) -> Op:
        check_rank(dst, self.world_size, "dst")
        message = _Message(src, [t.detach().clone() for t in tensors], self.env.now)
        op = Op(self.env)
        channel = (src, dst)
        previous = self._last_delivery.get(channel)
        delivered = self._last_delivery[channel] = self.env.event()

        def deliver(_: Any = None) -> None:
            self.mailboxes[dst].put(message)
            delivered.succeed()
            if self._last_delivery.get(channel) is delivered:
                del self._last_delivery[channel]
            op.finish(None, started_at=message.sent_at)

        arrived = self.network.send(src, dst, message_nbytes(tensors))
        wait = arrived if previous is None else self.env.all_of([arrived, previous])
        wait.callbacks.append(deliver)
        return op

    def recv(self, rank: int, buffers: list[torch.Tensor], src: int | None) -> Op:
        if src is not None:
            check_rank(src, self.world_size, "src")
        op = Op(self.env)
        wanted = (lambda m: True) if src is None else (lambda m: m.src == src)
        get = self.mailboxes[rank].get(wanted)

        def arrive(event: simpy.Event) -> None:
            message: _Message = event.value
            # A silent dtype cast here would hide what the real backend turns into garbage.
            if len(message.tensors) != len(buffers) or any(
                (b.shape, b.dtype) != (t.shape, t.dtype) for b, t in zip(buffers, message.tensors)
            ):
                raise CommError(
                    f"rank {rank} received a message of shapes "
                    f"{[(tuple(t.shape), t.dtype) for t in message.tensors]} from rank "
                    f"{message.src} into buffers of shapes "
                    f"{[(tuple(b.shape), b.dtype) for b in buffers]}; make them match"
                )
            for buffer, tensor in zip(buffers, message.tensors):
                buffer.copy_(tensor)
            op.finish((message.src, buffers), started_at=message.sent_at)

        get.callbacks.append(arrive)
        return op

    def wait_all(self, handles: Sequence[Op]) -> Op:
        op = Op(self.env)
        op.children = tuple(handles)
        condition = self.env.all_of(list(handles))

        def finish(_: Any) -> None:
            starts = [h.started_at for h in handles if h.started_at is not None]
            op.finish([h.value for h in handles], started_at=min(starts, default=None))

        condition.callbacks.append(finish)
        return op


def _check_root(rank: int, group: Group, name: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank not in group.ranks:
        raise CommError(f"{name}={rank!r} is not a rank of the group {group.ranks}")
    return rank


#: Collectives whose result is written into the caller's tensor.
_IN_PLACE = ("all_reduce", "broadcast", "reduce")


def _collective_results(
    kind: str, signature: tuple[Any, ...], group: Group, tensors: list[torch.Tensor]
) -> list[Any]:
    """What each rank of the group gets back, computed once from all contributions.

    For in-place collectives a value is what to copy into the rank's tensor (``None``: leave
    it); nothing here aliases the contributions, so the copies can wait for the network.
    """
    if kind == "all_reduce":
        reduced = reduce_tensors(tensors, signature[0])
        return [reduced for _ in tensors]
    if kind == "broadcast":
        source = tensors[group.index(signature[1])].clone()
        return [source for _ in tensors]
    if kind == "reduce":
        op, dst = signature[0], signature[1]
        reduced = reduce_tensors(tensors, op)
        return [reduced if r == dst else None for r in group.ranks]
    if kind == "all_gather":
        gathered = [t.clone() for t in tensors]
        return [[g.clone() for g in gathered] for _ in tensors]
    if kind == "reduce_scatter":
        chunks = torch.tensor_split(reduce_tensors(tensors, signature[0]), group.size)
        return [c.clone() for c in chunks]
    return [None for _ in tensors]  # barrier


class SimCommunicator:
    """One rank's view of the :class:`Fabric`; implements ``strategies.Communicator``."""

    def __init__(self, fabric: Fabric, rank: int) -> None:
        self.fabric = fabric
        self.rank = rank
        self.world_size = fabric.world_size

    def new_group(self, ranks: Sequence[int]) -> Group:
        return self.fabric.new_group(self.rank, ranks)

    def _group(self, group: Group | None) -> Group:
        return self.fabric.world if group is None else group

    def _reduce_op(self, op: str) -> str:
        try:
            return check_reduce_op(op)
        except ValueError as exc:  # a communicator misuse, like every other error here
            raise CommError(str(exc)) from None

    def all_reduce(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Op:
        sig = (self._reduce_op(op), algorithm)
        return self.fabric.join(self.rank, self._group(group), "all_reduce", tensor, sig)

    def broadcast(
        self, tensor: torch.Tensor, src: int, group: Group | None = None, algorithm: str = "auto"
    ) -> Op:
        group = self._group(group)
        sig = (None, _check_root(src, group, "src"), algorithm)
        return self.fabric.join(self.rank, group, "broadcast", tensor, sig)

    def reduce(
        self,
        tensor: torch.Tensor,
        dst: int,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Op:
        group = self._group(group)
        sig = (self._reduce_op(op), _check_root(dst, group, "dst"), algorithm)
        return self.fabric.join(self.rank, group, "reduce", tensor, sig)

    def all_gather(
        self, tensor: torch.Tensor, group: Group | None = None, algorithm: str = "auto"
    ) -> Op:
        return self.fabric.join(
            self.rank, self._group(group), "all_gather", tensor, (None, algorithm)
        )

    def reduce_scatter(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Op:
        sig = (self._reduce_op(op), algorithm)
        return self.fabric.join(self.rank, self._group(group), "reduce_scatter", tensor, sig)

    def barrier(self, group: Group | None = None) -> Op:
        return self.fabric.join(
            self.rank, self._group(group), "barrier", torch.zeros(0), (None, "auto")
        )

    def send(self, tensors: torch.Tensor | Sequence[torch.Tensor], dst: int) -> Op:
        return self.fabric.send(self.rank, as_message(tensors), dst)

    def recv(self, buffers: torch.Tensor | Sequence[torch.Tensor], src: int | None = None) -> Op:
        return self.fabric.recv(self.rank, as_message(buffers), src)

    def wait_all(self, handles: Sequence[Op]) -> Op:
        return self.fabric.wait_all(list(handles))
