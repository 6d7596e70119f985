"""What a backend reports to the run's ledger: typed events.

``sim`` builds them as things happen and hands each to :meth:`strategies.ledger.Ledger.record`
at once; a real rank records them with wall times, hands them in on the run's store as plain
tuples (:func:`to_wire`: tensors and plain data only, see ``docs/security.md``), and whoever
gathers turns them back (:func:`from_wire`, after ``real.handin`` has checked their shape) and
replays them, in time order, into the same :meth:`~strategies.ledger.Ledger.record`.

``at`` is the backend's clock (simulated seconds, or wall seconds since the ranks' common
start); ``rank`` the rank the event happened on. A ``state`` is an owner's flat parameters:
a tensor, ``None`` (not recorded) or, in ``sim``, a function returning them (copies are made
only when needed).

Examples
--------
>>> e = Computed(0.5, 1, 32)
>>> to_wire(e), from_wire(to_wire(e)) == e
(('computed', 0.5, 1, 32), True)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "Checkpointed",
    "Computed",
    "Crashed",
    "Event",
    "Held",
    "Logged",
    "Lost",
    "Restarted",
    "Restored",
    "Sent",
    "Settled",
    "Stepped",
    "from_wire",
    "to_wire",
]


@dataclass(frozen=True)
class Computed:
    """A gradient over ``samples`` examples finished on ``rank``."""

    kind = "computed"
    at: float
    rank: int
    samples: int


@dataclass(frozen=True)
class Stepped:
    """``rank`` applied one optimizer step of an update ``staleness`` versions old; an
    owner's ``state`` after it (``None`` unless the rules need it then)."""

    kind = "stepped"
    at: float
    rank: int
    staleness: float
    state: Any = None


@dataclass(frozen=True)
class Settled:
    """Owner ``rank`` is about to apply its next step: ``state`` is final for the step it
    applied last (or the program ended before it moved on)."""

    kind = "settled"
    at: float
    rank: int
    state: Any


@dataclass(frozen=True)
class Logged:
    """A strategy logged named ``values`` on ``rank``."""

    kind = "logged"
    at: float
    rank: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Sent:
    """``rank`` injected ``nbytes`` into the network (an operation it started)."""

    kind = "sent"
    at: float
    rank: int
    nbytes: float


@dataclass(frozen=True)
class Crashed:
    """``rank`` crashed (its program was closed at once): an owner leaves the global model
    until it rejoins, and what it computed and never committed is lost."""

    kind = "crashed"
    at: float
    rank: int


@dataclass(frozen=True)
class Restarted:
    """``rank`` came back as a new process, with no state (it has not rejoined yet)."""

    kind = "restarted"
    at: float
    rank: int


@dataclass(frozen=True)
class Restored:
    """``rank`` took a state at optimizer step ``step``: a live peer's (healing, ``nbytes``
    received for it) or a checkpoint's; an owner is one again, at that step, with ``state``."""

    kind = "restored"
    at: float
    rank: int
    step: int
    nbytes: float
    state: Any = None


@dataclass(frozen=True)
class Lost:
    """``rank`` dropped its work since its last committed step: a round that failed (its
    gradients are never applied), and ``steps`` global steps with it; ``undone``: steps it
    had applied and rolled back."""

    kind = "lost"
    at: float
    rank: int
    steps: int
    undone: bool = False


@dataclass(frozen=True)
class Held:
    """``rank`` holds ``samples`` samples it generated that no rank has counted yet (an
    actor's rollout until a learner has received it), from now until its next ``Held``:
    lost if it crashes meanwhile."""

    kind = "held"
    at: float
    rank: int
    samples: int


@dataclass(frozen=True)
class Checkpointed:
    """``rank`` spent ``seconds`` writing (or, at a restart, reading) its part of the run's
    checkpoint of global step ``step`` (``recovery="restart"`` on the real backend; ``sim``
    charges its storage model instead)."""

    kind = "checkpointed"
    at: float
    rank: int
    step: int
    seconds: float


Event = (
    Computed
    | Stepped
    | Settled
    | Logged
    | Sent
    | Crashed
    | Restarted
    | Restored
    | Lost
    | Held
    | Checkpointed
)

#: Each event type by the name it travels under.
KINDS: dict[str, type[Any]] = {
    t.kind: t
    for t in (
        Computed,
        Stepped,
        Settled,
        Logged,
        Sent,
        Crashed,
        Restarted,
        Restored,
        Lost,
        Held,
        Checkpointed,
    )
}


def to_wire(event: Event) -> tuple[Any, ...]:
    """``(kind, at, rank, *fields)``: the event as plain data (its tensors as they are)."""
    # Not dataclasses.astuple: it deep-copies every value, snapshots included.
    return (event.kind, *(getattr(event, f.name) for f in fields(event)))


def from_wire(item: tuple[Any, ...]) -> Event:
    """The event ``item`` (see :func:`to_wire`) stands for; its shape must have been checked
    (``real.handin.check_events``)."""
    kind, *fields = item
    event: Event = KINDS[kind](*fields)
    return event
