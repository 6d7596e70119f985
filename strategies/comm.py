"""The communicator both backends share: torch.distributed semantics, checked once.

A role program talks to the network only through :class:`Communicator`. Every call is
checked *here*, at the call, with the same :class:`CommError` in both backends (a bad rank,
group, reduction, root, algorithm, tensor, header); then it is handed to the backend's
:class:`Transport`, which starts the operation and returns a :class:`~strategies.handles.Handle`.
``value = yield handle`` waits for it.

Semantics are the strictest of the real libraries, so that whatever runs in ``sim`` runs on a
cluster:

* collectives must be made by every rank of the group, in the same order; every rank of the
  world creates every group with :meth:`Communicator.new_group`, in the same order;
* a ``send`` completes only once a matching ``recv`` is posted and the data has arrived
  (rendezvous, as gloo and NCCL do): ``yield send(...)`` before the peer posts its ``recv``
  waits for it;
* tensors handed to a call are contiguous and must not be modified until the handle is done.

``all_reduce``, ``broadcast`` and ``reduce`` fill the tensor in place and return it as the
handle's value; ``all_gather`` and ``reduce_scatter`` return new tensors. Collectives take an
``algorithm`` hint that the simulator decomposes into point-to-point steps and gloo/NCCL
ignore.

Point-to-point calls move *messages*: a payload of one or more tensors plus an optional
``header`` of a few named numbers (version tags, counts) that travels beside the payload and is
charged 8 bytes a field. ``recv`` takes buffers of the payload's shapes and returns a
:class:`Received` ``(src, tensors, header)``; ``src=None`` receives from any rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from strategies.aggregate import REDUCE_OPS
from strategies.checks import (
    CommError,
    CommTimeout,
    Group,
    PeerFailure,
    as_message,
    check_rank,
    check_tensor,
    make_group,
    not_a_handle,
)
from strategies.handles import Handle, all_of, any_of
from strategies.membership import Quorum
from strategies.messages import (
    Header,
    Received,
    check_envelope,
    check_header,
    check_received,
    header_nbytes,
    message_nbytes,
    signature,
)
from strategies.operations import Operation

__all__ = [
    "ALGORITHMS",
    "ALGORITHMS_FOR",
    "CommError",
    "CommTimeout",
    "PeerFailure",
    "Communicator",
    "Group",
    "Header",
    "Received",
    "Transport",
    "as_message",
    "check_header",
    "check_rank",
    "check_received",
    "header_nbytes",
    "make_group",
    "message_nbytes",
    "not_a_handle",
    "signature",
]

#: Collective algorithms the simulator knows (``"auto"`` follows the network's rule: see
#: ``sim.collectives.rules``).
#: How many of the last ranks objects given to ``new_group`` a shared table remembers (see
#: :meth:`Communicator._made_from`): a few, so that per-rank lists are not kept alive.
MADE = 16

ALGORITHMS = (
    "auto",
    "ring",
    "tree",
    "halving_doubling",
    "direct",
    "hierarchical",
    "ring_all_reduce",
    "ring_to_root",
)
#: Which algorithms implement each collective (``sim.collectives`` builds exactly these; a
#: test keeps the two in step). ``"auto"`` is valid for all.
ALGORITHMS_FOR: dict[str, tuple[str, ...]] = {
    "all_reduce": ("ring", "tree", "halving_doubling", "direct", "hierarchical"),
    "reduce_scatter": ("ring", "direct", "halving_doubling", "ring_all_reduce"),
    "all_gather": ("ring", "direct", "halving_doubling"),
    "broadcast": ("ring", "tree", "direct"),
    "reduce": ("ring", "tree", "direct", "ring_to_root"),
    "barrier": (),
}


class Transport(Protocol):
    """What a backend implements under :class:`Communicator`. Arguments arrive checked;
    ``what`` is the call as fields, for the handle the backend returns
    (``Handle("comm", op=what)``)."""

    def new_group(self, rank: int, group: Group) -> None:
        """Record ``rank``'s creation of ``group`` (every rank creates every group)."""
        ...

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
        """Start a collective (``all_reduce``, ``broadcast``, ``reduce``, ``all_gather``,
        ``reduce_scatter``, ``barrier``); ``op`` and ``root`` are ``None`` where unused."""
        ...

    def send(
        self,
        rank: int,
        tensors: list[torch.Tensor],
        header: dict[str, Any],
        dst: int,
        what: Operation,
    ) -> Handle[None]:
        """Start sending a message; it completes once received (rendezvous)."""
        ...

    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: Operation
    ) -> Handle[Received]:
        """Post a receive into ``buffers`` from ``src`` (``None``: any rank)."""
        ...

    def quorum(
        self,
        rank: int,
        ranks: tuple[int, ...],
        min_size: int,
        timeout: float | None,
        step: int,
        what: Operation,
    ) -> Handle[Quorum]:
        """Ask for the next quorum of ``ranks`` (see :mod:`strategies.membership`);
        ``step`` is the asking rank's optimizer step."""
        ...


class Communicator:
    """One rank's communicator: checks every call, then hands it to the backend's transport.

    ``group=None`` means every rank of the world.

    A backend that runs many ranks in one process (the simulator) passes every rank's
    communicator the same ``world`` group and ``shared`` table of groups, so that the world
    and each group made by every rank exist once, not once per rank (O(n) memory for the
    run rather than O(n^2)).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        transport: Transport,
        *,
        world: Group | None = None,
        shared: dict[tuple[int, ...], Group] | None = None,
        made: dict[int, tuple[Sequence[int], int, Group]] | None = None,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.world = Group(tuple(range(world_size))) if world is None else world
        self._transport = transport
        self._shared = shared
        self._made = made
        self._groups: set[Group] = {self.world.key}

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, ranks: Sequence[int]) -> Group:
        """A group over ``ranks`` (sorted, as in torch). Every rank of the world must create
        the same groups in the same order, members or not, as ``torch.distributed`` requires."""
        group = self._made_from(ranks)
        if group is None:
            group = make_group(ranks, self.world_size)
            if self._shared is not None:  # the group every other rank made already, if any
                group = self._shared.setdefault(group.ranks, group)
            if self._made is not None:
                if len(self._made) >= MADE:
                    del self._made[next(iter(self._made))]
                self._made[id(ranks)] = (ranks, len(ranks), group)
        self._transport.new_group(self.rank, group)
        self._groups.add(group.key)
        return group

    def _made_from(self, ranks: Sequence[int]) -> Group | None:
        """The group another rank made from this very ``ranks`` object, if it is among the
        last :data:`MADE`: every rank passes the context's shared ``workers`` list, which is
        read-only (:class:`~strategies.context.RankContext`), so validating and sorting it
        once, not once per rank, keeps a world's set-up O(ranks) rather than O(ranks^2).
        The entry holds ``ranks`` itself, so its ``id`` is not reused while it is kept."""
        if self._made is None:
            return None
        made = self._made.get(id(ranks))
        if made is None or made[0] is not ranks or made[1] != len(ranks):
            return None
        return made[2]

    def _group(self, group: Group | None, call: str) -> Group:
        if group is None:
            return self.world
        if not isinstance(group, Group):
            raise CommError(f"{call}: group must come from comm.new_group, got {group!r}")
        if group.key not in self._groups:
            raise CommError(
                f"{call}: group {group.ranks} was not made by comm.new_group on rank "
                f"{self.rank}; create every group with new_group on every rank"
            )
        if self.rank not in group:
            raise CommError(
                f"rank {self.rank} called {call} on a group it is not in: {group.ranks}"
            )
        return group

    @staticmethod
    def _op(op: Any, call: str) -> str:
        if op not in REDUCE_OPS:
            raise CommError(
                f"{call}: op={op!r} is not a reduction; use one of {', '.join(REDUCE_OPS)}"
            )
        return str(op)

    @staticmethod
    def _root(root: Any, group: Group, name: str, call: str) -> int:
        if isinstance(root, bool) or not isinstance(root, int) or root not in group:
            raise CommError(f"{call}: {name}={root!r} is not a rank of the group {group.ranks}")
        return root

    @staticmethod
    def _algorithm(algorithm: Any, call: str) -> str:
        if algorithm not in ALGORITHMS:
            raise CommError(
                f"{call}: algorithm={algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}"
            )
        if algorithm != "auto" and algorithm not in ALGORITHMS_FOR[call]:
            known = ", ".join(("auto", *ALGORITHMS_FOR[call]))
            raise CommError(f"{call}: algorithm={algorithm!r} does not implement it; use {known}")
        return str(algorithm)

    def _collective(
        self,
        kind: str,
        tensor: Any,
        group: Group | None,
        op: Any = None,
        root: tuple[str, Any] | None = None,
        algorithm: Any = "auto",
    ) -> Handle[Any]:
        tensor = check_tensor(tensor, kind)
        g = self._group(group, kind)
        checked_op = self._op(op, kind) if op is not None else None
        if checked_op == "mean" and not (tensor.is_floating_point() or tensor.is_complex()):
            raise CommError(
                f"{kind}: op='mean' needs a floating-point tensor, got {tensor.dtype}; reduce "
                "with op='sum' and divide, or convert the tensor"
            )
        checked_root = self._root(root[1], g, root[0], kind) if root is not None else None
        algo = self._algorithm(algorithm, kind)
        # The world is not named (``group=None``): as the program wrote it.
        what = Operation(kind, None if group is None else g.ranks, None, checked_root)
        return self._transport.collective(
            self.rank, kind, tensor, g, checked_op, checked_root, algo, what
        )

    # -- collectives ----------------------------------------------------------------------
    def all_reduce(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Handle[torch.Tensor]:
        """Reduce ``tensor`` over the group, result in place on every rank."""
        return self._collective("all_reduce", tensor, group, op, None, algorithm)

    def broadcast(
        self, tensor: torch.Tensor, src: int, group: Group | None = None, algorithm: str = "auto"
    ) -> Handle[torch.Tensor]:
        """Copy ``src``'s tensor into every rank's ``tensor``."""
        return self._collective("broadcast", tensor, group, None, ("src", src), algorithm)

    def reduce(
        self,
        tensor: torch.Tensor,
        dst: int,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Handle[torch.Tensor]:
        """Reduce to ``dst`` (in place there; other ranks' tensors are left unchanged, in both
        backends)."""
        return self._collective("reduce", tensor, group, op, ("dst", dst), algorithm)

    def all_gather(
        self, tensor: torch.Tensor, group: Group | None = None, algorithm: str = "auto"
    ) -> Handle[list[torch.Tensor]]:
        """Every rank receives the list of all ranks' tensors, in group order."""
        return self._collective("all_gather", tensor, group, None, None, algorithm)

    def reduce_scatter(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Handle[torch.Tensor]:
        """Reduce the full buffer; rank i of the group receives chunk i (``tensor_split``).

        Chunks are uneven when the group size does not divide the length; pad the buffer
        first if the chunks are to be all-gathered again (all ranks must pass one shape)."""
        return self._collective("reduce_scatter", tensor, group, op, None, algorithm)

    def barrier(self, group: Group | None = None) -> Handle[None]:
        """Wait until every rank of the group has arrived."""
        return self._collective("barrier", torch.zeros(0), group)

    # -- point to point ---------------------------------------------------------------------
    def send(
        self,
        tensors: torch.Tensor | Sequence[torch.Tensor],
        dst: int,
        header: Mapping[str, Any] | None = None,
    ) -> Handle[None]:
        """Send a message; the handle completes once the receiver has posted a matching
        ``recv`` and the data has arrived."""
        message = as_message(tensors, "send")
        dst = check_rank(dst, self.world_size, "dst")
        if dst == self.rank:
            raise CommError(f"rank {self.rank} sent to itself; keep local data local")
        checked = check_header(header)
        check_envelope(checked, message)
        what = Operation("send", None, dst, None, message_nbytes(message))
        return self._transport.send(self.rank, message, checked, dst, what)

    def recv(
        self, buffers: torch.Tensor | Sequence[torch.Tensor], src: int | None = None
    ) -> Handle[Received]:
        """Receive a message into ``buffers``; the value is ``Received(src, buffers, header)``."""
        message = as_message(buffers, "recv")
        if src is not None:
            src = check_rank(src, self.world_size, "src")
            if src == self.rank:
                raise CommError(f"rank {self.rank} receives from itself; keep local data local")
        return self._transport.recv(self.rank, message, src, Operation("recv", None, src))

    # -- waiting on several -----------------------------------------------------------------
    def quorum(
        self, ranks: tuple[int, ...], min_size: int, timeout: float | None, step: int
    ) -> Handle[Quorum]:
        """The next :class:`~strategies.membership.Quorum` of ``ranks`` (checked by the
        context's ``quorum``): its group is usable by this communicator's collectives."""
        what = Operation("quorum", ranks, None, None)

        def usable(quorum: Quorum) -> Quorum:
            self._groups.add(quorum.group.key)
            return quorum

        return self._transport.quorum(self.rank, ranks, min_size, timeout, step, what).then(usable)

    def wait_all(self, handles: Sequence[Handle[Any]]) -> Handle[list[Any]]:
        """One handle for several; its value is the list of their values."""
        return all_of(_handles(handles, "wait_all"))

    def wait_any(self, handles: Sequence[Handle[Any]]) -> Handle[tuple[int, Any]]:
        """The first of several to finish: ``(index, value)``; the others go on."""
        handles = _handles(handles, "wait_any")
        if not handles:
            raise CommError("wait_any needs at least one handle; there is nothing to wait for")
        return any_of(handles)


def _handles(handles: Sequence[Any], call: str) -> list[Handle[Any]]:
    handles = list(handles)
    for h in handles:
        if not isinstance(h, Handle):
            raise CommError(f"{call} takes handles from communicator calls, got {h!r}")
    return handles
