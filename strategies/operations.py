"""What a communicator call is, as fields: the operation, its group, peer, root and bytes.

The communicator fills an :class:`Operation` for each call and the backend's handle carries
it (:attr:`strategies.handles.Handle.op`). Everything said about the call is built from these
fields, never parsed back from prose: the sentence an error message names
(``str(operation)``, :meth:`strategies.handles.Handle.describe`) and the short name of its
span on a trace's track (:func:`span_name`, from :attr:`strategies.handles.Handle.label`).

Examples
--------
>>> op = Operation("reduce", group=(0, 2), root=2)
>>> str(op), span_name(op, world_size=4)
('reduce on group (0, 2) (dst=2)', 'reduce[0,2] to 2')
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

__all__ = ["Label", "Operation", "Several", "span_name"]

#: The collectives whose root is the source (``src=``); the others' is the destination.
_FROM_ROOT = frozenset({"broadcast"})


class Operation(NamedTuple):
    """What a communicator call is, as fields: filled by the communicator, read by
    :meth:`strategies.handles.Handle.describe` (error messages) and :func:`span_name` (a
    trace's names).

    Examples
    --------
    >>> [str(o) for o in (Operation("all_reduce"), Operation("broadcast", (0, 1), root=0),
    ...  Operation("send", peer=2, nbytes=48), Operation("recv"))]
    ['all_reduce', 'broadcast on group (0, 1) (src=0)', 'send to rank 2 (48 B)', 'recv from any rank']
    """

    #: ``"all_reduce"``, ``"broadcast"``, ``"reduce"``, ``"all_gather"``,
    #: ``"reduce_scatter"``, ``"barrier"``, ``"send"`` or ``"recv"``.
    name: str
    #: A collective's group as the program named it; ``None``: the world (group not given).
    group: tuple[int, ...] | None = None
    #: A send's destination, a receive's source (``None``: any rank).
    peer: int | None = None
    #: A broadcast's ``src``, a reduce's ``dst``.
    root: int | None = None
    #: A send's payload, in bytes.
    nbytes: int | None = None

    def __str__(self) -> str:
        if self.name == "send":
            return f"send to rank {self.peer} ({self.nbytes} B)"
        if self.name == "recv":
            return "recv from any rank" if self.peer is None else f"recv from rank {self.peer}"
        text = self.name
        if self.group is not None:
            text = f"{text} on group {self.group}"
        if self.root is not None:
            text = f"{text} ({'src' if self.name in _FROM_ROOT else 'dst'}={self.root})"
        return text

    def span_name(self, world_size: int) -> str:
        """The short name of this operation on a trace's track.

        Examples
        --------
        >>> [Operation(*a).span_name(4) for a in (("all_reduce",), ("broadcast", None, None, 0),
        ...  ("reduce", (0, 2), None, 2), ("send", None, 2, None, 48), ("recv",))]
        ['all_reduce[0-3]', 'broadcast[0-3] from 0', 'reduce[0,2] to 2', 'send→2', 'recv←any']
        """
        if self.name == "send":
            return f"send→{self.peer}"
        if self.name == "recv":
            return f"recv←{'any' if self.peer is None else self.peer}"
        ranks = list(range(world_size)) if self.group is None else list(self.group)
        name = f"{self.name}[{_ranges(ranks)}]"
        if self.root is not None:
            name += f" {'from' if self.name in _FROM_ROOT else 'to'} {self.root}"
        return name


class Several(NamedTuple):
    """What a handle for several is (:func:`all_of`, :func:`any_of`): the first three of
    them, and how many more."""

    prefix: str  # "all of", "any of"
    parts: tuple[Label, ...]
    more: int = 0

    def span_name(self, world_size: int) -> str:
        """``all of [send→1; recv←3]``: the parts' names, and how many more."""
        more = f" and {self.more} more" if self.more else ""
        items = "; ".join(span_name(part, world_size) for part in self.parts)
        return f"{self.prefix} [{items}{more}]"


#: What a trace names a span by (:attr:`strategies.handles.Handle.label`): a plain
#: description, an operation, or several; hashable and picklable, made text by :func:`span_name`.
Label: TypeAlias = "str | Operation | Several"


def span_name(label: Label, world_size: int) -> str:
    """The short name of a span on a trace's track, from a handle's
    :attr:`~strategies.handles.Handle.label`: collectives show their group (``[0-3]``: ranks 0
    to 3) and root, point-to-point calls their peer; plain descriptions (computing, sleeping,
    a strategy's own) are kept.

    Examples
    --------
    >>> parts = (Operation("send", peer=1, nbytes=8), Operation("recv", peer=3))
    >>> span_name(Several("all of", parts), 4), span_name("compute_gradients", 4)
    ('all of [send→1; recv←3]', 'compute_gradients')
    >>> span_name(Operation("reduce_scatter"), 2)
    'reduce_scatter[0,1]'
    """
    # Text is kept; anything else names itself (no isinstance on this module's classes: a
    # module imported twice, as pytest's doctests may, would fail it).
    return label if isinstance(label, str) else label.span_name(world_size)


def _ranges(ranks: list[int]) -> str:
    """``0-3`` for a contiguous run of ranks, else the ranks (``0,2,5``)."""
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(map(str, ranks))
