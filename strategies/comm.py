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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch

from strategies.aggregate import REDUCE_OPS
from strategies.handles import Handle, all_of, any_of

__all__ = [
    "ALGORITHMS",
    "CommError",
    "CommTimeout",
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
]

#: Collective algorithms the simulator knows (``"auto"`` picks as NCCL does).
ALGORITHMS = ("auto", "ring", "tree", "halving_doubling", "direct", "hierarchical")
#: Header limits: small enough that the real backend ships it in one fixed-size frame.
HEADER_FIELDS, HEADER_NAME_CHARS = 16, 32
HEADER_FIELD_BYTES = 8

Header = dict[str, float]


class CommError(RuntimeError):
    """A strategy used the communicator inconsistently, or an operation failed."""


class CommTimeout(CommError):
    """An operation did not finish within the time a strategy allowed it (``w.timeout``)."""


class Received(NamedTuple):
    """A received message: the sender, the filled buffers and the header."""

    src: int
    tensors: list[torch.Tensor]
    header: dict[str, Any]


@dataclass(frozen=True)
class Group:
    """An ordered set of ranks that take part in a collective together.

    Examples
    --------
    >>> g = Group((0, 2, 3))
    >>> g.size, g.index(2)
    (3, 1)
    """

    ranks: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.ranks)

    def index(self, rank: int) -> int:
        return self.ranks.index(rank)


def check_rank(rank: object, world_size: int, name: str) -> int:
    """Return ``rank`` if it is a rank of the world, else raise a one-line :class:`CommError`.

    Examples
    --------
    >>> check_rank(5, 4, "dst")
    Traceback (most recent call last):
    ...
    strategies.comm.CommError: dst=5 is not a rank of this world (0..3)
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise CommError(f"{name}={rank!r} is not a rank of this world (0..{world_size - 1})")
    return rank


def make_group(ranks: Sequence[int], world_size: int) -> Group:
    """A validated group, its ranks sorted as ``torch.distributed.new_group`` orders them.

    Examples
    --------
    >>> make_group([3, 0, 2], 4).ranks
    (0, 2, 3)
    >>> make_group([1, 1], 4)
    Traceback (most recent call last):
    ...
    strategies.comm.CommError: group ranks (1, 1) repeat a rank; list each rank once
    """
    ranks = tuple(check_rank(r, world_size, "group rank") for r in ranks)
    if len(set(ranks)) != len(ranks):
        raise CommError(f"group ranks {ranks} repeat a rank; list each rank once")
    if not ranks:
        raise CommError("a group needs at least one rank")
    return Group(tuple(sorted(ranks)))


def not_a_handle(value: Any, call: str) -> None:
    """Raise the one-line error for a handle passed where its value belongs (a forgotten
    ``yield``).

    Examples
    --------
    >>> from strategies.handles import done
    >>> not_a_handle(done(1), "w.apply(grads)")
    Traceback (most recent call last):
    ...
    TypeError: w.apply(grads) got a handle, not a tensor: write `value = yield handle` to wait for a communicator call's result (a yield is missing)
    """
    if isinstance(value, Handle):
        raise TypeError(
            f"{call} got a handle, not a tensor: write `value = yield handle` to wait for a "
            "communicator call's result (a yield is missing)"
        )


def as_message(
    tensors: torch.Tensor | Sequence[torch.Tensor], call: str = "send"
) -> list[torch.Tensor]:
    """Normalise a payload (one tensor or several) to a list of contiguous tensors.

    Examples
    --------
    >>> len(as_message(torch.zeros(2))), len(as_message([torch.zeros(2), torch.zeros(1)]))
    (1, 2)
    >>> as_message(torch.zeros(2, 3).t())
    Traceback (most recent call last):
    ...
    strategies.comm.CommError: send got a non-contiguous tensor; pass tensor.contiguous() (gloo and NCCL need contiguous buffers)
    """
    not_a_handle(tensors, call)
    message = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    for t in message:
        not_a_handle(t, call)
    if not message or not all(isinstance(t, torch.Tensor) for t in message):
        raise CommError(f"{call} takes a tensor or a non-empty list of tensors")
    for t in message:
        _check_tensor(t, call)
    return message


def _check_tensor(tensor: Any, call: str) -> torch.Tensor:
    if type(tensor) is torch.Tensor and tensor.is_contiguous():  # the usual case, quickly
        return tensor
    not_a_handle(tensor, call)
    if not isinstance(tensor, torch.Tensor):
        raise CommError(f"{call} takes a torch.Tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise CommError(f"{call} got a {tensor.layout} tensor; pass a dense tensor")
    if not tensor.is_contiguous():
        raise CommError(
            f"{call} got a non-contiguous tensor; pass tensor.contiguous() (gloo and NCCL "
            "need contiguous buffers)"
        )
    return tensor


def message_nbytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes a payload occupies on the wire: the tensors' real sizes.

    Examples
    --------
    >>> message_nbytes([torch.zeros(10), torch.zeros(1, dtype=torch.int64)])
    48
    """
    return sum(t.numel() * t.element_size() for t in tensors)


def check_header(header: Mapping[str, Any] | None) -> dict[str, Any]:
    """A message header: a few named finite numbers (ints stay ints).

    Examples
    --------
    >>> check_header({"version": 3})
    {'version': 3}
    >>> check_header({"version": torch.tensor(3)})
    Traceback (most recent call last):
    ...
    strategies.comm.CommError: header['version'] is a Tensor; header values are plain numbers (int or float); send tensors as the payload
    """
    if header is None:
        return {}
    if not isinstance(header, Mapping):
        raise CommError(f"header must be a dict of names to numbers, got {type(header).__name__}")
    if len(header) > HEADER_FIELDS:
        raise CommError(
            f"header has {len(header)} fields; at most {HEADER_FIELDS} fit (send bulk data as "
            "the payload)"
        )
    checked: dict[str, Any] = {}
    for name, value in header.items():
        if not isinstance(name, str) or not 0 < len(name) <= HEADER_NAME_CHARS:
            raise CommError(
                f"header field {name!r} must be a name of 1..{HEADER_NAME_CHARS} characters"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CommError(
                f"header[{name!r}] is a {type(value).__name__}; header values are plain numbers "
                "(int or float); send tensors as the payload"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise CommError(f"header[{name!r}]={value} must be finite")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise CommError(f"header[{name!r}]={value} does not fit in 64 bits")
        checked[name] = value
    return checked


def header_nbytes(header: Mapping[str, Any]) -> int:
    """Bytes a header is charged: 8 per field (an int64 or float64 each).

    Examples
    --------
    >>> header_nbytes({"version": 3, "count": 1})
    16
    """
    return HEADER_FIELD_BYTES * len(header)


Signature = list[tuple[tuple[int, ...], str]]


def signature(tensors: Sequence[torch.Tensor]) -> Signature:
    """Shapes and dtypes of a payload, as compared against a receiver's buffers."""
    return [(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in tensors]


def check_received(rank: int, src: int, sent: Signature, buffers: Sequence[torch.Tensor]) -> None:
    """Raise the one-line error both backends give when a message does not fit the buffers.

    Examples
    --------
    >>> check_received(1, 0, [((3,), "float32")], [torch.zeros(2)])
    Traceback (most recent call last):
    ...
    strategies.comm.CommError: rank 1 received a message of [(3,) float32] from rank 0 into buffers of [(2,) float32]; make the buffers match the payload
    """
    expected = signature(buffers)
    if [(tuple(s), d) for s, d in sent] != expected:

        def show(sig: Signature) -> str:
            return ", ".join(f"{tuple(s)} {d}" for s, d in sig)

        raise CommError(
            f"rank {rank} received a message of [{show(sent)}] from rank {src} into buffers of "
            f"[{show(expected)}]; make the buffers match the payload"
        )


class Transport(Protocol):
    """What a backend implements under :class:`Communicator`. Arguments arrive checked."""

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
        what: str,
    ) -> Handle[Any]:
        """Start a collective (``all_reduce``, ``broadcast``, ``reduce``, ``all_gather``,
        ``reduce_scatter``, ``barrier``); ``op`` and ``root`` are ``None`` where unused."""
        ...

    def send(
        self, rank: int, tensors: list[torch.Tensor], header: dict[str, Any], dst: int, what: str
    ) -> Handle[None]:
        """Start sending a message; it completes once received (rendezvous)."""
        ...

    def recv(
        self, rank: int, buffers: list[torch.Tensor], src: int | None, what: str
    ) -> Handle[Received]:
        """Post a receive into ``buffers`` from ``src`` (``None``: any rank)."""
        ...


class Communicator:
    """One rank's communicator: checks every call, then hands it to the backend's transport.

    ``group=None`` means every rank of the world.
    """

    def __init__(self, rank: int, world_size: int, transport: Transport) -> None:
        self.rank = rank
        self.world_size = world_size
        self.world = Group(tuple(range(world_size)))
        self._transport = transport
        self._groups: set[tuple[int, ...]] = {self.world.ranks}

    # -- groups ---------------------------------------------------------------------------
    def new_group(self, ranks: Sequence[int]) -> Group:
        """A group over ``ranks`` (sorted, as in torch). Every rank of the world must create
        the same groups in the same order, members or not, as ``torch.distributed`` requires."""
        group = make_group(ranks, self.world_size)
        self._transport.new_group(self.rank, group)
        self._groups.add(group.ranks)
        return group

    def _group(self, group: Group | None, call: str) -> Group:
        if group is None:
            return self.world
        if not isinstance(group, Group):
            raise CommError(f"{call}: group must come from comm.new_group, got {group!r}")
        if group.ranks not in self._groups:
            raise CommError(
                f"{call}: group {group.ranks} was not made by comm.new_group on rank "
                f"{self.rank}; create every group with new_group on every rank"
            )
        if self.rank not in group.ranks:
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
        if isinstance(root, bool) or not isinstance(root, int) or root not in group.ranks:
            raise CommError(f"{call}: {name}={root!r} is not a rank of the group {group.ranks}")
        return root

    @staticmethod
    def _algorithm(algorithm: Any, call: str) -> str:
        if algorithm not in ALGORITHMS:
            raise CommError(
                f"{call}: algorithm={algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}"
            )
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
        tensor = _check_tensor(tensor, kind)
        g = self._group(group, kind)
        checked_op = self._op(op, kind) if op is not None else None
        if checked_op == "mean" and not (tensor.is_floating_point() or tensor.is_complex()):
            raise CommError(
                f"{kind}: op='mean' needs a floating-point tensor, got {tensor.dtype}; reduce "
                "with op='sum' and divide, or convert the tensor"
            )
        checked_root = self._root(root[1], g, root[0], kind) if root is not None else None
        algo = self._algorithm(algorithm, kind)
        what = kind  # the common case costs no formatting
        if group is not None:
            what = f"{kind} on group {g.ranks}"
        if root is not None:
            what = f"{what} ({root[0]}={checked_root})"
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
        what = f"send to rank {dst} ({message_nbytes(message)} B)"
        return self._transport.send(self.rank, message, check_header(header), dst, what)

    def recv(
        self, buffers: torch.Tensor | Sequence[torch.Tensor], src: int | None = None
    ) -> Handle[Received]:
        """Receive a message into ``buffers``; the value is ``Received(src, buffers, header)``."""
        message = as_message(buffers, "recv")
        if src is not None:
            src = check_rank(src, self.world_size, "src")
            if src == self.rank:
                raise CommError(f"rank {self.rank} receives from itself; keep local data local")
        what = "recv from any rank" if src is None else f"recv from rank {src}"
        return self._transport.recv(self.rank, message, src, what)

    # -- waiting on several -----------------------------------------------------------------
    def wait_all(self, handles: Sequence[Handle[Any]]) -> Handle[list[Any]]:
        """One handle for several; its value is the list of their values."""
        return all_of(_handles(handles, "wait_all"))

    def wait_any(self, handles: Sequence[Handle[Any]]) -> Handle[tuple[int, Any]]:
        """The first of several to finish: ``(index, value)``; the others go on."""
        return any_of(_handles(handles, "wait_any"))


def _handles(handles: Sequence[Any], call: str) -> list[Handle[Any]]:
    handles = list(handles)
    for h in handles:
        if not isinstance(h, Handle):
            raise CommError(f"{call} takes handles from communicator calls, got {h!r}")
    return handles
