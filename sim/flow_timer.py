"""The one SimPy timer that moves a network's flows through simulated time.

No SimPy process exists per flow: the flows live in a :class:`~sim.flows.FlowTable`, and a
single pending timer wakes the network at the next activation or completion. Flows that start
or finish at the same instant are handled as one batch, with one solve of the rates. A timer
made stale by newer traffic (an earlier event became due) is recognised by its generation
number and ignored. :class:`sim.network.Network` owns one :class:`FlowTimer`, tells it of new
flows (:meth:`FlowTimer.schedule`) and reads how far the flows have been brought
(:attr:`FlowTimer.t_last`).

A timer whose next event SimPy would process next anyway (strictly before every queued event,
and not past :attr:`FlowTimer.horizon`) is processed in place, at the time SimPy would give it:
nothing can happen in between, so the times, the order of everything else and every number are
those of the queue; a collective's rounds on an otherwise quiet simulation then cost no SimPy
event each. The first event queued before it (another rank's compute, a fault, a stop) sends
the timer back through the queue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import simpy

from sim.flows import DUE, Finished, FlowTable
from sim.linkstats import LinkStats
from sim.maxmin import RateSolver

__all__ = ["FlowTimer"]


class FlowTimer:
    """Advances ``flows`` to each event, re-solves their rates and reports who finished.

    Parameters
    ----------
    env : simpy.Environment
        The simulation clock.
    flows : FlowTable
        The network's flows in flight.
    solver : RateSolver
        Shares the links among the transferring flows.
    stats : LinkStats
        Logs each interval's rate pattern, when ``record``.
    dispatch : callable
        Called with the flows that finished at an instant, once per instant.
    weighted : bool
        Whether flows carry drawn weights (``unfairness > 0``): then rates are solved by
        weighted max-min.
    record : bool
        Whether to log the rate history into ``stats``.

    Examples
    --------
    One 1 kB message on a 1 GB/s star with 1 us links: the timer first wakes when its two
    links' latency is over, then when its transfer ends.

    >>> import simpy, topologies
    >>> from sim.network import Network
    >>> env = simpy.Environment()
    >>> net = Network(env, topologies.star(2, bandwidth=1e9, latency=1e-6))
    >>> done = net.send(0, 1, 1e3)
    >>> env.run(until=2.5e-6); net.timer.t_last, done.triggered
    (2e-06, False)
    >>> env.run(); net.timer.t_last, done.value
    (3e-06, 3e-06)
    """

    def __init__(
        self,
        env: simpy.Environment,
        flows: FlowTable,
        solver: RateSolver,
        stats: LinkStats,
        dispatch: Callable[[Finished], None],
        weighted: bool,
        record: bool,
    ) -> None:
        self.env, self.flows, self.solver, self.stats = env, flows, solver, stats
        self.dispatch, self.weighted, self.record = dispatch, weighted, record
        #: The time the flows have been brought to (the last network event).
        self.t_last = env.now
        #: Whether the timer is handling an instant (new flows then wait for its end).
        self.busy = False
        self._pattern = -1
        self._dirty = False
        self._gen = 0
        self._timer_at = math.inf
        # SimPy's event heap, whose head is what Environment.peek returns: one list for the
        # environment's life, filled and emptied in place. A SimPy without it (its internals
        # are not API) sends every timer through the queue, which gives the same numbers.
        self._queue: list[Any] | None = getattr(env, "_queue", None)
        #: The latest time a timer may be processed without going through SimPy's queue: a
        #: run that stops at ``max_time`` never processes events after it (``sim.run`` sets it).
        self.horizon = math.inf
        #: Timer events processed in place (see :meth:`_fire`), for tests and profiles.
        self.inlined = 0

    def schedule(self) -> None:
        """Set the timer for the flows' next event, unless one is set for then or earlier."""
        t = self.flows.next_event(self.t_last)
        if t >= self._timer_at or t == math.inf:
            return
        self._gen += 1
        self._timer_at = t
        timer = self.env.timeout(max(t - self.env.now, 0.0))
        timer.callbacks.append(partial(self._fire, self._gen))

    def _fire(self, gen: int, _: simpy.Event) -> None:
        if gen != self._gen:
            return  # superseded by a timer set for newer traffic
        env = self.env
        while True:
            self._timer_at = math.inf
            self.busy = True
            try:
                while self._advance():
                    pass
                if self._dirty:
                    self._solve()
            finally:
                self.busy = False
            at = self._next_inline()
            if at is None:
                self.schedule()
                return
            # The timer ``schedule`` would set is the next event SimPy would process: process
            # it here, at the time SimPy would give it (one event fewer through the queue).
            self._gen += 1
            env._now = at  # noqa: SLF001 -- what Environment.step does when it pops it
            self.inlined += 1

    def _next_inline(self) -> float | None:
        """The time of the timer :meth:`schedule` would set now, if SimPy would process it
        next with nothing in between: strictly before every queued event (a queued event at
        the same time goes first: it was made earlier) and not past :attr:`horizon`; else
        None."""
        t = self.flows.next_event(self.t_last)
        if t == math.inf:
            return None
        now = self.env.now
        delay = t - now
        # Environment.schedule's sum, rounded as it rounds it: now + max(t - now, 0.0), with
        # max's choice (the first of two equal values) written as a comparison.
        at = now + (0.0 if 0.0 > delay else delay)
        queue = self._queue
        if queue is None or (queue and at >= queue[0][0]) or at > self.horizon:
            return None
        return at

    def apply(self, change: Callable[[], None]) -> None:
        """Run ``change`` (it removes, moves or brings back flows, or changes capacities) at
        ``now``, with the flows brought to ``now`` first and their rates solved after.

        Called by a link fault, a crashed host or a cancelled operation. Within an instant the
        timer is handling (an owner told of finished flows fails an operation), the change is
        made at once and the instant's end solves the rates with the rest.
        """
        self.flows.expand()  # a change reads and rewrites the flows' arrays
        if self.busy:
            change()
            self._dirty = True
            return
        now, flows = self.env.now, self.flows
        if flows.any_active and now > self.t_last:
            flows.progress(now - self.t_last)
            if self.record:
                self.stats.log(self.t_last, now, self._pattern)
        self.t_last = now
        self.busy = True
        try:
            change()
            self._solve()
        finally:
            self.busy = False
        self._timer_at = math.inf  # the next event may now be later than the timer set
        self.schedule()

    def _solve(self) -> None:
        """Solve the active flows' rates (after a change to them)."""
        self._dirty = False
        if self.flows.compressed:
            if not self.flows.any_active:
                self._pattern = -1
                return
            pattern = self.flows.solve_rows(self.solver)
            if pattern is not None:
                self._pattern = pattern
                return
        route = self.flows.active[0]
        if route.size:
            if self.weighted:
                solved = self.solver.solve_weighted(route, self.flows.active[6])
            else:
                solved = self.solver.solve(route)
            rates, self._pattern = solved
            self.flows.set_rates(rates)
        else:
            self._pattern = -1

    def _advance(self) -> bool:
        """Bring flows to ``now``; finish and start what is due. True if new flows became due."""
        now = self.env.now
        flows = self.flows
        finished: Finished = []
        if flows.any_active:
            if now > self.t_last:
                flows.progress(now - self.t_last)
                if self.record:
                    self.stats.log(self.t_last, now, self._pattern)
            if flows.complete(now, finished):
                self._dirty = True
        self.t_last = now
        if flows.first_due <= now * DUE and flows.activate(now, finished):
            self._dirty = True
        if finished:
            self.dispatch(finished)
        return flows.first_due <= now * DUE
