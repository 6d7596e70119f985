"""The one checking layer: every communicator call is checked here, at the call, with the
same one-line :class:`CommError` in both backends (a bad rank, group, tensor, or a handle
passed where its value belongs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from strategies.handles import Handle

__all__ = [
    "CommError",
    "CommTimeout",
    "Group",
    "PeerFailure",
    "Ranks",
    "as_message",
    "check_rank",
    "check_tensor",
    "make_group",
    "not_a_handle",
]


class CommError(RuntimeError):
    """A strategy used the communicator inconsistently, or an operation failed."""


class CommTimeout(CommError):
    """An operation did not finish within the time a strategy allowed it (``w.timeout``)."""


class PeerFailure(CommError):
    """An operation failed because ranks it involves crashed (or the links to them went down
    for good): raised at the ``yield`` of every rank the operation involves, once the failure
    is detected (the run's ``detect`` delay, a heartbeat timeout). ``ranks`` names them.

    Examples
    --------
    >>> error = PeerFailure("all_reduce on group (0, 1, 2): rank 2 crashed at t=4s", (2,))
    >>> error.ranks, isinstance(error, CommError)
    ((2,), True)
    """

    def __init__(self, message: str, ranks: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.ranks = tuple(ranks)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with its ranks (the real backend)
        return (type(self), (str(self), self.ranks))


class Ranks(tuple[int, ...]):
    """A group's ranks: a tuple that computes its hash once.

    Every rank's every collective names its group (``Operation.group``, the trace's span
    names, the simulator's rendezvous keys), and a plain tuple of a hundred thousand ranks
    is hashed anew each time. Equal to, and hashed as, the plain tuple.

    Examples
    --------
    >>> r = Ranks((0, 2, 3))
    >>> r == (0, 2, 3), hash(r) == hash((0, 2, 3)), r
    (True, True, (0, 2, 3))
    """

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = tuple.__hash__(self)
        return cached

    def __reduce__(self) -> tuple[type[Ranks], tuple[tuple[int, ...]]]:
        return (Ranks, (tuple(self),))  # pickled without its cached hash


@dataclass(frozen=True)
class Group:
    """An ordered set of ranks that take part in a collective together.

    A group of a large world is used by every rank at every call, so what costs O(ranks)
    (its hash, its rank-to-index table) is computed once per group, not per call: the
    group is its own :attr:`key`, with a cached hash, and ``rank in group`` and
    :meth:`index` look the rank up in a table built at their first use.

    Examples
    --------
    >>> g = Group((0, 2, 3))
    >>> g.size, g.index(2), 2 in g, 1 in g
    (3, 1, True, False)
    >>> g.key == Group((0, 2, 3)).key != Group((0, 2, 3), epoch=1).key
    True
    """

    ranks: tuple[int, ...]
    #: 0 for the world and groups from ``new_group``; a quorum's id for a quorum's group
    #: (``w.quorum``): the same ranks in another quorum are another group, as torchft
    #: rebuilds its process groups for each quorum.
    epoch: int = 0

    def __post_init__(self) -> None:
        if type(self.ranks) is not Ranks:  # hashed once, wherever the ranks go
            object.__setattr__(self, "ranks", Ranks(self.ranks))

    @property
    def key(self) -> Group:
        """What identifies the group: its ranks and its epoch (the group itself, equal to a
        group of the same ranks and epoch, and hashed in O(1) once its hash is known)."""
        return self

    @cached_property
    def _hash(self) -> int:
        return hash((self.ranks, self.epoch))  # the value a dataclass's own hash gives

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {r: i for i, r in enumerate(self.ranks)}

    def __contains__(self, rank: object) -> bool:
        return rank in self._positions

    @property
    def size(self) -> int:
        return len(self.ranks)

    def index(self, rank: int) -> int:
        position = self._positions.get(rank)
        return self.ranks.index(rank) if position is None else position  # its ValueError


def check_rank(rank: object, world_size: int, name: str) -> int:
    """Return ``rank`` if it is a rank of the world, else raise a one-line :class:`CommError`.

    Examples
    --------
    >>> check_rank(5, 4, "dst")
    Traceback (most recent call last):
    ...
    strategies.checks.CommError: dst=5 is not a rank of this world (0..3)
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
    strategies.checks.CommError: group ranks (1, 1) repeat a rank; list each rank once
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
    strategies.checks.CommError: send got a non-contiguous tensor; pass tensor.contiguous() (gloo and NCCL need contiguous buffers)
    """
    not_a_handle(tensors, call)
    message = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    for t in message:
        not_a_handle(t, call)
    if not message or not all(isinstance(t, torch.Tensor) for t in message):
        raise CommError(f"{call} takes a tensor or a non-empty list of tensors")
    for t in message:
        check_tensor(t, call)
    return message


def check_tensor(tensor: Any, call: str) -> torch.Tensor:
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
