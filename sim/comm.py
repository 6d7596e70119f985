"""The simulated transport: torch.distributed semantics on the simulated network.

Calls arrive here already checked by :class:`strategies.comm.Communicator`. Tensor maths is
exact and immediate; *time* comes from the network engine. A collective waits until every
rank of its group has called it, computes the result once (reducing in rank order, or in the
order of the library the run's collective rule imitates, so results never depend on event
order), asks the network to run the collective's point-to-point
schedule, and resolves each rank's handle when that finishes.

Point-to-point messages follow the rendezvous that gloo and NCCL use: a send is *matched*
with a receive posted for it by :class:`strategies.matching.Matcher`, the rule the real
transport uses too (as gloo matches: the first receive posted for its sender, else the first
from any rank; between one pair of ranks messages match in the order sent), its data starts
moving then, and both handles resolve when it is delivered. A send whose receive is never posted never completes,
as on a real world, and the simulator reports that deadlock at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
import torch

from sim.admission import Admission
from sim.failures import Failures
from sim.network import NetworkError
from sim.quorums import Quorums
from strategies.comm import (
    CommError,
    Communicator,
    Group,
    PeerFailure,
    Received,
    check_received,
    header_nbytes,
    message_nbytes,
    signature,
)
from strategies.handles import Handle
from strategies.matching import Matcher
from strategies.operations import Operation
from strategies.reduction_order import reduce_in_order

__all__ = ["CommError", "Fabric"]


@dataclass
class _Send:
    src: int
    dst: int
    tensors: list[torch.Tensor]
    header: dict[str, Any]
    handle: Handle[None]


@dataclass
class _Recv:
    rank: int
    buffers: list[torch.Tensor]
    handle: Handle[Received]


@dataclass
class _Transfer:
    """A matched message on its way (kept only in runs with faults, to abort it)."""

    message: _Send
    recv: _Recv
    aborted: bool = False


@dataclass
class _Rendezvous:
    """One collective call in progress: contributions gathered until the group is complete."""

    kind: str
    signature: tuple[Any, ...]
    seq: int
    group: Group
    tensors: dict[int, torch.Tensor] = field(default_factory=dict)
    handles: dict[int, Handle[Any]] = field(default_factory=dict)
    aborted: bool = False  # a member crashed while it ran: its handles fail, none resolves
    #: The first contribution's shape and dtype (read once: on a timing-only run's meta
    #: tensors each read goes through torch's device mode).
    like: tuple[torch.Size, torch.dtype] | None = None


class Fabric:
    """State shared by all ranks' transports in one simulation: posted messages, collective
    rendezvous and group creation (checked, with the calls held behind it, by
    :class:`sim.admission.Admission`). Implements ``strategies.comm.Transport``."""

    def __init__(
        self, env: simpy.Environment, network: Any, world_size: int, detect: float = 3.0
    ) -> None:
        self.env = env
        self.network = network
        self.world_size = world_size
        self.world = Group(tuple(range(world_size)))
        # Each group made by new_group, once for every rank (see Communicator). It starts
        # with the world: a group of every rank (a strategy's ``new_group(w.workers)``) is
        # then the world object itself, so that telling the two apart, which every rank's
        # every call does (``Communicator._group``, the keys of its calls), is an identity
        # test and not a comparison of two equal tuples of all ranks: O(ranks^2) a step.
        self._shared: dict[tuple[int, ...], Group] = {self.world.ranks: self.world}
        self._made: dict[int, tuple[Sequence[int], int, Group]] = {}
        # Each receiver's posted receives and waiting sends, matched by the one rule.
        self._match: list[Matcher[_Send, _Recv]] = [Matcher() for _ in range(world_size)]
        self._pending: dict[tuple[Group, int], _Rendezvous] = {}
        self._calls: dict[tuple[int, Group], int] = {}
        # The last delivery on each (src, dst) channel: messages between one pair arrive in
        # the order they were sent (as in torch.distributed), even when a later, smaller
        # message would finish its flow first.
        self._last_delivery: dict[tuple[int, int], simpy.Event] = {}
        # torch.distributed makes every rank create every group, in one order; a strategy
        # that skips that would hang on a real world, so the simulator checks it too, and
        # holds each call until the groups and the rank's own work before it are done.
        self._admission = Admission(world_size)
        #: The rank's own work its next calls wait for (set by the runtime: a server's step).
        self.local_work: Callable[[int], Handle[Any] | None] = lambda rank: None
        # Crashes and quorums (sim.failures, sim.quorums); operations in progress are kept
        # only where ranks may crash, so that a run without faults pays nothing for them.
        self.failures = Failures(env, detect)
        self.quorums = Quorums(env, self.failures)
        self.faulty = False
        self._running: dict[int, _Rendezvous] = {}
        self._transfers: dict[int, _Transfer] = {}
        # Whose order sums follow: the library the run's collective rule imitates (gloo adds
        # each chunk from a different rank, strategies.reduction_order); rank order else.
        planner = getattr(network, "planner", None)
        self.library: str = planner.rule.name if planner is not None else "commsim"

    def communicator(self, rank: int) -> Communicator:
        """``rank``'s communicator; every rank's shares the fabric's world group and groups."""
        return Communicator(
            rank, self.world_size, self, world=self.world, shared=self._shared, made=self._made
        )

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, rank: int, group: Group) -> None:
        """Record ``rank``'s next group creation; it must match every other rank's."""
        self._admission.new_group(rank, group)

    def check_groups(self) -> None:
        """Raise if some rank did not create every group (a real run would hang there)."""
        self._admission.check_groups()

    def _admit(self, rank: int, what: Operation, start: Callable[[], Handle[Any]]) -> Handle[Any]:
        """Start ``rank``'s call now or hold it, behind its own work (:class:`~sim.admission.Admission`)."""
        return self._admission.admit(rank, what, self.local_work(rank), start)

    # -- collectives -------------------------------------------------------------------
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
        """Register ``rank``'s call of a collective; start it when the group is complete."""
        return self._admit(
            rank,
            what,
            lambda: self._collective(rank, kind, tensor, group, op, root, algorithm, what),
        )

    def _collective(
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
        signature_ = (op, root, algorithm)
        if self.failures:
            dead = self.failures.broken(group)
            if dead:  # it can never complete: it fails once the crash is known
                handle_: Handle[Any] = Handle("comm", op=what)
                self.failures.fail(handle_, dead, f"{kind} on group {group.ranks}")
                return handle_
        gkey = group.key  # (a property: read once)
        key = (rank, gkey)
        seq = self._calls.get(key, 0)
        self._calls[key] = seq + 1
        slot = self._pending.get((gkey, seq))
        if slot is None:
            slot = self._pending[(gkey, seq)] = _Rendezvous(kind, signature_, seq, group)
        elif (slot.kind, slot.signature) != (kind, signature_):
            first = next(iter(slot.handles))
            raise CommError(
                f"collective #{seq} on group {group.ranks}: rank {rank} called "
                f"{_show(kind, signature_)} but rank {first} called "
                f"{_show(slot.kind, slot.signature)}; every rank must make the same collective "
                "calls in the same order"
            )
        like = (tensor.shape, tensor.dtype)
        if slot.like is None:
            slot.like = like  # the first contribution's, which every other must match
        elif like != slot.like:
            first_rank, first_tensor = next(iter(slot.tensors.items()))
            raise CommError(
                f"collective #{seq} {kind} on group {group.ranks}: rank {rank} passed a "
                f"{tuple(tensor.shape)} {tensor.dtype} tensor but rank {first_rank} passed "
                f"{tuple(first_tensor.shape)} {first_tensor.dtype}; every rank must pass the "
                "same shape"
            )
        handle: Handle[Any] = Handle("comm", op=what, seq=seq)
        slot.tensors[rank] = tensor
        slot.handles[rank] = handle
        if len(slot.handles) == group.size:
            del self._pending[(gkey, seq)]
            self._start(group, slot)
        return handle

    def _start(self, group: Group, slot: _Rendezvous) -> None:
        started = self.env.now
        ordered = [slot.tensors[r] for r in group.ranks]
        op, root, algorithm = slot.signature
        results = _collective_results(slot.kind, op, root, group, ordered, self.library)
        # The network takes the full buffer per rank: a reduction's input, a gather's output.
        if slot.kind == "barrier":
            nbytes = 0
        elif slot.kind == "all_gather":
            nbytes = message_nbytes(ordered)
        else:
            nbytes = message_nbytes([ordered[0]])

        def deliver(event: Any = None) -> None:
            if event is not None and not event.ok:
                event.defused = True  # handled here: the engine must not raise it
            if slot.aborted:  # a member crashed: every member's handle fails (see crash)
                return
            self._running.pop(id(slot), None)
            if event is not None and not event.ok:  # a link it needed went down for good
                error = _unreachable(f"{slot.kind} on group {group.ranks}", event.value)
                for handle in slot.handles.values():
                    handle.fail(error, at=self.env.now)
                return
            # In-place results land when the network says the data has arrived, not earlier.
            now = self.env.now
            for rank, value in zip(group.ranks, results):
                if slot.kind in _IN_PLACE:
                    tensor = slot.tensors[rank]
                    if value is None:
                        pass
                    elif tensor.requires_grad or value.requires_grad:
                        with torch.no_grad():  # a parameter is a buffer too, as in gloo
                            tensor.copy_(value)
                    else:  # no graph either way: the grad mode changes nothing, skip it
                        tensor.copy_(value)
                    value = tensor
                slot.handles[rank].resolve(value, at=now, started_at=started)

        if group.size == 1:
            deliver()
            return
        try:
            done = self.network.collective(
                slot.kind, nbytes, ranks=list(group.ranks), algorithm=algorithm, root=root
            )
        except NetworkError as exc:  # e.g. 'hierarchical' on hosts without nodes
            error = CommError(f"{slot.kind} on group {group.ranks}: {exc}")
            for handle in slot.handles.values():  # every rank learns it at its yield
                handle.fail(error, at=self.env.now)
            return
        if self.faulty:
            self._running[id(slot)] = slot
        done.callbacks.append(deliver)

    def missing(self, handle: Handle[Any]) -> list[int]:
        """Ranks a pending collective still waits for (for deadlock reports)."""
        for (group, _), slot in self._pending.items():
            if any(h is handle for h in slot.handles.values()):
                return [r for r in group.ranks if r not in slot.handles]
        return self.quorums.waiting(handle)

    # -- point to point ----------------------------------------------------------------
    def send(
        self,
        rank: int,
        tensors: list[torch.Tensor],
        header: dict[str, Any],
        dst: int,
        what: Operation,
    ) -> Handle[None]:
        # Snapshot now: a real send reads the buffer while it moves, and torch forbids
        # changing it before the handle is waited on; a copy keeps the simulation exact.
        payload = [t.detach().clone() for t in tensors]
        return self._admit(rank, what, lambda: self._send(rank, payload, header, dst, what))

    def _send(
        self,
        rank: int,
        payload: list[torch.Tensor],
        header: dict[str, Any],
        dst: int,
        what: Operation,
    ) -> Handle[None]:
        handle: Handle[None] = Handle("comm", op=what)
        if self.failures.is_down(dst):
            self.failures.fail(handle, (dst,), f"send from rank {rank} to rank {dst}")
            return handle
        message = _Send(rank, dst, payload, dict(header), handle)
        recv = self._match[dst].offer(rank, message)  # else it waits for its receive
        if recv is not None:
            self._transfer(message, recv)
        return handle

    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: Operation
    ) -> Handle[Received]:
        return self._admit(rank, what, lambda: self._recv(rank, buffers, src, what))

    def _recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: Operation
    ) -> Handle[Received]:
        handle: Handle[Received] = Handle("comm", op=what)
        if src is not None and self.failures.is_down(src):
            self.failures.fail(handle, (src,), f"recv on rank {rank} from rank {src}")
            return handle
        recv = _Recv(rank, buffers, handle)
        message = self._match[rank].post(src, recv)  # else it waits for a send
        if message is not None:
            self._transfer(message, recv)
        return handle

    def _transfer(self, message: _Send, recv: _Recv) -> None:
        started = self.env.now
        channel = (message.src, message.dst)
        previous = self._last_delivery.get(channel)
        delivered = self._last_delivery[channel] = self.env.event()
        transfer = _Transfer(message, recv)
        if self.faulty:
            self._transfers[id(transfer)] = transfer

        def deliver(event: Any = None) -> None:
            if event is not None and not event.ok:
                event.defused = True  # handled here: the engine must not raise it
            delivered.succeed()
            if self._last_delivery.get(channel) is delivered:
                del self._last_delivery[channel]
            if self.faulty:
                self._transfers.pop(id(transfer), None)
                if transfer.aborted:  # an end crashed: the live end's handle fails
                    return
            if event is not None and not event.ok:  # no live path between the two
                error = _unreachable(
                    f"message from rank {message.src} to rank {message.dst}", event.value
                )
                message.handle.fail(error, at=self.env.now)
                recv.handle.fail(error, at=self.env.now)
                return
            now = self.env.now
            message.handle.resolve(None, at=now, started_at=started)
            try:  # a message that does not fit fails the receive, at the receiver's yield
                check_received(recv.rank, message.src, signature(message.tensors), recv.buffers)
            except CommError as exc:
                recv.handle.fail(exc, at=now)
                return
            with torch.no_grad():
                for buffer, tensor in zip(recv.buffers, message.tensors):
                    buffer.copy_(tensor)
            recv.handle.resolve(
                Received(message.src, recv.buffers, message.header), at=now, started_at=started
            )

        nbytes = message_nbytes(message.tensors) + header_nbytes(message.header)
        arrived = self.network.send(message.src, message.dst, nbytes)
        wait = arrived if previous is None else self.env.all_of([arrived, previous])
        wait.callbacks.append(deliver)

    # -- membership and crashes -------------------------------------------------------------
    def quorum(
        self,
        rank: int,
        ranks: tuple[int, ...],
        min_size: int,
        timeout: float | None,
        step: int,
        what: Operation,
    ) -> Handle[Any]:
        return self.quorums.ask(rank, ranks, min_size, timeout, step, what)

    def crash(self, rank: int) -> None:
        """``rank`` crashed now: what it waited for is dropped, and every operation that
        involves it fails on its live ranks once the crash is detected (sim.failures)."""
        failures = self.failures
        failures.crash(rank)
        self.quorums.crash(rank)
        self._admission.crash(rank)
        for key, slot in list(self._pending.items()):
            if rank in slot.group.ranks:
                del self._pending[key]
                self._abort(slot, rank)
        for slot in [s for s in self._running.values() if rank in s.group.ranks]:
            del self._running[id(slot)]
            self._abort(slot, rank)
        for dst, matcher in enumerate(self._match):
            if dst == rank:
                messages, _ = matcher.clear()  # its own receives die with it
                for message in messages:
                    failures.fail(
                        message.handle, (rank,), f"send from rank {message.src} to rank {rank}"
                    )
            else:
                _, recvs = matcher.drop(rank)  # its unmatched sends die with it
                for recv in recvs:
                    failures.fail(recv.handle, (rank,), f"recv on rank {dst} from rank {rank}")
        for transfer in list(self._transfers.values()):
            message, recv = transfer.message, transfer.recv
            if rank in (message.src, message.dst):
                transfer.aborted = True
                live = recv.handle if message.src == rank else message.handle
                failures.fail(
                    live, (rank,), f"message from rank {message.src} to rank {message.dst}"
                )
        drop = getattr(self.network, "drop_rank", None)
        if drop is not None:
            drop(rank)

    def _abort(self, slot: _Rendezvous, rank: int) -> None:
        slot.aborted = True
        what = f"{slot.kind} on group {slot.group.ranks}"
        for member, handle in slot.handles.items():
            if member != rank:
                self.failures.fail(handle, (rank,), what)

    def reset(self) -> None:
        """Every rank restarted together (a restart from a checkpoint): a new world, with
        nothing in progress and no group broken; what was in flight never lands."""
        for slot in self._running.values():
            slot.aborted = True
        for transfer in self._transfers.values():
            transfer.aborted = True
        drop = getattr(self.network, "drop_rank", None)
        if drop is not None:
            for rank in range(self.world_size):
                drop(rank)
        self._match = [Matcher() for _ in range(self.world_size)]
        self._pending, self._calls, self._last_delivery = {}, {}, {}
        self._running, self._transfers = {}, {}
        self._admission = Admission(self.world_size)
        self.failures = Failures(self.env, self.failures.detect)
        self.quorums = Quorums(self.env, self.failures)

    def restart(self, rank: int) -> None:
        """``rank`` is back as a new process: point-to-point messages reach it again; the
        groups it was in before stay broken (sim.failures)."""
        self.failures.restart(rank)
        self._admission.restart(rank)

    def unmatched(self, handle: Handle[Any]) -> bool:
        """Whether ``handle`` is a send or receive still waiting for its match."""
        return any(m.handle is handle for q in self._match for m in q.messages()) or any(
            r.handle is handle for q in self._match for r in q.receives()
        )


def _unreachable(what: str, cause: BaseException) -> PeerFailure:
    """A :class:`PeerFailure` for an operation the network could not carry (a link down with
    no other path): its ranks are those the network names."""
    ranks = getattr(cause, "ranks", None) or ((cause.rank,) if hasattr(cause, "rank") else ())
    error = PeerFailure(f"{what}: {cause}", tuple(ranks))
    error.__cause__ = cause  # what a run it ends says it with (sim.run)
    return error


def _show(kind: str, signature: tuple[Any, ...]) -> str:
    op, root, algorithm = signature
    parts = [f"op={op!r}"] if op is not None else []
    parts += [f"root={root}"] if root is not None else []
    parts += [f"algorithm={algorithm!r}"]
    return f"{kind}({', '.join(parts)})"


#: Collectives whose result is written into the caller's tensor.
_IN_PLACE = ("all_reduce", "broadcast", "reduce")


def _collective_results(
    kind: str,
    op: str | None,
    root: int | None,
    group: Group,
    tensors: list[torch.Tensor],
    library: str = "commsim",
) -> list[Any]:
    """What each rank of the group gets back, computed once from all contributions, summed
    in ``library``'s order (:func:`strategies.reduction_order.reduce_in_order`).

    For in-place collectives a value is what to copy into the rank's tensor (``None``: leave
    it); nothing here aliases the contributions, so the copies can wait for the network.
    """
    if kind == "all_reduce":
        reduced = reduce_in_order(tensors, op or "sum", library)
        return [reduced for _ in tensors]
    if kind == "broadcast":
        assert root is not None, "a broadcast names its root"
        source = tensors[group.index(root)].clone()
        return [source for _ in tensors]
    if kind == "reduce":
        reduced = reduce_in_order(tensors, op or "sum", library, "reduce")
        return [reduced if r == root else None for r in group.ranks]
    if kind == "all_gather":
        gathered = [t.clone() for t in tensors]
        if gathered and gathered[0].is_meta:  # shapes only (timing-only): nothing to alias
            return [list(gathered) for _ in tensors]
        return [[g.clone() for g in gathered] for _ in tensors]
    if kind == "reduce_scatter":
        # gloo's reduce-scatter (and real's) is an all-reduce of the whole buffer
        chunks = torch.tensor_split(reduce_in_order(tensors, op or "sum", library), group.size)
        return [c.clone() for c in chunks]
    return [None for _ in tensors]  # barrier
