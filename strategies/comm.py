"""The communicator contract that both backends implement (torch.distributed semantics).

Every call starts an operation and returns a handle; a role program writes
``value = yield handle`` to wait for it. Collective calls must be made by every rank of the
group, in the same order (as in ``torch.distributed``). ``all_reduce``, ``broadcast``, ``reduce``
and ``recv`` fill the tensors passed in place and also return them as the handle's value;
``all_gather`` and ``reduce_scatter`` return new tensors. As in torch, a tensor handed to a
call must not be modified until its handle has been waited on.

Collectives take an ``algorithm`` hint (``"ring"``, ``"tree"`` ...): the simulator decomposes
the collective into that algorithm's point-to-point steps; the real backend leaves the choice
to gloo/NCCL and ignores it.

``send`` and ``recv`` move *messages*: a list of tensors sent together (for example a
gradient and its 1-element version counter). ``recv`` takes buffers of the right shapes, as
``torch.distributed.recv`` does, and ``src=None`` receives from any rank, returning the sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = [
    "CommError",
    "Communicator",
    "Group",
    "as_message",
    "check_rank",
    "make_group",
    "message_nbytes",
]


class CommError(RuntimeError):
    """A strategy used the communicator inconsistently (mismatched collectives, bad buffers)."""


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


def as_message(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalise a payload (one tensor or several) to a list of tensors.

    Examples
    --------
    >>> len(as_message(torch.zeros(2))), len(as_message([torch.zeros(2), torch.zeros(1)]))
    (1, 2)
    """
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    message = list(tensors)
    if not message or not all(isinstance(t, torch.Tensor) for t in message):
        raise TypeError("a message is a tensor or a non-empty list of tensors")
    return message


def message_nbytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes a message occupies on the wire: the tensors' real sizes.

    Examples
    --------
    >>> message_nbytes([torch.zeros(10), torch.zeros(1, dtype=torch.int64)])
    48
    """
    return sum(t.numel() * t.element_size() for t in tensors)


class Communicator(Protocol):
    """What a role program may ask of the network. ``group=None`` means all ranks."""

    rank: int
    world_size: int

    def new_group(self, ranks: Sequence[int]) -> Group:
        """A group over ``ranks`` (sorted, as in torch). Every rank of the world must create
        the same groups in the same order, members or not, as ``torch.distributed`` requires."""
        ...

    def all_reduce(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Any:
        """Reduce ``tensor`` over the group, result in place on every rank."""
        ...

    def broadcast(
        self, tensor: torch.Tensor, src: int, group: Group | None = None, algorithm: str = "auto"
    ) -> Any:
        """Copy ``src``'s tensor into every rank's ``tensor``."""
        ...

    def reduce(
        self,
        tensor: torch.Tensor,
        dst: int,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Any:
        """Reduce to ``dst`` (in place there; other ranks' tensors are left unchanged)."""
        ...

    def all_gather(
        self, tensor: torch.Tensor, group: Group | None = None, algorithm: str = "auto"
    ) -> Any:
        """Every rank receives the list of all ranks' tensors, in group order."""
        ...

    def reduce_scatter(
        self,
        tensor: torch.Tensor,
        op: str = "sum",
        group: Group | None = None,
        algorithm: str = "auto",
    ) -> Any:
        """Reduce the full buffer; rank i of the group receives chunk i (``tensor_split``)."""
        ...

    def send(self, tensors: torch.Tensor | Sequence[torch.Tensor], dst: int) -> Any:
        """Send a message; the handle completes when it has been delivered."""
        ...

    def recv(self, buffers: torch.Tensor | Sequence[torch.Tensor], src: int | None = None) -> Any:
        """Receive a message into ``buffers``; the handle's value is ``(sender, buffers)``."""
        ...

    def barrier(self, group: Group | None = None) -> Any:
        """Wait until every rank of the group has arrived."""
        ...

    def wait_all(self, handles: Sequence[Any]) -> Any:
        """One handle for several; its value is the list of their values."""
        ...
