"""The operations a rank starts: groups, collectives and sends (:class:`TorchTransport`).

Calls are issued with ``async_op=True``; their handles are finished by
:mod:`real.transport.completion`, and receives are matched by
:mod:`real.transport.matching`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch._C import _distributed_c10d as c10d  # (AllgatherOptions is not re-exported)

from real.membership import PartitionStuck
from real.transport.charges import sent_bytes
from real.transport.envelope import ENVELOPE_TAG, Tags, encode
from real.transport.matching import Posted, Receiving
from real.transport.staging import resolve_device
from strategies.comm import CommError, Group, PeerFailure, header_nbytes, message_nbytes
from strategies.handles import Handle
from strategies.membership import Quorum
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
    faults
        The rank's fault schedule (:class:`real.crashes.RankFaults`), or None.
    quorums
        For a run without a schedule: makes one with no faults, for the run's quorums
        (:mod:`real.membership`), when the program first asks for one. None (and no
        ``faults``): ``w.quorum`` is refused.
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
        faults: Any = None,
        quorums: Callable[[], Any] | None = None,
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
        #: Links to and from restarted ranks (:mod:`real.transport.links`), or None: a run
        #: whose schedule restarts no rank alone sends every message over the world group.
        self._links = faults.links() if faults is not None else None
        if self._links is not None:
            portable = True  # (a pair's group has no receive from any rank: matched here)
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
        #: The rank's fault schedule (:class:`real.crashes.RankFaults`), or None: quorums,
        #: their process groups (by quorum id: a failed one is dropped at once, every
        #: reference, so that peers blocked on this rank fail at once too) and peer failures.
        self._faults = faults
        #: Without a schedule: makes the rank's membership (a fault-free
        #: :class:`real.crashes.RankFaults`) when the program first asks for a quorum.
        self._quorums = quorums
        self._quorum_groups: dict[int, tuple[tuple[int, ...], Any]] = {}
        #: Quorum groups let go (a newer quorum formed, or an operation on one failed), kept
        #: until no operation of this rank on them is in flight and then destroyed by the
        #: rank's own thread (:meth:`_reap`): a gloo group whose last reference went on the
        #: library's thread (a failed operation's callback) destroyed itself there, and its
        #: destructor, joining that thread, aborted the rank ("Resource deadlock avoided").
        self._retired: list[tuple[int, Any]] = []
        #: This rank's operations on quorum groups not finished yet: their quorum id, and
        #: the rank's step when each started (:meth:`settle`).
        self._in_flight: dict[Handle[Any], tuple[int, int]] = {}
        self._groups_lock = threading.Lock()
        self._asked = False  # whether this process has asked for a quorum yet
        #: A quorum whose group could not be built, and the members found dead then.
        self._unbuilt: dict[int, tuple[int, ...]] = {}
        self._init_receiving()

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, rank: int, group: Group) -> None:
        index, self._made = self._made, self._made + 1
        if self._agree is not None:  # every rank creates it, as sim requires (gloo does not)
            self._agree(index, group.ranks)
        if group.ranks != tuple(range(self.world_size)) and group.ranks not in self._groups:
            if not dist.is_initialized():
                # A restarted process (it joins no world group, so none of its subgroups):
                # the survivors made theirs long ago; only its quorums' groups reach it.
                self._groups[group.ranks] = None
                return
            # torch requires every rank of the world to create every group, in the same order.
            self._groups[group.ranks] = dist.new_group(list(group.ranks))

    def _pg(self, group: Group) -> Any:
        if group.epoch > 0:  # a quorum's group (strategies.membership)
            return self._quorum_groups.get(group.epoch, ((), None))[1]
        return None if group.ranks == tuple(range(self.world_size)) else self._groups[group.ranks]

    def _failure(self, handle: Handle[Any], what: str, exc: BaseException) -> CommError:
        """A library error: a :class:`~strategies.PeerFailure` naming the killed peers when
        the run has a fault schedule and a peer of the operation was killed."""
        if self._faults is not None:
            op = handle.op
            links = self._links
            if links is not None and op is not None and op.peer in links.restartable:
                # A send over the world group to a restartable peer's first process: that
                # process was killed, whether or not a new one is back by now.
                failure = links.failure(what, exc, op.peer, 0, None)
                if failure is not None:
                    return failure
            ranks = op.group if op is not None and op.group is not None else range(self.world_size)
            failure = self._faults.peer_failure(what, exc, ranks)
            if failure is None:  # a testbed's link down, not a death
                failure = self._faults.cut_failure(what, exc, ranks)
            if failure is not None:
                if op is not None and op.group is not None:
                    self._drop_quorum_groups(tuple(op.group))
                return failure
        return CommError(f"{what} failed: {exc}")

    def _failed(self, posted: Posted, exc: Exception) -> None:
        """A receive the library failed: a :class:`~strategies.PeerFailure` naming the
        killed sender (or, from any rank, the killed ranks) when the run has a fault
        schedule, as a send or a collective says it (a parameter server's workers)."""
        if self._faults is not None:
            ranks = range(self.world_size) if posted.src is None else (posted.src,)
            what = f"rank {self.rank}: {posted.handle.describe()}"
            failure = self._faults.peer_failure(what, exc, ranks)
            if failure is None:  # a testbed's link down, not a death
                failure = self._faults.cut_failure(what, exc, ranks)
            if failure is not None:
                posted.handle.fail(failure, at=self._clock())
                return
        super()._failed(posted, exc)

    def _link_of(self, sender: int) -> tuple[Any, int]:
        if self._links is None:
            return None, 0
        return self._links.link(sender)

    @property
    def _link_timeout(self) -> float:  # type: ignore[override]
        return self._links.timeout if self._links is not None else 0.0

    def _failed_from(
        self, posted: Posted, exc: Exception, sender: int, link: Any, theirs: int
    ) -> None:
        """A receive failed on ``sender``'s messages: with links, a
        :class:`~strategies.PeerFailure` when the incarnation of ``sender`` it was for was
        killed (it may be back as a new process by now: :mod:`real.transport.links`)."""
        if self._links is not None and (link is not None or sender in self._links.restartable):
            what = f"rank {self.rank}: {posted.handle.describe()}"
            failure = self._links.failure(what, exc, sender, theirs, link)
            if failure is not None:
                posted.handle.fail(failure, at=self._clock())
                return
        self._failed(posted, exc)

    def _drop_quorum_groups(self, ranks: tuple[int, ...]) -> None:
        with self._groups_lock:
            for epoch, (members, pg) in list(self._quorum_groups.items()):
                if members == ranks:
                    del self._quorum_groups[epoch]
                    self._retired.append((epoch, pg))

    def _reap(self) -> None:
        """Destroy the retired quorum groups this rank has no operation in flight on (on the
        rank's own thread: see ``_retired``). Destroying one closes its connections, so a
        member still blocked on this rank there fails at once, not at the group's timeout."""
        if not self._retired:
            return
        with self._groups_lock:
            busy = {epoch for epoch, _ in self._in_flight.values()}
            idle = [(e, pg) for e, pg in self._retired if e not in busy]
            self._retired = [(e, pg) for e, pg in self._retired if e in busy]
        idle.clear()  # the last references: destroyed here, outside the lock

    def _finished(self, handle: Handle[Any]) -> None:
        with self._groups_lock:
            self._in_flight.pop(handle, None)

    def settle(self, before: int, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds each) for this rank's operations on quorum groups
        that it started before its step ``before``: a rank that crashes at step ``before``
        has finished those in ``sim`` (an all-reduce overlapping a step, as Streaming
        DiLoCo's, has had a step's compute to land), and its peers' must not fail for it."""
        with self._groups_lock:
            pending = [h for h, (_, step) in self._in_flight.items() if step < before]
        for handle in pending:
            if self.holds(handle):
                self.finish_inline(handle, timeout)
            elif not handle.done:
                landed = threading.Event()
                handle.add_callback(functools.partial(_set, landed))
                landed.wait(timeout)

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
        if group.epoch > 0:
            return self._quorum_collective(handle, kind, tensor, group, op, root, started)
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

    def _quorum_collective(
        self,
        handle: Handle[Any],
        kind: str,
        tensor: torch.Tensor,
        group: Group,
        op: str | None,
        root: int | None,
        started: float,
    ) -> Handle[Any]:
        """A collective on a quorum's own process group (:mod:`real.membership`): its own
        methods, the members' indices as its ranks, for every collective of the
        communicator. A group that could not be built (a member died before it met) fails
        the operation as the member's death does."""
        self._reap()
        pg = self._pg(group)
        if pg is None:
            dead = self._unbuilt.get(group.epoch, ())
            crashed = ", ".join(f"rank {r} crashed" for r in dead)
            handle.fail(
                PeerFailure(
                    f"{handle.describe()}: {crashed or 'a member did not meet'} (the quorum's "
                    "process group could not be built)",
                    dead,
                ),
                at=self._clock(),
            )
            return handle
        work, finish = _on_group(pg, kind, tensor, group, op, root, self.rank)
        if kind != "barrier":  # (as on other groups: a barrier charges nothing)
            self._charge(kind, tensor, group, self.rank, root)
        step = self._faults.step if self._faults is not None else 0
        with self._groups_lock:
            self._in_flight[handle] = (group.epoch, step)
        handle.add_callback(self._finished)
        self._complete_later(work, handle, finish, started)
        return handle

    # -- quorums ----------------------------------------------------------------------------
    def quorum(
        self,
        rank: int,
        ranks: tuple[int, ...],
        min_size: int,
        timeout: float | None,
        step: int,
        what: Operation,
    ) -> Handle[Any]:
        """The next quorum of the live ranks of ``ranks`` (:mod:`real.membership`: every set
        of ranks has its own quorums, as in ``sim``): announced now (a rank
        that is killed right after is in it, as in ``sim``), decided on a thread, with a
        gloo process group of its members, whose timeout is the schedule's ``detect``."""
        faults = self._faults
        if faults is None and self._quorums is not None:  # a run without faults: made now
            faults = self._faults = self._quorums()
        if faults is None:
            raise CommError(
                "w.quorum needs the run's membership (the run's store): this transport was "
                "made without one; run it with real.run, or with sim"
            )
        self._reap()
        handle: Handle[Any] = Handle("comm", op=what)
        started = self._clock()
        membership = faults.membership
        # A restarted process asks its first quorum when sim's would (faults.wait_to_rejoin):
        # it waits for that, then announces.
        rejoin = faults.rejoin_when() if not self._asked else None
        self._asked = True
        q = membership.announce(min_size, step, ranks) if rejoin is None else 0
        expect = faults.expected(step, ranks)
        limit = faults.timeout if timeout is None else timeout

        def decide() -> None:
            nonlocal q
            try:
                if rejoin is not None:
                    faults.wait_to_rejoin(rejoin)
                    q = membership.announce(min_size, step, ranks)
                formed = membership.wait(
                    q,
                    min_size,
                    limit,
                    faults.detect,
                    expect,
                    None,  # (live() leaves the dead out, but for one back before detected)
                    step,
                    live=lambda: faults.live(step, ranks, lambda: faults.waiting is handle),
                    ranks=ranks,
                    partition=faults if faults.partitions is not None else None,
                )
                if faults.partitions is not None:
                    faults.mark(formed)
                steps = membership.steps(formed)
                try:
                    pg = self._build(membership, formed, faults)
                except RuntimeError:  # a member died before the group met: its ops fail
                    pg = None
                    # Named now: a killed member may be back by the time the group is used.
                    dead = faults.down(formed.members) or tuple(
                        r for r in membership.silent(faults.detect) if r in formed.members
                    )
                    if not dead and faults.partitions is not None:  # a link down since
                        dead = faults.partitions.separated(rank, formed.members)[0]
                    self._unbuilt = {formed.id: dead}
                # Older quorums' groups are let go (destroyed by the rank's thread, _reap).
                with self._groups_lock:
                    self._retired += [(e, old) for e, (_, old) in self._quorum_groups.items()]
                    self._quorum_groups = {formed.id: (formed.members, pg)}
                joined = () if formed.id == 1 else formed.joined
                value = Quorum(
                    formed.id,
                    formed.members,
                    joined,
                    steps,
                    Group(formed.members, formed.id),
                    formed.reconnected,
                )
            except PartitionStuck as exc:  # no quorum can ever form: the run's end, as sim's
                faults.stuck_run(str(exc))
                handle.fail(CommError(f"rank {rank}: {exc}"), at=self._clock())
                return
            except Exception as exc:
                handle.fail(CommError(f"rank {rank}: quorum failed: {exc}"), at=self._clock())
                return
            handle.resolve(value, at=self._clock(), started_at=started)

        self._thread(decide)
        return handle

    def _build(self, membership: Any, formed: Any, faults: Any) -> Any:
        """``formed``'s process group. On a testbed with a link down (:mod:`real.partitions`)
        a member cut off while the group connects makes gloo give up only after its own
        connect timeout (5 s measured, whatever the group's): the build is then left to
        finish on its thread once the ranks know of the cut (``detect``), as ``sim`` fails
        the round then, and a group built late is let go (:meth:`_reap`)."""
        timeout = max(faults.detect, 1.0)
        if faults.partitions is None:
            return membership.group(formed, timeout=timeout)
        built: list[Any] = []
        failed: list[BaseException] = []
        done, left = threading.Event(), threading.Event()

        def build() -> None:
            try:
                pg = membership.group(formed, timeout=timeout)
            except RuntimeError as exc:
                failed.append(exc)
            else:
                with self._groups_lock:
                    if left.is_set():  # too late: destroyed by the rank's thread
                        self._retired.append((formed.id, pg))
                    else:
                        built.append(pg)
            done.set()

        threading.Thread(target=build, name="quorum-group", daemon=True).start()
        while not done.wait(0.02):
            if faults.cut_known(self.rank, formed.members):
                with self._groups_lock:
                    left.set()
                    if not built:
                        raise RuntimeError("a member was cut off while the group connected")
                break
        if failed:
            raise RuntimeError(str(failed[0]))
        return built[0]

    # -- point to point: sending ----------------------------------------------------------

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
        if self._links is not None:
            try:
                link, theirs = self._links.link(dst)
            except PeerFailure as down:
                handle.fail(down, at=self._clock())
                return handle
            if link is not None:
                return self._send_on(link, theirs, rank, tensors, header, dst, handle, started)
        tag = self._tags.next(dst)
        frame = self._to_device(encode(header, tensors, tag))
        payload = [self._to_device(t) for t in tensors]
        try:
            works = [dist.isend(frame, dst=dst, tag=ENVELOPE_TAG)]
            works += [dist.isend(t, dst=dst, tag=tag) for t in payload]
        except RuntimeError as exc:
            # gloo raises at the call, not at the wait, once it has seen the pair's connection
            # reset: a peer the schedule killed fails the send as the wait would have.
            said = f"rank {rank}: {handle.describe()}"
            failure = None if self._faults is None else self._faults.peer_failure(said, exc, (dst,))
            if self._links is not None and dst in self._links.restartable:
                failure = self._links.failure(said, exc, dst, 0, None)  # (maybe back already)
            if failure is None:
                raise
            handle.fail(failure, at=self._clock())
            return handle
        self._charged(message_nbytes(tensors) + header_nbytes(header))
        keep = [frame, *payload]  # staged copies outlive the transfer
        self._on_waiter(works, handle, keep.clear, started, f"rank {rank}: {handle.describe()}")
        return handle

    def _send_on(
        self,
        link: Any,
        theirs: int,
        rank: int,
        tensors: list[torch.Tensor],
        header: dict[str, Any],
        dst: int,
        handle: Handle[None],
        started: float,
    ) -> Handle[None]:
        """A send over ``link``, the pair's group with incarnation ``theirs`` of ``dst``
        (:mod:`real.transport.links`): issued by the link's own thread, which may first wait
        for ``dst`` to build the group, and finished by a waiter thread."""
        assert self._links is not None
        links = self._links
        tag = self._tags.next(dst)
        frame = encode(header, tensors, tag)
        payload = [t.detach().cpu() for t in tensors]  # (a pair's group is gloo's)
        said = f"rank {rank}: {handle.describe()}"
        self._charged(message_nbytes(tensors) + header_nbytes(header))

        def fail(exc: BaseException) -> None:
            failure = links.failure(said, exc, dst, theirs, link)
            error = failure or CommError(f"{said} failed: {exc}")
            handle.fail(error, at=self._clock())

        def issue() -> None:
            try:
                works = link.send(
                    [frame, *payload], [ENVELOPE_TAG] + [tag] * len(payload), links.timeout
                )
            except Exception as exc:
                fail(exc)
                return

            def wait() -> None:
                try:
                    self._settle(works)
                except Exception as exc:
                    fail(exc)
                    return
                handle.resolve(None, at=self._clock(), started_at=started)

            self._thread(wait)

        link.issue(issue)
        return handle


def _set(event: threading.Event, _: Handle[Any]) -> None:
    event.set()


def _on_group(
    pg: Any,
    kind: str,
    tensor: torch.Tensor,
    group: Group,
    op: str | None,
    root: int | None,
    rank: int,
) -> tuple[Any, Callable[[], Any]]:
    """Start collective ``kind`` with the process group's own methods (a quorum's group:
    ``torch.distributed``'s calls that translate global ranks refuse a group they did not
    register), the members' indices as its ranks; the work and what its handle resolves
    to. The same library calls as :meth:`TorchTransport.collective` makes on other groups,
    so the same sums in the same order and the same bytes."""
    n = group.size
    reduce_op = _OPS[op or "sum"]
    if kind == "all_reduce":
        opts = dist.AllreduceOptions()
        opts.reduceOp = reduce_op  # type: ignore[assignment]
        work = pg.allreduce([tensor], opts)
        return work, lambda: tensor.div_(n) if op == "mean" else tensor
    if kind == "broadcast":
        bopts = dist.BroadcastOptions()
        bopts.rootRank = group.index(root if root is not None else group.ranks[0])
        bopts.rootTensor = 0
        return pg.broadcast([tensor], bopts), lambda: tensor
    if kind == "reduce":
        assert root is not None  # checked by the communicator
        # gloo leaves partial sums in the other members' buffers; the contract leaves them
        # unchanged, so those reduce from a copy (as on other groups).
        mine = rank == root
        source = tensor if mine else tensor.clone()
        ropts = dist.ReduceOptions()
        ropts.reduceOp = reduce_op  # type: ignore[assignment]
        ropts.rootRank = group.index(root)
        ropts.rootTensor = 0
        work = pg.reduce([source], ropts)
        if not mine:
            return work, lambda: tensor
        return work, lambda: tensor.div_(n) if op == "mean" else tensor
    if kind == "all_gather":
        outs = [torch.empty_like(tensor) for _ in range(n)]
        return pg.allgather([outs], [tensor], c10d.AllgatherOptions()), lambda: outs
    if kind == "reduce_scatter":
        # An all-reduce, then this member's chunk, as on other groups (uneven chunks).
        full = tensor.clone()
        opts = dist.AllreduceOptions()
        opts.reduceOp = reduce_op  # type: ignore[assignment]
        index = group.index(rank)

        def chunk() -> torch.Tensor:
            if op == "mean":
                full.div_(n)
            return torch.tensor_split(full, n)[index].clone()

        return pg.allreduce([full], opts), chunk
    if kind == "barrier":
        return pg.barrier(dist.BarrierOptions()), lambda: None
    raise CommError(f"{kind} is not a collective of the communicator")
