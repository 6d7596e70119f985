"""A run's timeline in Chrome's trace-event format, which Perfetto and chrome://tracing open.

Both backends feed a :class:`Trace` with *spans*: a rank was computing, communicating or
idle from ``start_s`` to ``end_s`` (seconds: simulated in ``sim``, wall-clock since the run's
start in ``real``), doing an operation named like ``all_reduce[0-3]``, ``send→2`` or
``recv←0``. The spans of a rank partition the time its rank row accounts, so summing them by
category gives back the row's ``compute_time``, ``comm_time`` and ``idle_time`` (see
:func:`span_totals`). Counters add values over time: the global model's ``loss``, and in
``sim`` the links' utilisation.

The document written as ``trace.json`` holds

* ``"M"`` metadata events: one process per backend run (``pid`` 1 for ``sim``, 2 for
  ``real``, so two traces' events can be concatenated and compared), one thread (track) per
  rank, named ``"rank 0 (worker)"``, and for a rank whose communication moved while it
  computed (a bucket's all-reduce during backward) a second track beside it,
  ``"rank 0 (worker) overlapped comm"`` (``tid`` :func:`overlapped_track`);
* ``"X"`` complete events, one per span: ``cat`` is the category, ``ts`` and ``dur`` are
  microseconds;
* ``"C"`` counter events;
* ``"i"`` instant events, one per fault or recovery (``cat`` ``"fault"``, named by the
  ``fault`` row's ``event``: ``crash``, ``restart``, ``rejoin`` ...) on its rank's track, or
  the whole process's (``"s": "p"``) for one that no rank has (a link going down);
* ``otherData``: the ``backend``, the ``clock`` (``"simulated"`` or ``"wall"``), the
  ``span_limit`` and, per rank, its role, the spans kept and dropped and the seconds per
  category of *all* its spans (dropped ones too).

The second track holds the rank's *overlapped* communication (:mod:`runs.overlap`): ``comm``
spans named as the rank's other communication, sequential, over the moments its
communication moved while it computed, so they add up to the rank row's ``overlap_time``.
They are not part of the rank's own time (:func:`span_totals` leaves them out unless asked:
the exposed communication is on the rank's track), and a run without overlapped
communication has no second track.

A long run must not make a file that no viewer opens: each rank keeps at most ``limit``
spans (by default :data:`SPAN_BUDGET` shared by all ranks, about 100 bytes each in the
file, so the file stays near 10 MB at most); later spans only add to the totals, and
``otherData`` says how many were dropped.

Examples
--------
>>> trace = Trace(2, backend="sim", limit=2)
>>> trace.role(0, "worker"); trace.role(1, "server")
>>> trace.span(0, "compute", "compute_gradients", 0.0, 0.5)
>>> trace.span(0, "comm", "all_reduce[0,1]", 0.5, 0.75)
>>> trace.span(0, "idle", "sleep 1 s", 0.75, 1.0)  # over the limit: counted, not kept
>>> trace.counter("loss", 1.0, {"loss": 0.25})
>>> doc = trace.document()
>>> validate(doc)
>>> [(e["ph"], e["name"]) for e in doc["traceEvents"] if e["ph"] != "M"]
[('X', 'compute_gradients'), ('X', 'all_reduce[0,1]'), ('C', 'loss')]
>>> doc["otherData"]["ranks"][0]
{'rank': 0, 'role': 'worker', 'spans': 2, 'dropped': 1, 'compute': 0.5, 'comm': 0.25, 'idle': 0.25}
>>> span_totals(doc)[0]
{'compute': 0.5, 'comm': 0.25, 'idle': 0.0}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CATEGORIES",
    "CLOCKS",
    "SPAN_BUDGET",
    "Trace",
    "overlapped_track",
    "span_limit",
    "span_totals",
    "validate",
]

#: What a rank's time is spent on, as its rank row splits it.
CATEGORIES = ("compute", "comm", "idle")
#: Spans kept over all ranks by default: at ~100 bytes a span, a file of ~10 MB.
SPAN_BUDGET = 100_000
#: The clock of each backend's times.
CLOCKS = {"sim": "simulated", "real": "wall"}
_PIDS = {"sim": 1, "real": 2}
_CATEGORY_SET = frozenset(CATEGORIES)

Span = tuple[str, Any, float, float, Any]  # category, name (or a label), start, end, args


def span_limit(ranks: int, budget: int = SPAN_BUDGET) -> int:
    """Spans each of ``ranks`` ranks keeps, so that all of them keep at most ``budget``.

    >>> span_limit(8), span_limit(10**6)
    (12500, 1)
    """
    if ranks < 1:
        raise ValueError(f"ranks={ranks!r} must be at least 1")
    return max(1, budget // ranks)


def overlapped_track(rank: int, ranks: int) -> int:
    """The ``tid`` of ``rank``'s overlapped-communication track in a run of ``ranks`` ranks
    (after every rank's own track, whose ``tid`` is its rank).

    >>> overlapped_track(0, 4), overlapped_track(3, 4)
    (4, 7)
    """
    return ranks + rank


class Trace:
    """Spans and counters of one run, and its trace-event document.

    Parameters
    ----------
    ranks
        The run's world size: one track per rank.
    backend
        ``"sim"`` (simulated seconds) or ``"real"`` (wall-clock seconds since the start).
    limit
        Spans kept per rank; later ones only count in the totals. Default:
        :func:`span_limit` of ``ranks``.
    names
        Turns the name given to :meth:`span` into the name shown, once per distinct name and
        only for kept spans, when the document is built or a rank's spans exported (a
        backend passes its handles' labels, :attr:`strategies.handles.Handle.label`, and
        formats nothing while the run goes).
    title
        Shown in the process's name (``"sim: allreduce on mlp_digits"``).
    """

    def __init__(
        self,
        ranks: int,
        *,
        backend: str,
        limit: int | None = None,
        names: Callable[[Any], str] | None = None,
        title: str = "",
    ) -> None:
        if backend not in CLOCKS:
            raise ValueError(f"backend={backend!r} is unknown; use one of {', '.join(CLOCKS)}")
        self.ranks = ranks
        self.backend = backend
        self.limit = span_limit(ranks) if limit is None else int(limit)
        if self.limit < 0:
            raise ValueError(f"limit={limit!r} must be >= 0 spans per rank")
        self.names = names
        self.title = title
        self.roles: dict[int, str] = {}
        self._spans: dict[int, list[Span]] = {r: [] for r in range(ranks)}
        self._overlapped: dict[int, list[Span]] = {}  # second tracks, only where there is one
        self._dropped = dict.fromkeys(range(ranks), 0)
        self._totals = {r: dict.fromkeys(CATEGORIES, 0.0) for r in range(ranks)}
        self._counters: list[tuple[str, float, dict[str, float]]] = []
        self._instants: list[tuple[int, str, float]] = []  # rank (-1: none), event, time

    # -- recording --------------------------------------------------------------------------
    def role(self, rank: int, role: str) -> None:
        """Name ``rank``'s track after its role (``"worker"``, ``"server"``)."""
        self.roles[rank] = role

    def span(
        self,
        rank: int,
        category: str,
        name: Hashable,
        start: float,
        end: float,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        """``rank`` spent ``[start, end]`` on ``category`` doing ``name`` (text, or a label
        that ``names`` turns into text); an empty span is not recorded (the wait did not
        block)."""
        if category not in _CATEGORY_SET:
            raise ValueError(
                f"category={category!r} is unknown; use one of {', '.join(CATEGORIES)}"
            )
        if not end > start:
            return
        self._totals[rank][category] += end - start
        spans = self._spans[rank]
        if len(spans) < self.limit:
            spans.append((category, name, start, end, args))
        else:
            self._dropped[rank] += 1

    def overlapped(self, rank: int, name: Hashable, start: float, end: float) -> None:
        """``rank``'s communication ``name`` moved over ``[start, end]`` while the rank
        computed: a span of its second track (its own limit; no total: the rank's time has it
        as compute)."""
        if not end > start:
            return
        spans = self._overlapped.setdefault(rank, [])
        if len(spans) < self.limit:
            spans.append(("comm", name, start, end, None))

    def counter(self, name: str, time: float, values: Mapping[str, float]) -> None:
        """Counter ``name`` has ``values`` (one series each) from ``time`` on; NaNs are left
        out (JSON has none)."""
        kept = {k: float(v) for k, v in values.items() if math.isfinite(v)}
        if kept:
            self._counters.append((name, float(time), kept))

    def evals(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """A ``loss`` counter from the run's ``eval`` rows (a ``return`` counter for a
        workload evaluated by its return, whose rows' loss is NaN: left out)."""
        for row in rows:
            if row.get("kind") != "eval":
                continue
            for name in ("loss", "return"):
                if name in row:
                    self.counter(name, row["time"], {name: row[name]})

    def faults(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """An instant event for each ``fault`` row (a crash, a restart, a rejoin, a link
        going down ...) at its time, on its rank's track (or the process's, for rank -1).

        >>> trace = Trace(2, backend="sim")
        >>> trace.faults([{"kind": "fault", "time": 1.5, "rank": 1, "event": "crash"},
        ...               {"kind": "eval", "time": 2.0, "loss": 0.5}])
        >>> [(e["name"], e["tid"], e["ts"], e["s"]) for e in trace.document()["traceEvents"]
        ...  if e["ph"] == "i"]
        [('crash', 1, 1500000.0, 't')]
        """
        for row in rows:
            if row.get("kind") == "fault":
                rank = row.get("rank")
                on = int(rank) if rank is not None and 0 <= rank < self.ranks else -1
                self._instants.append((on, str(row.get("event")), float(row["time"])))

    # -- handing in and gathering (real: each rank records its own) -----------------------
    def export(self, rank: int) -> dict[str, Any]:
        """``rank``'s spans and totals as plain data (names as text), to hand in from its
        process."""
        part = {
            "spans": self._named(self._spans[rank], {}),
            "dropped": self._dropped[rank],
            "totals": dict(self._totals[rank]),
        }
        if self._overlapped.get(rank):  # (a run without overlap hands in what it did)
            part["overlapped"] = self._named(self._overlapped[rank], {})
        return part

    def absorb(self, rank: int, part: Mapping[str, Any]) -> None:
        """Take ``rank``'s :meth:`export` from its process (kept up to this trace's limit)."""
        spans = list(part["spans"])
        self._spans[rank] = spans[: self.limit]
        self._dropped[rank] = int(part["dropped"]) + len(spans) - len(self._spans[rank])
        self._totals[rank] = {c: float(part["totals"][c]) for c in CATEGORIES}
        if part.get("overlapped"):
            self._overlapped[rank] = list(part["overlapped"])[: self.limit]

    def _named(self, spans: list[Span], shown: dict[Any, str]) -> list[Span]:
        """``spans`` with their names shown as text (``shown``: names made so far)."""
        if self.names is None:
            return list(spans)
        out: list[Span] = []
        for category, name, start, end, args in spans:
            if name not in shown:
                shown[name] = self.names(name)
            out.append((category, shown[name], start, end, args))
        return out

    # -- reading ----------------------------------------------------------------------------
    def totals(self) -> dict[int, dict[str, float]]:
        """Seconds per category of every rank's spans, dropped ones included."""
        return {r: dict(t) for r, t in self._totals.items()}

    @property
    def dropped(self) -> dict[int, int]:
        """Spans each rank recorded beyond the limit."""
        return dict(self._dropped)

    def document(self, **other: Any) -> dict[str, Any]:
        """The trace-event document; ``other`` goes into ``otherData`` beside what this trace
        says about itself."""
        pid = _PIDS[self.backend]
        title = f"{self.backend}: {self.title}" if self.title else f"{self.backend} run"
        events: list[dict[str, Any]] = [_meta("process_name", pid, 0, {"name": title})]
        # With second tracks, each sits right below its rank's (sorted 2r, 2r + 1).
        step = 2 if self._overlapped else 1
        for rank in range(self.ranks):
            role = self.roles.get(rank)
            track = f"rank {rank} ({role})" if role else f"rank {rank}"
            events.append(_meta("thread_name", pid, rank, {"name": track}))
            events.append(_meta("thread_sort_index", pid, rank, {"sort_index": step * rank}))
            if rank in self._overlapped:
                tid = overlapped_track(rank, self.ranks)
                events.append(_meta("thread_name", pid, tid, {"name": f"{track} overlapped comm"}))
                events.append(_meta("thread_sort_index", pid, tid, {"sort_index": 2 * rank + 1}))
        shown: dict[Any, str] = {}
        tracks = [(rank, self._spans[rank]) for rank in range(self.ranks)]
        tracks += [
            (overlapped_track(rank, self.ranks), self._overlapped[rank])
            for rank in sorted(self._overlapped)
        ]
        for tid, spans in tracks:
            for category, name, start, end, args in self._named(spans, shown):
                ts = _us(start)
                event = {
                    "ph": "X",
                    "cat": category,
                    "name": name,
                    "pid": pid,
                    "tid": tid,
                    "ts": ts,
                    "dur": max(0.0, round(_us(end) - ts, 3)),
                }
                if args:
                    event["args"] = dict(args)
                events.append(event)
        for name, time, values in sorted(self._counters, key=lambda c: (c[1], c[0])):
            events.append(
                {"ph": "C", "name": name, "pid": pid, "tid": 0, "ts": _us(time), "args": values}
            )
        for rank, name, time in sorted(self._instants, key=lambda i: (i[2], i[0])):
            events.append(
                {
                    "ph": "i",
                    "cat": "fault",
                    "name": name,
                    "pid": pid,
                    "tid": max(rank, 0),
                    "ts": _us(time),
                    # On the rank's track; a fault of no rank (a link) across the process.
                    "s": "t" if rank >= 0 else "p",
                }
            )
        ranks = [
            {
                "rank": rank,
                "role": self.roles.get(rank),
                "spans": len(self._spans[rank]),
                "dropped": self._dropped[rank],
                **self._totals[rank],
            }
            for rank in range(self.ranks)
        ]
        info = {
            "backend": self.backend,
            "clock": CLOCKS[self.backend],
            "span_limit": self.limit,
            "ranks": ranks,
            **other,
        }
        return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": info}

    def write(self, path: str | Path, **other: Any) -> Path:
        """Write :meth:`document` to ``path`` as compact JSON (atomically); returns the path."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        text = json.dumps(self.document(**other), separators=(",", ":"), ensure_ascii=False)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path


def _us(seconds: float) -> float:
    # Nanosecond resolution is plenty and keeps the file short.
    return round(seconds * 1e6, 3)


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "ts": 0, "args": args}


# -- checking a document ---------------------------------------------------------------------
#: Slack in microseconds between spans of one track: times are rounded to nanoseconds.
_SLACK_US = 0.002


def validate(document: Mapping[str, Any]) -> None:
    """Raise a one-line ``ValueError`` unless ``document`` is a trace viewers open: every
    event has ``ph``, ``ts``, ``pid`` and ``tid``; complete events have a known category and
    ``dur >= 0``; the spans of one track are sequential or nested, never partly overlapping.

    >>> validate({"traceEvents": [{"ph": "X", "ts": 0, "pid": 1, "tid": 0, "dur": -1}]})
    Traceback (most recent call last):
    ...
    ValueError: traceEvents[0] has dur=-1; a complete event lasts >= 0 microseconds
    """
    events = document.get("traceEvents")
    if not isinstance(events, list):
        raise ValueError("the document has no 'traceEvents' list; it is not a trace")
    tracks: dict[tuple[Any, Any], list[tuple[float, float, int]]] = {}
    for i, event in enumerate(events):
        for key in ("ph", "ts", "pid", "tid"):
            if key not in event:
                raise ValueError(f"traceEvents[{i}] has no {key!r}; every event needs one")
        if event["ph"] not in ("X", "M", "C", "i"):
            raise ValueError(f"traceEvents[{i}] has ph={event['ph']!r}; expected X, M, C or i")
        if event["ph"] == "X":
            dur = event.get("dur")
            if not isinstance(dur, (int, float)) or not dur >= 0:
                raise ValueError(
                    f"traceEvents[{i}] has dur={dur!r}; a complete event lasts >= 0 microseconds"
                )
            if event.get("cat") not in _CATEGORY_SET:
                raise ValueError(
                    f"traceEvents[{i}] has cat={event.get('cat')!r}; use one of "
                    f"{', '.join(CATEGORIES)}"
                )
            tracks.setdefault((event["pid"], event["tid"]), []).append((event["ts"], dur, i))
        if event["ph"] == "i" and event.get("s", "t") not in ("t", "p", "g"):
            raise ValueError(
                f"traceEvents[{i}] is an instant event with s={event.get('s')!r}; use t "
                "(its track), p (its process) or g (global)"
            )
        if event["ph"] == "C" and not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in event.get("args", {}).values()
        ):
            raise ValueError(f"traceEvents[{i}] is a counter with a non-finite value")
    for spans in tracks.values():
        open_ends: list[tuple[float, int]] = []  # the spans that enclose the current one
        for ts, dur, i in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1][0] <= ts + _SLACK_US:
                open_ends.pop()
            if open_ends and ts + dur > open_ends[-1][0] + _SLACK_US:
                raise ValueError(
                    f"traceEvents[{i}] starts inside traceEvents[{open_ends[-1][1]}] and ends "
                    "after it; spans of one track must be sequential or nested"
                )
            open_ends.append((ts + dur, i))


def span_totals(
    document: Mapping[str, Any], overlapped: bool = False
) -> dict[int, dict[str, float]]:
    """Seconds per category of the complete events on each rank's track, from a document
    (the independent check of the rank rows: only kept spans count); with ``overlapped``,
    those of each rank's overlapped-communication track instead (by rank).

    >>> trace = Trace(2, backend="sim")
    >>> trace.span(0, "compute", "compute_gradients", 0.0, 1.0)
    >>> trace.overlapped(0, "all_reduce[0,1]", 0.5, 1.0)
    >>> span_totals(trace.document())
    {0: {'compute': 1.0, 'comm': 0.0, 'idle': 0.0}}
    >>> span_totals(trace.document(), overlapped=True)
    {0: {'compute': 0.0, 'comm': 0.5, 'idle': 0.0}}
    """
    # Second tracks come after the ranks' (overlapped_track); a document without otherData
    # has only ranks' tracks.
    ranks = len(document.get("otherData", {}).get("ranks", ())) or math.inf
    totals: dict[int, dict[str, float]] = {}
    for event in document["traceEvents"]:
        if event["ph"] == "X":
            tid = event["tid"]
            if (tid >= ranks) != overlapped:
                continue
            rank = int(tid - ranks) if overlapped else tid
            sums = totals.setdefault(rank, dict.fromkeys(CATEGORIES, 0.0))
            sums[event["cat"]] += event["dur"] / 1e6
    return totals
