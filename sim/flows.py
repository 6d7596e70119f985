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

import numpy as np

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

#: Flows that finished: (owners, tags, the one owner of them all or -1).
Finished = list[tuple[np.ndarray, np.ndarray, int]]


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


class FlowTable:
    """The pending and active flows of one network, as parallel arrays.

    ``pending`` is ``(end of latency, route, bytes, owner, tag, instant, weight)`` and
    ``active`` is ``(route, bytes left, bytes, rate, owner, tag, weight)``: a flow's sharing
    weight (1 unless the network draws one, see ``unfairness`` in :class:`sim.network.Network`)
    goes with it. ``first_due`` is the earliest end of a latency phase (``inf`` when none). A
    newly active flow has rate 1 until :meth:`set_rates`.
    """

    def __init__(self) -> None:
        self.pending: Columns = _NO_PENDING
        self.active: Columns = _NO_ACTIVE
        self.first_due, self._last_due = math.inf, -math.inf
        self._instant = False  # some pending flow is delivered at the end of its latency
        # The one owner of all pending (all active) flows, or -1: saves a comparison.
        self._p_owner = self._a_owner = -1

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
        if self.pending[0].size:
            self.pending = tuple(map(np.concatenate, zip(self.pending, new)))
            self._p_owner = owner if self._p_owner == owner else -1
            self._instant = self._instant or batch.any_instant
        else:
            self.pending, self._p_owner, self._instant = new, owner, batch.any_instant
        # Rounding is monotonic, so these are exactly the extremes of the new end times.
        self.first_due = min(self.first_due, now + batch.min_latency)
        self._last_due = max(self._last_due, now + batch.max_latency)

    def next_event(self, t_last: float) -> float:
        """When the next flow ends its latency or its transfer (rates constant since ``t_last``)."""
        rem, rate = self.active[1], self.active[3]
        if rem.size:
            return min(self.first_due, t_last + float(_min(rem / rate)))
        return self.first_due

    def progress(self, dt: float) -> None:
        """Active flows transfer for ``dt`` seconds at their rates."""
        route, rem, size, rate, owner, tag, weight = self.active
        self.active = (route, rem - rate * dt, size, rate, owner, tag, weight)

    def complete(self, now: float, finished: Finished) -> bool:
        """Remove the active flows that are done at ``now`` into ``finished``; True if any."""
        _, rem, size, rate, owner, tag, _ = self.active
        done = rem <= _DONE_FRACTION * size
        n_done = _count(done)
        if n_done < rem.size:
            done |= rem <= rate * (_DONE_CLOCK * now)
            n_done = _count(done)
        if n_done == rem.size:
            finished.append((owner, tag, self._a_owner))
            self.active = _NO_ACTIVE
        elif n_done:
            finished.append((owner[done], tag[done], self._a_owner))
            self.active = tuple(x[~done] for x in self.active)
        return bool(n_done)

    def activate(self, now: float, finished: Finished) -> bool:
        """End the latency phase of the flows due ``now``; the instant ones go to ``finished``.

        Returns True if flows became active (their rates must then be solved).
        """
        pending, sole, instants = self.pending, self._p_owner, self._instant
        if self._last_due <= now * DUE:  # all of them: the usual case
            self.pending, self.first_due, self._last_due = _NO_PENDING, math.inf, -math.inf
            self._p_owner, self._instant = -1, False
        else:
            due = pending[0] <= now * DUE
            self.pending = left = tuple(x[~due] for x in pending)
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
        if self.active[0].size:
            self.active = tuple(map(np.concatenate, zip(self.active, new)))
            self._a_owner = sole if self._a_owner == sole else -1
        else:
            self.active, self._a_owner = new, sole
        return True

    def set_rates(self, rates: np.ndarray) -> None:
        """The active flows' rates (in their order), until the next change."""
        self.active = (*self.active[:3], rates, *self.active[4:])

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
        pending_cols, active_cols = _NO_PENDING, _NO_ACTIVE
        if _count(pending):
            pending_cols = tuple(x[pending] for x in self.pending)
            self.pending = left = tuple(x[~pending] for x in self.pending)
            if left[0].size:
                self.first_due, self._last_due = float(_min(left[0])), float(_max(left[0]))
                self._instant = bool(_count(left[5]))
            else:
                self.first_due, self._last_due, self._instant = math.inf, -math.inf, False
                self._p_owner = -1
        if _count(active):
            active_cols = tuple(x[active] for x in self.active)
            self.active = tuple(x[~active] for x in self.active)
            if not self.active[0].size:
                self._a_owner = -1
        return pending_cols, active_cols

    def put(self, pending: Columns, active: Columns) -> None:
        """Bring back flows removed by :meth:`take` (their routes possibly changed): pending
        ones to their latency phase, active ones with the bytes they have left (rate 1 until
        :meth:`set_rates`)."""
        if pending[0].size:
            if self.pending[0].size:
                self.pending = tuple(map(np.concatenate, zip(self.pending, pending)))
            else:
                self.pending = pending
            self._p_owner = -1  # unknown: the sole-owner shortcut is only an optimisation
            self._instant = self._instant or bool(_count(pending[5]))
            self.first_due = min(self.first_due, float(_min(pending[0])))
            self._last_due = max(self._last_due, float(_max(pending[0])))
        if active[0].size:
            route, rem, size, _, owner, tag, weight = active
            back = (route, rem, size, _ones(route.size), owner, tag, weight)
            if self.active[0].size:
                self.active = tuple(map(np.concatenate, zip(self.active, back)))
            else:
                self.active = back
            self._a_owner = -1
