"""What a rank hands in on the run's store as it goes, and how the gatherer checks it.

A rank hands in its events (gradients, steps with their snapshots, logged values, bytes) in
batches while it trains, at most every :data:`FLUSH_EVERY` seconds, and its closing record
(error, final parameters, times, spans) when it ends. So a rank that is killed, or a run
that is interrupted, still leaves every event handed in before: a dead server rank's
measured steps are kept. Where the store is across the
run's own links (a testbed, a cluster), the snapshots of the parameters at evaluation points
are held back until the end (``hold_states``; an empty tensor stands in for each in the
batches): sending them while training shares those links with the training's traffic (a
4.8 MB model's snapshots doubled a Local SGD step on a 100 Mbit/s testbed). Local processes
(loopback), and a run that evaluates as it goes (a target), send them at once. A rank
that never closed leaves its held snapshots out: its steps count, its states do not.

Everything travels as tensors and plain data: events as ``(kind, time, rank, *fields)``
tuples (:func:`strategies.events.to_wire`), turned back into typed events only once checked;
a blob is ``torch.save`` of lists, tuples,
dicts, strings, numbers and tensors, read back with ``torch.load(weights_only=True)``, which
builds no other object and runs no code, and then checked against the schema below
(:func:`check_events`, :func:`check_final`). Values are signed (:mod:`real.store`), chunked
below the store's 8 MiB value limit, and a batch counts only once its count key is set.

Examples
--------
>>> import torch
>>> from strategies.events import Computed, Stepped, to_wire
>>> events = [Computed(0.5, 1, 32), Stepped(0.6, 1, 0, torch.zeros(3))]
>>> decode_events(encode([to_wire(e) for e in events]), rank=1)[1].state
tensor([0., 0., 0.])
>>> decode_events(encode([("computed", 0.5, 2, 32)]), rank=1)
Traceback (most recent call last):
...
real.handin.HandInRefused: rank 1's events on the run's store are malformed (event 0: rank 2, not 1); they were not used
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from real.placement import LaunchError
from strategies.events import Event, Settled, Stepped, from_wire, to_wire

__all__ = [
    "CHUNK_BYTES",
    "FLUSH_EVERY",
    "Gathered",
    "HandIn",
    "HandInRefused",
    "check_events",
    "check_final",
    "decode_events",
    "decode_final",
    "encode",
    "gather",
    "handed_in",
    "merge_parts",
    "read_batches",
    "slot",
]

#: Blobs travel in chunks below the store's 8 MiB value limit.
CHUNK_BYTES = 4 << 20
#: How often a training rank hands in the events recorded since its last batch.
FLUSH_EVERY = 1.0
_BATCH, _FINAL = "part/{rank}/batch/{i}", "part/{rank}/final"
_STATES = "part/{rank}/states"


def slot(rank: int, incarnation: int = 0) -> str:
    """Where a rank's process hands in: ``"3"``, or ``"3.1"`` for its first restart (a new
    process for the same rank, :mod:`real.crashes`).

    >>> slot(3), slot(3, 1)
    ('3', '3.1')
    """
    return str(rank) if incarnation == 0 else f"{rank}.{incarnation}"


_NUMBER = (int, float)
_VALUE = (int, float, bool, str, type(None), torch.Tensor)


class HandInRefused(LaunchError):
    """What a rank handed in does not have the shape of a rank's results."""


def encode(obj: Any) -> bytes:
    """``obj`` (tensors and plain data) as bytes for the store."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(blob: bytes, rank: int, what: str) -> Any:
    try:
        return torch.load(io.BytesIO(blob), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HandInRefused(
            f"rank {rank}'s {what} on the run's store are not tensors and plain data "
            f"({first[:160]}); they were not loaded"
        ) from None


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _fault(event: Any, rank: int) -> str | None:
    if not isinstance(event, tuple) or len(event) < 3 or not isinstance(event[0], str):
        return "not a (kind, time, rank, ...) tuple"
    kind, at, who, *rest = event
    if not _is(at, _NUMBER) or not math.isfinite(at):
        return f"time {at!r}"
    if not _is(who, (int,)) or who != rank:
        return f"rank {who!r}, not {rank}"
    shapes: dict[str, Callable[[list[Any]], bool]] = {
        "crashed": lambda r: not r,
        "restarted": lambda r: not r,
        "restored": lambda r: (
            len(r) == 3
            and _is(r[0], (int,))
            and _is(r[1], _NUMBER)
            and (r[2] is None or isinstance(r[2], torch.Tensor))
        ),
        "lost": lambda r: len(r) == 2 and _is(r[0], (int,)) and isinstance(r[1], bool),
        "held": lambda r: len(r) == 1 and _is(r[0], (int,)),
        "checkpointed": lambda r: (
            len(r) == 2 and _is(r[0], (int,)) and _is(r[1], _NUMBER) and r[1] >= 0
        ),
        "computed": lambda r: len(r) == 1 and _is(r[0], (int,)) and r[0] >= 0,
        "sent": lambda r: len(r) == 1 and _is(r[0], _NUMBER) and r[0] >= 0,
        "settled": lambda r: len(r) == 1 and isinstance(r[0], torch.Tensor),
        "stepped": lambda r: (
            len(r) == 2 and _is(r[0], (int,)) and (r[1] is None or isinstance(r[1], torch.Tensor))
        ),
        "logged": lambda r: (
            len(r) == 1
            and isinstance(r[0], dict)
            and all(isinstance(k, str) and _is(v, _VALUE) for k, v in r[0].items())
        ),
    }
    check = shapes.get(kind)
    if check is None:
        return f"unknown kind {kind!r}"
    return None if check(rest) else f"a {kind!r} event with {rest!r:.80}"


def check_events(events: Any, rank: int) -> list[Event]:
    """Rank ``rank``'s typed events, if ``events`` is a list of them as they travel
    (:func:`strategies.events.to_wire`), else :class:`HandInRefused`."""
    fault = "not a list" if not isinstance(events, list) else None
    for i, event in enumerate(events if fault is None else []):
        if (why := _fault(event, rank)) is not None:
            fault = f"event {i}: {why}"
            break
    if fault is not None:
        raise HandInRefused(
            f"rank {rank}'s events on the run's store are malformed ({fault}); they were not used"
        )
    return [from_wire(event) for event in events]


def _is_span(span: Any) -> bool:
    """``(category, name, start, end, args)``, as :meth:`runs.trace.Trace.span` keeps it."""
    return (
        isinstance(span, tuple)
        and len(span) == 5
        and isinstance(span[0], str)
        and isinstance(span[1], str)
        and _is(span[2], _NUMBER)
        and _is(span[3], _NUMBER)
        and (span[4] is None or isinstance(span[4], dict))
    )


def _final_fault(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not a dict"
    expected: dict[str, Callable[[Any], bool]] = {
        "error": lambda v: v is None or isinstance(v, str),
        "final": lambda v: v is None or isinstance(v, torch.Tensor),
        "stop_reason": lambda v: v is None or isinstance(v, str),
        "ended": lambda v: isinstance(v, str),
        "times": lambda v: isinstance(v, tuple) and len(v) == 4 and all(_is(x, _NUMBER) for x in v),
        "gradients": lambda v: isinstance(v, list) and all(_is(x, _NUMBER) for x in v),
        "trace": lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("spans"), list)
            and all(_is_span(s) for s in v["spans"])
            and _is(v.get("dropped"), (int,))
            and isinstance(v.get("totals"), dict)
            and all(isinstance(k, str) and _is(x, _NUMBER) for k, x in v["totals"].items())
            and (
                "overlapped" not in v
                or isinstance(v["overlapped"], list)
                and all(_is_span(s) for s in v["overlapped"])
            )
        ),
    }
    for key, value in record.items():
        if key not in expected:
            return f"unknown key {key!r}"
        if not expected[key](value):
            return f"{key} = {value!r:.80}"
    return None


def check_final(record: Any, rank: int) -> dict[str, Any]:
    """``record`` if it has the shape of a rank's closing record, else
    :class:`HandInRefused`."""
    if (fault := _final_fault(record)) is not None:
        raise HandInRefused(
            f"rank {rank}'s closing record on the run's store is malformed ({fault}); it was "
            "not used"
        )
    return record


def decode_events(blob: bytes, rank: int) -> list[Event]:
    """A batch of rank ``rank``'s events from its bytes, checked."""
    return check_events(_load(blob, rank, "events"), rank)


def decode_final(blob: bytes, rank: int) -> dict[str, Any]:
    """Rank ``rank``'s closing record from its bytes, checked."""
    return check_final(_load(blob, rank, "closing record"), rank)


def _put(store: Any, key: str, blob: bytes) -> None:
    chunks = max(1, math.ceil(len(blob) / CHUNK_BYTES))
    for i in range(chunks):
        store.set(f"{key}/{i}", blob[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES])
    store.set(key, str(chunks))  # last: the blob is complete once this key exists


def _take(store: Any, key: str) -> bytes:
    chunks = int(bytes(store.get(key)).decode())
    return b"".join(bytes(store.get(f"{key}/{i}")) for i in range(chunks))


def _plain(event: Event) -> tuple[Any, ...]:
    """``event`` as it travels, logged values as the ledger reads them: numbers as ``float``
    (numpy scalars, fractions, one-element tensors ...), strings, booleans and ``None`` as
    they are (weights-only loading builds tensors and plain data, nothing else)."""
    wire = to_wire(event)
    if wire[0] != "logged":
        return wire
    values = {
        k: v if isinstance(v, (str, bool, type(None))) else _number(v) for k, v in wire[3].items()
    }
    return (*wire[:3], values)


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):  # not a number: the check names it
        return value


class HandIn:
    """One rank's hand-in: events in batches as it goes, its closing record at the end.

    ``hold_states``: an event's snapshot (a ``settled`` or ``stepped`` state) travels as an
    empty tensor in the batches and for real with the closing record (see the module)."""

    def __init__(
        self,
        store: Any,
        rank: int,
        every: float = FLUSH_EVERY,
        hold_states: bool = False,
        incarnation: int = 0,
    ) -> None:
        self._store, self.rank, self.every = store, rank, every
        self._slot = slot(rank, incarnation)
        self.hold_states = hold_states
        self._sent = 0  # events handed in so far
        self._batches = 0
        self._held: list[tuple[int, torch.Tensor]] = []  # (event index, state) held back
        self._last: float | None = None  # the first batch waits a period from the first call
        encode([])  # torch.save's first call imports; not inside the rank's timed loop

    def events(self, events: list[Event], force: bool = False, hold: bool = True) -> None:
        """Hand in the events recorded since the last batch, if ``every`` seconds have passed
        (or ``force``); their states held back where ``hold_states`` (and ``hold``: the
        closing batch sends its own). The rank's own thread only: one store client serves
        one call."""
        now = time.monotonic()
        if self._last is None:
            self._last = now
        if self._sent == len(events) or (not force and now - self._last < self.every):
            return
        batch = []
        for index in range(self._sent, len(events)):
            wire = _plain(events[index])
            state = wire[-1]
            if (
                hold
                and self.hold_states
                and wire[0] in _STATEFUL
                and isinstance(state, torch.Tensor)
            ):
                self._held.append((index, state))
                wire = (*wire[:-1], _HELD)
            batch.append(wire)
        self._sent = len(events)
        # Each batch's key is written once (no count key that a replayed older value could
        # roll back): the gatherer reads batches 0, 1, ... while they exist.
        _put(self._store, _BATCH.format(rank=self._slot, i=self._batches), encode(batch))
        self._batches += 1
        self._last = time.monotonic()

    def final(self, events: list[Event], record: dict[str, Any]) -> None:
        """Hand in the last events and the states held back, then the closing record
        (``record`` less its events)."""
        self.events(events, force=True, hold=False)
        if self._held:
            _put(self._store, _STATES.format(rank=self._slot), encode(self._held))
        _put(self._store, _FINAL.format(rank=self._slot), encode(record))


#: Events whose last field is an owner's state, and what stands in for one held back.
_STATEFUL = ("settled", "stepped")
_HELD = torch.empty(0)


def _is_held(state: Any) -> bool:
    return isinstance(state, torch.Tensor) and state.numel() == 0


def _with_states(
    store: Any, rank: int, events: list[Event], closed: bool, incarnation: int = 0
) -> list[Event]:
    """``events`` with the states a rank held back put in (``closed``), or, for a rank that
    never closed, without them: a held ``settled`` is dropped, a held ``stepped`` keeps its
    step and no state."""
    held: dict[int, torch.Tensor] = {}
    key = _STATES.format(rank=slot(rank, incarnation))
    if closed and store.check([key]):
        states = _load(_take(store, key), rank, "held states")
        if not isinstance(states, list) or not all(
            isinstance(s, tuple)
            and len(s) == 2
            and _is(s[0], (int,))
            and isinstance(s[1], torch.Tensor)
            for s in states
        ):
            raise HandInRefused(f"rank {rank}'s held states on the run's store are malformed")
        held = dict(states)
    out: list[Event] = []
    for index, event in enumerate(events):
        if isinstance(event, Stepped | Settled) and _is_held(event.state):
            if index in held:
                event = dataclasses.replace(event, state=held[index])
            elif isinstance(event, Settled):
                continue
            else:
                event = dataclasses.replace(event, state=None)
        out.append(event)
    return out


def handed_in(store: Any, rank: int, incarnation: int = 0) -> bool:
    """Whether ``rank`` (its process ``incarnation``) has handed in its closing record."""
    return bool(store.check([_FINAL.format(rank=slot(rank, incarnation))]))


@dataclass
class Gathered:
    """Every rank's part (``None``: nothing handed in) and why any part was refused."""

    parts: list[dict[str, Any] | None]
    refused: list[str] = field(default_factory=list)


def read_batches(
    store: Any,
    rank: int,
    start: int = 0,
    refused: list[str] | None = None,
    incarnation: int = 0,
) -> tuple[list[Event], int]:
    """Rank ``rank``'s events in the batches it has handed in from batch ``start`` on, and
    the index of the next batch (a watcher reads a run's events as they come). A batch that
    fails its check is left out and said in ``refused``."""
    events: list[Event] = []
    batches = start
    where = slot(rank, incarnation)
    while store.check([_BATCH.format(rank=where, i=batches)]):
        try:
            events.extend(decode_events(_take(store, _BATCH.format(rank=where, i=batches)), rank))
        except LaunchError as why:
            if refused is not None:
                refused.append(str(why))
        batches += 1
    return events, batches


def _read_part(
    store: Any, rank: int, final: bool, refused: list[str], incarnation: int = 0
) -> dict[str, Any] | None:
    """Rank ``rank``'s events so far and, with ``final``, its closing record; a batch that
    fails its check is left out and said in ``refused`` (the others are kept)."""
    events, batches = read_batches(store, rank, 0, refused, incarnation)
    if batches == 0 and not final:
        return None
    part: dict[str, Any] = {"error": None, "final": None, "stop_reason": None}
    if final:
        part.update(decode_final(_take(store, _FINAL.format(rank=slot(rank, incarnation))), rank))
    part["events"] = _with_states(store, rank, events, final, incarnation)
    return part


def gather(
    store: Any,
    world_size: int,
    deadline: Callable[[], float],
    poll: float = 0.02,
    incarnations: dict[int, int] | None = None,
) -> Gathered:
    """Every rank's handed-in results, waiting until all closing records are in or
    ``time.monotonic()`` passes ``deadline()`` (re-read each poll: it moves closer once a rank
    fails). A rank that never closed (killed, or lost with its node) contributes the events it
    handed in as it went; one that handed in nothing is ``None``. A part that fails its check
    (:class:`HandInRefused`, or a value the run did not sign) is left out and said in
    ``refused``.

    ``incarnations``: how many processes each restarted rank had (:mod:`real.crashes`); a
    rank's part is then all of theirs in order (:func:`merge_parts`)."""
    gathered = Gathered([None] * world_size)
    missing = set(range(world_size))
    while True:
        for rank in sorted(missing):
            try:
                if not handed_in(store, rank):
                    continue
                gathered.parts[rank] = _read_part(store, rank, True, gathered.refused)
            except LaunchError as refused:
                gathered.refused.append(str(refused))
            except Exception:  # the store went away: what is in is all there is
                return gathered
            missing.discard(rank)
        if not missing or time.monotonic() > deadline():
            break
        time.sleep(poll)
    for rank in sorted(missing):  # never closed: keep the events it handed in as it went
        try:
            gathered.parts[rank] = _read_part(store, rank, False, gathered.refused)
        except LaunchError as refused:
            gathered.refused.append(str(refused))
        except Exception:
            break
    for rank, count in sorted((incarnations or {}).items()):
        later = []
        for incarnation in range(1, count):
            try:
                closed = handed_in(store, rank, incarnation)
                later.append(_read_part(store, rank, closed, gathered.refused, incarnation))
            except LaunchError as refused:
                gathered.refused.append(str(refused))
            except Exception:
                break
        gathered.parts[rank] = merge_parts([gathered.parts[rank], *later])
    return gathered


def merge_parts(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One rank's part from its processes' parts, in order (a restarted rank's new process
    after the one killed): every event; the closing record, stop and error of the last that
    closed; times and gradient marks summed (the compute time goes on counting)."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    merged: dict[str, Any] = {"error": None, "final": None, "stop_reason": None, "events": []}
    compute = comm = overlap = 0.0
    for part in present:
        merged["events"] = merged["events"] + list(part["events"])
        for key in ("error", "final", "stop_reason", "ended", "trace"):
            if part.get(key) is not None:
                merged[key] = part[key]
        if "gradients" in part:
            merged["gradients"] = merged.get("gradients", []) + [
                compute + g for g in part["gradients"]
            ]
        if "times" in part:
            end, c, m, o = part["times"]
            compute, comm, overlap = compute + c, comm + m, overlap + o
            merged["times"] = (end, compute, comm, overlap)
    return merged
