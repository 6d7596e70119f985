"""Flows in flight: routed batches of messages, and the arrays of flows between send and delivery.

A :class:`FlowBatch` is a set of messages routed once and injected as often as needed (a round
of a collective recurs in every all-reduce of a training run). A :class:`FlowTable` holds the
flows of one network as parallel numpy arrays: *pending* while they spend their route latency,
*active* while they transfer at the rates the network assigns. A batch that moves as a whole
(injected, activated and finished together) costs a handful of array operations, and arrays
are shared read-only with the batches: the table replaces them, it never writes into them.

Examples
--------
>>> import topologies
>>> from sim.routing import Router
>>> r = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
>>> table = FlowTable()
>>> table.add(FlowBatch(r, np.array([0]), np.array([2]), np.array([1e3])), 7, np.array([5]), 0.0)
>>> table.first_due, table.activate(2e-6, finished := []), table.active[0].tolist()
(2e-06, True, [0])
>>> table.set_rates(np.array([1e9]))
>>> table.next_event(2e-6)  # 1 kB at 1 GB/s
3e-06
>>> table.progress(1e-6); table.complete(3e-6, finished), finished
(True, [(array([7]), array([5]), 7)])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.flow_classes import FlowClasses
from sim.routing import Router

__all__ = ["FlowBatch", "FlowTable"]

#: A transferring flow with less than this fraction of its bytes left has finished (float noise).
_DONE_FRACTION = 1e-10
#: ... and so has one whose remaining transfer time is below this fraction of the clock.
_DONE_CLOCK = 1e-13
#: A flow whose latency ends within this fraction of the clock of now is due now.
DUE = 1 + 1e-15

# Direct ufunc/C entry points: the arrays are small, and ndarray.all()/.min() spend more time in
# their Python wrappers than in the work.
_count, _min, _max = np.count_nonzero, np.minimum.reduce, np.maximum.reduce
_I, _F = np.empty(0, np.int64), np.empty(0)
_I.flags.writeable = _F.flags.writeable = False
#: Parallel arrays, one per column (seven, see :class:`FlowTable`). Typed as a variadic tuple:
#: the columns are rebuilt column-wise (``tuple(map(...))``), which has no fixed length to mypy.
Columns = tuple[np.ndarray, ...]
#: No pending flows: (end of latency, route, bytes, owner, tag, instant, weight).
_NO_PENDING: Columns = (_F, _I, _F, _I, _I, np.empty(0, bool), _F)
#: No active flows: (route, bytes left, bytes, rate, owner, tag, weight).
_NO_ACTIVE: Columns = (_I, _F, _F, _F, _I, _I, _F)
_ONES: dict[int, np.ndarray] = {}

#: Flows that finished: (owners, tags, the one owner of them all or -1); the owners are None
#: where that one owner is given (a round held as classes: nothing reads them then).
Finished = list[tuple[np.ndarray | None, np.ndarray, int]]


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _ones(n: int) -> np.ndarray:
    ones = _ONES.get(n)
    if ones is None:
        ones = _ONES[n] = _frozen(np.ones(n))
    return ones


class FlowBatch:
    """Messages routed once, with everything the network derives from them per flow.

    Examples
    --------
    >>> import topologies
    >>> from sim.routing import Router
    >>> r = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
    >>> b = FlowBatch(r, np.array([0, 1]), np.array([2, 1]), np.array([8.0, 4.0]))
    >>> b.latency.tolist(), b.instant.tolist(), b.per_rank.tolist(), b.total, b.size
    ([2e-06, 0.0], [False, True], [8.0, 4.0, 0.0], 12.0, 2)
    """

    __slots__ = (
        "_classes",
        "_uses",
        "any_instant",
        "index",
        "instant",
        "latency",
        "max_latency",
        "min_latency",
        "nbytes",
        "per_rank",
        "routes",
        "size",
        "total",
    )

    def __init__(
        self,
        router: Router,
        src: np.ndarray,
        dst: np.ndarray,
        nbytes: np.ndarray,
        label: int = 0,
    ):
        #: Route ids; ``label`` is the messages' connection (``ecmp`` hashes it with the ranks).
        self.routes = _frozen(router.routes(src, dst, label))
        self.size = self.routes.size
        self.nbytes = _frozen(np.array(nbytes, dtype=float))
        self.latency = _frozen(router.route_latency[self.routes])
        self.min_latency = float(self.latency.min()) if self.size else math.inf
        self.max_latency = float(self.latency.max()) if self.size else -math.inf
        #: Empty messages and host-to-itself routes are delivered at the end of their latency.
        self.instant = _frozen((self.nbytes <= 0) | (router.route_hops[self.routes] == 0))
        self.any_instant = bool(self.instant.any())
        #: Bytes injected per source rank, and in all.
        self.per_rank = _frozen(np.bincount(src, weights=self.nbytes, minlength=router.n_hosts))
        self.total = float(self.nbytes.sum())
        #: ``0..size-1``: the flows' positions, for owners that tag flows by position.
        self.index = _frozen(np.arange(self.size))
        self._classes: FlowClasses | None = None
        self._uses = 0

    def part(self, positions: np.ndarray, src: np.ndarray) -> FlowBatch:
        """The flows at ``positions`` (sent by ranks ``src``) as a batch of their own: what
        :class:`FlowBatch` makes of those messages, without routing them again (a pair's
        route id is fixed once routed, so the routes are the same).

        >>> import topologies
        >>> from sim.routing import Router
        >>> r = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
        >>> b = FlowBatch(r, np.array([0, 1]), np.array([2, 2]), np.array([8.0, 4.0]))
        >>> p = b.part(np.array([1]), np.array([1]))
        >>> p.routes.tolist(), p.per_rank.tolist(), p.total
        ([1], [0.0, 4.0, 0.0], 4.0)
        """
        new = object.__new__(FlowBatch)
        new.routes = _frozen(self.routes[positions])
        new.size = new.routes.size
        new.nbytes = _frozen(self.nbytes[positions])
        new.latency = _frozen(self.latency[positions])
        new.min_latency = float(_min(new.latency)) if new.size else math.inf
        new.max_latency = float(_max(new.latency)) if new.size else -math.inf
        new.instant = _frozen(self.instant[positions])
        new.any_instant = bool(_count(new.instant))
        new.per_rank = _frozen(np.bincount(src, weights=new.nbytes, minlength=self.per_rank.size))
        new.total = float(new.nbytes.sum())
        new.index = _frozen(np.arange(new.size))
        new._classes = None
        new._uses = 0
        return new

    @property
    def recurring(self) -> bool:
        """Whether the batch has been injected before (a ring's rounds, every all-reduce of
        a run): only then is finding its classes worth it. Counts this call as a use."""
        self._uses += 1
        return self._uses > 1

    @property
    def classes(self) -> FlowClasses:
        """The batch's flows in classes that evolve identically (found on first use)."""
        if self._classes is None:
            self._classes = FlowClasses(self)
        return self._classes


class FlowTable:
    """The pending and active flows of one network, as parallel arrays.

    ``pending`` is ``(end of latency, route, bytes, owner, tag, instant, weight)`` and
    ``active`` is ``(route, bytes left, bytes, rate, owner, tag, weight)``: a flow's sharing
    weight (1 unless the network draws one, see ``unfairness`` in :class:`sim.network.Network`)
    goes with it. ``first_due`` is the earliest end of a latency phase (``inf`` when none). A
    newly active flow has rate 1 until :meth:`set_rates`.

    A lock-step round added to an empty table (tagged by position, no weights of its own) is
    held as classes of identical flows instead (:mod:`sim.flow_classes`): same times, same
    events, a few Python floats per class; reading ``pending`` or ``active``, or adding other
    flows, first expands it into the arrays above (:meth:`expand`).
    """

    #: Whether rounds are held as classes (False: always the plain arrays; tests compare).
    compress = True

    def __init__(self) -> None:
        self._pending: Columns = _NO_PENDING
        self._active: Columns = _NO_ACTIVE
        self.first_due, self._last_due = math.inf, -math.inf
        self._instant = False  # some pending flow is delivered at the end of its latency
        # The one owner of all pending (all active) flows, or -1: saves a comparison.
        self._p_owner = self._a_owner = -1
        # A round held as classes: (batch, owner, tags, the batch's classes, read at every
        # event of the round), pending rows [class, end] and active rows [class, bytes left,
        # bytes, rate, activation wave]; None: the plain arrays.
        self._round: tuple[FlowBatch, int, np.ndarray, FlowClasses] | None = None
        self._rows_p: list[list[Any]] = []
        self._rows_a: list[list[Any]] = []
        self._wave = 0

    @property
    def pending(self) -> Columns:
        """The pending flows' columns (expands a round held as classes)."""
        if self._round is not None:
            self.expand()
        return self._pending

    @property
    def active(self) -> Columns:
        """The active flows' columns (expands a round held as classes)."""
        if self._round is not None:
            self.expand()
        return self._active

    @property
    def any_active(self) -> bool:
        """Whether some flow is transferring."""
        if self._round is not None:
            return bool(self._rows_a)
        return bool(self._active[1].size)

    @property
    def compressed(self) -> bool:
        """Whether the table holds a round as classes (:mod:`sim.flow_classes`)."""
        return self._round is not None

    def add(
        self,
        batch: FlowBatch,
        owner: int,
        tags: np.ndarray,
        now: float,
        weights: np.ndarray | None = None,
    ) -> None:
        """``batch`` starts its latency phase ``now``; its flows belong to ``owner`` and share
        links with ``weights`` (default 1 each)."""
        if self._round is not None:
            self.expand()
        elif (
            self.compress
            and weights is None
            and tags is batch.index
            and batch.size > 1
            and batch.recurring
            and batch.classes.worth
            and not self._pending[0].size
            and not self._active[0].size
        ):
            classes = batch.classes
            self._round = (batch, owner, tags, classes)
            self._rows_p = [[c, now + lat] for c, lat in enumerate(classes.latency)]
            self._rows_a = []
            self._p_owner, self._instant = owner, batch.any_instant
            self.first_due = min(self.first_due, now + batch.min_latency)
            self._last_due = max(self._last_due, now + batch.max_latency)
            return
        owners = np.empty(batch.size, np.int64)
        owners.fill(owner)  # np.full, without its Python wrapper
        weight = _ones(batch.size) if weights is None else weights
        new: Columns = (
            now + batch.latency,
            batch.routes,
            batch.nbytes,
            owners,
            tags,
            batch.instant,
            weight,
        )
        if self._pending[0].size:
            self._pending = tuple(map(np.concatenate, zip(self._pending, new)))
            self._p_owner = owner if self._p_owner == owner else -1
            self._instant = self._instant or batch.any_instant
        else:
            self._pending, self._p_owner, self._instant = new, owner, batch.any_instant
        # Rounding is monotonic, so these are exactly the extremes of the new end times.
        self.first_due = min(self.first_due, now + batch.min_latency)
        self._last_due = max(self._last_due, now + batch.max_latency)

    def next_event(self, t_last: float) -> float:
        """When the next flow ends its latency or its transfer (rates constant since ``t_last``)."""
        if self._round is not None:
            if self._rows_a:
                return min(self.first_due, t_last + min([r[1] / r[3] for r in self._rows_a]))
            return self.first_due
        rem, rate = self._active[1], self._active[3]
        if rem.size:
            return min(self.first_due, t_last + float(_min(rem / rate)))
        return self.first_due

    def progress(self, dt: float) -> None:
        """Active flows transfer for ``dt`` seconds at their rates."""
        if self._round is not None:
            for row in self._rows_a:
                row[1] = row[1] - row[3] * dt
            return
        route, rem, size, rate, owner, tag, weight = self._active
        self._active = (route, rem - rate * dt, size, rate, owner, tag, weight)

    def complete(self, now: float, finished: Finished) -> bool:
        """Remove the active flows that are done at ``now`` into ``finished``; True if any."""
        if self._round is not None:
            return self._complete_rows(now, finished)
        _, rem, size, rate, owner, tag, _ = self._active
        done = rem <= _DONE_FRACTION * size
        n_done = _count(done)
        if n_done < rem.size:
            done |= rem <= rate * (_DONE_CLOCK * now)
            n_done = _count(done)
        if n_done == rem.size:
            finished.append((owner, tag, self._a_owner))
            self._active = _NO_ACTIVE
        elif n_done:
            finished.append((owner[done], tag[done], self._a_owner))
            self._active = tuple(x[~done] for x in self._active)
        return bool(n_done)

    def activate(self, now: float, finished: Finished) -> bool:
        """End the latency phase of the flows due ``now``; the instant ones go to ``finished``.

        Returns True if flows became active (their rates must then be solved).
        """
        if self._round is not None:
            return self._activate_rows(now, finished)
        pending, sole, instants = self._pending, self._p_owner, self._instant
        if self._last_due <= now * DUE:  # all of them: the usual case
            self._pending, self.first_due, self._last_due = _NO_PENDING, math.inf, -math.inf
            self._p_owner, self._instant = -1, False
        else:
            due = pending[0] <= now * DUE
            self._pending = left = tuple(x[~due] for x in pending)
            self.first_due, self._last_due = float(_min(left[0])), float(_max(left[0]))
            self._instant = bool(_count(left[5]))
            pending = tuple(x[due] for x in pending)
        _, route, size, owner, tag, instant, weight = pending
        if instants and _count(instant):
            finished.append((owner[instant], tag[instant], sole))
            go = ~instant
            if not _count(go):
                return False
            route, size, owner, tag, weight = route[go], size[go], owner[go], tag[go], weight[go]
        new: Columns = (route, size, size, _ones(size.size), owner, tag, weight)
        if self._active[0].size:
            self._active = tuple(map(np.concatenate, zip(self._active, new)))
            self._a_owner = sole if self._a_owner == sole else -1
        else:
            self._active, self._a_owner = new, sole
        return True

    def set_rates(self, rates: np.ndarray) -> None:
        """The active flows' rates (in their order), until the next change."""
        self._active = (*self._active[:3], rates, *self._active[4:])

    def solve_rows(self, solver: Any) -> int | None:
        """Solve the rates of a round held as classes with ``solver`` (a
        :class:`~sim.maxmin.RateSolver`); return the pattern id, or None where the round
        turned out to have too many classes: it is then expanded, to be solved plain."""
        assert self._round is not None, "solve_rows needs a round held as classes"
        pattern = self._round[3].solve(solver, self._rows_a)
        if pattern is None:
            self.expand()
        return pattern

    # -- a round held as classes -------------------------------------------------------------

    def _members(self, rows: list[list[Any]]) -> np.ndarray:
        """The tags of the flows of ``rows``: their positions in the batch (a round held as
        classes is tagged by position), all of them where ``rows`` cover the batch."""
        classes = self._round[3]  # type: ignore[index]
        if len(rows) == len(classes.members):
            return self._round[2]  # type: ignore[index]
        return classes.union([r[0] for r in rows])

    def _complete_rows(self, now: float, finished: Finished) -> bool:
        rows = self._rows_a
        if not rows:
            return False
        _, owner, _, classes = self._round  # type: ignore[misc]
        # The plain table's tests, in its order: the second only where the first left some.
        flags = [r[1] <= _DONE_FRACTION * r[2] for r in rows]
        if not all(flags):
            clock = _DONE_CLOCK * now
            flags = [f or r[1] <= r[3] * clock for f, r in zip(flags, rows, strict=True)]
        done = [r for f, r in zip(flags, rows, strict=True) if f]
        if not done:
            return False
        tags = self._members(done)
        sole = self._a_owner  # the one owner: the dispatch never reads an array of it
        finished.append((classes.owners(owner)[: tags.size] if sole < 0 else None, tags, sole))
        if len(done) == len(rows):
            self._rows_a = []
        else:
            self._rows_a = [r for f, r in zip(flags, rows, strict=True) if not f]
        if not self._rows_a and not self._rows_p:
            self._round = None
            self._a_owner = -1
        return True

    def _activate_rows(self, now: float, finished: Finished) -> bool:
        _, owner, _, classes = self._round  # type: ignore[misc]
        sole, instants = self._p_owner, self._instant
        rows = self._rows_p
        limit = now * DUE
        if self._last_due <= limit:
            due, self._rows_p = rows, []
            self.first_due, self._last_due = math.inf, -math.inf
            self._p_owner, self._instant = -1, False
        else:
            due = [r for r in rows if r[1] <= limit]
            self._rows_p = left = [r for r in rows if r[1] > limit]
            self.first_due = min([r[1] for r in left])
            self._last_due = max([r[1] for r in left])
            self._instant = any(classes.instant[r[0]] for r in left)
        if instants:
            gone = [r for r in due if classes.instant[r[0]]]
            if gone:
                idx = self._members(gone)
                owners = classes.owners(owner)[: idx.size] if sole < 0 else None
                finished.append((owners, idx, sole))
                due = [r for r in due if not classes.instant[r[0]]]
                if not due:
                    if not self._rows_p and not self._rows_a:
                        self._round = None
                    return False
        wave = self._wave
        self._wave += 1
        fresh = [[r[0], classes.nbytes[r[0]], classes.nbytes[r[0]], 1.0, wave] for r in due]
        if self._rows_a:
            self._rows_a.extend(fresh)
            self._a_owner = sole if self._a_owner == sole else -1
        else:
            self._rows_a, self._a_owner = fresh, sole
        return True

    def expand(self) -> None:
        """Turn a round held as classes into the plain arrays, in the order the plain table
        holds its flows: pending ones in batch order, active ones by activation, then batch
        order."""
        if self._round is None:
            return
        batch, owner, tags, classes = self._round
        members = classes.members
        self._round = None
        if self._rows_p:
            idx = np.sort(np.concatenate([members[r[0]] for r in self._rows_p]))
            end = np.empty(batch.size)
            for c, t in self._rows_p:
                end[members[c]] = t
            owners = np.empty(idx.size, np.int64)
            owners.fill(owner)
            self._pending = (
                end[idx],
                batch.routes[idx],
                batch.nbytes[idx],
                owners,
                tags[idx],
                batch.instant[idx],
                _ones(idx.size),
            )
        else:
            self._pending = _NO_PENDING
        if self._rows_a:
            idx = np.concatenate([members[r[0]] for r in self._rows_a])
            wave = np.concatenate([np.full(members[r[0]].size, r[4]) for r in self._rows_a])
            idx = idx[np.lexsort((idx, wave))]
            rem, rate = np.empty(batch.size), np.empty(batch.size)
            for r in self._rows_a:
                rem[members[r[0]]] = r[1]
                rate[members[r[0]]] = r[3]
            owners = np.empty(idx.size, np.int64)
            owners.fill(owner)
            self._active = (
                batch.routes[idx],
                rem[idx],
                batch.nbytes[idx],
                rate[idx],
                owners,
                tags[idx],
                _ones(idx.size),
            )
        else:
            self._active = _NO_ACTIVE
        self._rows_p, self._rows_a = [], []

    def take(self, pending: np.ndarray, active: np.ndarray) -> tuple[Columns, Columns]:
        """Remove the pending and the active flows selected by boolean masks (link faults,
        crashed hosts) and return them, ``(pending columns, active columns)``.

        >>> import topologies
        >>> from sim.routing import Router
        >>> r = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
        >>> t = FlowTable()
        >>> t.add(FlowBatch(r, np.array([0, 1]), np.array([2, 2]), np.array([1.0, 2.0])), 1,
        ...       np.array([0, 1]), 0.0)
        >>> gone, _ = t.take(np.array([True, False]), np.zeros(0, bool))
        >>> gone[4].tolist(), t.pending[4].tolist(), t.first_due
        ([0], [1], 2e-06)
        """
        self.expand()
        pending_cols, active_cols = _NO_PENDING, _NO_ACTIVE
        if _count(pending):
            pending_cols = tuple(x[pending] for x in self._pending)
            self._pending = left = tuple(x[~pending] for x in self._pending)
            if left[0].size:
                self.first_due, self._last_due = float(_min(left[0])), float(_max(left[0]))
                self._instant = bool(_count(left[5]))
            else:
                self.first_due, self._last_due, self._instant = math.inf, -math.inf, False
                self._p_owner = -1
        if _count(active):
            active_cols = tuple(x[active] for x in self._active)
            self._active = tuple(x[~active] for x in self._active)
            if not self._active[0].size:
                self._a_owner = -1
        return pending_cols, active_cols

    def put(self, pending: Columns, active: Columns) -> None:
        """Bring back flows removed by :meth:`take` (their routes possibly changed): pending
        ones to their latency phase, active ones with the bytes they have left (rate 1 until
        :meth:`set_rates`)."""
        self.expand()
        if pending[0].size:
            if self._pending[0].size:
                self._pending = tuple(map(np.concatenate, zip(self._pending, pending)))
            else:
                self._pending = pending
            self._p_owner = -1  # unknown: the sole-owner shortcut is only an optimisation
            self._instant = self._instant or bool(_count(pending[5]))
            self.first_due = min(self.first_due, float(_min(pending[0])))
            self._last_due = max(self._last_due, float(_max(pending[0])))
        if active[0].size:
            route, rem, size, _, owner, tag, weight = active
            back = (route, rem, size, _ones(route.size), owner, tag, weight)
            if self._active[0].size:
                self._active = tuple(map(np.concatenate, zip(self._active, back)))
            else:
                self._active = back
            self._a_owner = -1
