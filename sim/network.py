"""The simulated network: flows on routes sharing links, driven by one SimPy timer.

A message is a flow. It first spends its route's latency (using no bandwidth, SimGrid's
convention), then transfers while every transferring flow shares each directed link by max-min
fairness, re-solved whenever a flow starts or finishes. No SimPy process exists per flow: the
flows live in numpy arrays, flows that start or finish at the same instant are handled as one
batch (one solve), and a single pending timer wakes the network at the next activation or
completion (:class:`~sim.flow_timer.FlowTimer`); a timer made stale by newer traffic is
recognised by its generation number and ignored. The flows themselves are kept by a :class:`~sim.flows.FlowTable`; a collective's
rounds are routed once per plan (:class:`~sim.flows.FlowBatch`).

Examples
--------
Two hosts on a star send to the same host; they share its downlink, so both take twice as long:

>>> import simpy, topologies
>>> env = simpy.Environment()
>>> net = Network(env, topologies.star(3, bandwidth=1e9, latency=1e-6))
>>> a, b = net.send(0, 2, 1e6), net.send(1, 2, 1e6)
>>> env.run()
>>> round(a.value * 1e6, 6), round(b.value * 1e6, 6), net.bytes_sent, net.flows_simulated
(2002.0, 2002.0, 2000000.0, 2)

Faults (see :meth:`Network.set_link`, :meth:`Network.drop_rank`, :meth:`Network.cancel`): a
slowed link changes the rates at once; a failed link stalls the flows that cross it until they
are rerouted ``reroute_delay`` seconds later; where no live route is left they wait for the
link to come back (as TCP does), and fail their operations with :class:`LinkFailure` only once
their ranks have been cut off :attr:`Network.detect` seconds (a heartbeat timeout); a crashed
host's flows stop and their operations fail with :class:`RankDown`. A run without faults
never reads any of this.

>>> env = simpy.Environment()
>>> net = Network(env, topologies.star(2, bandwidth=1e9, latency=1e-6))
>>> done = net.send(0, 1, 1e6)  # 1 ms at full rate ...
>>> env.run(until=502e-6); net.set_link(0, "s0", 0.5)  # half done at 0.5 ms: half rate
>>> env.run(); round(done.value * 1e6, 6)
1502.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Real
from typing import TypeGuard

import networkx as nx
import numpy as np
import pandas as pd
import simpy

import topologies
from sim.collectives.schedule import PACES, CollectiveRun
from sim.collectives.select import Planner
from sim.flow_timer import FlowTimer
from sim.flows import Finished, FlowBatch, FlowTable
from sim.linkstats import LinkStats
from sim.maxmin import MODELS, SHARINGS, RateSolver
from sim.network_faults import (
    Held,
    LinkStates,
    Select,
    Stall,
    check_delay,
    check_factor,
    check_reroute_delay,
    fail_quietly,
)
from sim.routing import ROUTINGS, LinkFailure, NetworkError, RankDown, Router, check_routing

__all__ = [
    "ROUTINGS",
    "LinkFailure",
    "Network",
    "NetworkError",
    "RankDown",
    "check_efficiency",
    "check_nbytes",
    "check_routing",
    "check_unfairness",
    "fold_runs",
]

Owner = Callable[[np.ndarray], None]
#: Mixed into the seed of the flows' weights ("net"), apart from the run's other streams.
_WEIGHT_STREAM = 0x6E6574


def _finite(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite real number (a bool is not one here)."""
    return not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)


def check_nbytes(nbytes: object, name: str = "nbytes") -> float:
    """Return ``nbytes`` as a float, or raise a one-line :class:`NetworkError` naming it.

    >>> check_nbytes(-1)
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: nbytes must be a finite number >= 0 (bytes), got -1
    """
    if not _finite(nbytes) or nbytes < 0:
        raise NetworkError(f"{name} must be a finite number >= 0 (bytes), got {nbytes!r}")
    return float(nbytes)


def check_efficiency(value: object, name: str) -> float:
    """Return a payload fraction in (0, 1], or raise a one-line :class:`NetworkError`.

    >>> check_efficiency(1.2, "efficiency")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: efficiency must be in (0, 1] (payload / wire bytes), got 1.2
    """
    if not _finite(value) or not 0 < value <= 1:
        raise NetworkError(f"{name} must be in (0, 1] (payload / wire bytes), got {value!r}")
    return float(value)


def check_unfairness(value: object, name: str) -> float:
    """Return a flow-weight spread >= 0, or raise a one-line :class:`NetworkError`.

    >>> check_unfairness(-0.1, "unfairness")
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: unfairness must be a finite number >= 0 (0: max-min fair), got -0.1
    """
    if not _finite(value) or value < 0:
        raise NetworkError(f"{name} must be a finite number >= 0 (0: max-min fair), got {value!r}")
    return float(value)


def fold_runs(total: np.ndarray, runs: list[list]) -> np.ndarray:
    """``total`` plus each run's array as many times as it says, one addition at a time, as
    ``total += array`` would leave it, bit for bit.

    A rank's sum depends only on its start and on what it adds, so ranks with the same pair
    are summed once, as Python floats (IEEE additions, as numpy's); where the pairs are many,
    the arrays are added whole.

    >>> fold_runs(np.zeros(3), [[np.array([0.1, 0.1, 1.0]), 3]]).tolist()
    [0.30000000000000004, 0.30000000000000004, 3.0]
    """
    total = total.copy()
    for add, times in runs:
        pairs, inverse = np.unique(np.stack((total, add)), axis=1, return_inverse=True)
        if times == 1 or pairs.shape[1] > 64:
            for _ in range(times):
                total += add
            continue
        sums = []
        for start, step in pairs.T.tolist():
            for _ in range(times):
                start += step
            sums.append(start)
        total = np.asarray(sums)[inverse.reshape(-1)]
    return total


class Network:
    """Flow-level (or analytic) network shared by every operation of one SimPy simulation.

    Parameters
    ----------
    env : simpy.Environment
        The simulation clock.
    topology : nx.Graph or nx.DiGraph
        A topology (see :mod:`topologies`); it is validated.
    model : {"flow", "analytic"}
        ``"flow"``: max-min sharing of links. ``"analytic"``: alpha-beta per message (route
        latency + bytes / bottleneck bandwidth), no contention; link loads may then exceed 1.
    sharing : {"maxmin", "rtt"}
        Fair shares, or shares weighted by 1 / route latency (SimGrid's TCP-like policy).
    efficiency : float
        Payload fraction of every link's bandwidth that has no ``efficiency`` attribute of its
        own, in (0, 1]: what the protocols' headers leave (1: none). TCP/IP over Ethernet
        sends 1514 wire bytes per 1448 payload bytes, plus acknowledgements: a tbf-shaped
        link was measured at 0.947-0.958 (``commsim calibrate`` fits it).
    collectives : dict, optional
        The algorithm ``auto`` stands for, per collective (``{"all_reduce": "ring"}``): what
        the real library runs, as ``commsim calibrate`` finds it; others follow the rule.
    unfairness : float
        How unevenly flows that meet at a bottleneck share it, >= 0 (0: max-min fair, they
        finish together). Real TCP flows do not: a server's concurrent sends to three workers
        finish up to a third of the transfer apart, so the first worker computes while the
        others still receive. Each flow draws a weight ``exp(unfairness * z)``, ``z`` standard
        normal, once, from ``seed``; links are shared by weighted max-min (each flow gets its
        weight times the bottleneck's level). ``commsim calibrate`` fits it from concurrent
        sends. Flows that share a link are then solved at every change, not from the cache
        (a ring collective, one flow per link, is not affected).
    routing : {"ecmp", "spray", "single", "dmodk"}
        How flows use a fabric's equal-cost paths (see :mod:`sim.routing`): ``ecmp`` (the
        default) hashes each flow onto one of them, from ``seed``, the ranks and the flow's
        connection (a collective's channel), as switches hash a 5-tuple; ``spray`` splits every
        flow evenly over all of them (packet spraying, adaptive routing at its ideal);
        ``single`` sends every flow of a pair down the one path of the deterministic
        tie-break (the routing before ``ecmp`` existed: on a fat tree all traffic between pods
        then crosses one core switch). On a topology with one shortest path per pair (a star,
        a tree) the three are the same, bit for bit. ``dmodk`` (fat trees only) picks each
        pair's path from the destination's index, as SimGrid's fat-tree zone does.
    seed : int
        Seeds the flows' weights (only drawn when ``unfairness > 0``) and ``ecmp``'s flow hash.
    record : bool
        Keep the rate history needed by :meth:`link_stats` and :meth:`utilisation`.

    Attributes
    ----------
    reroute_delay : float
        Seconds from a link's failure to the rerouting of the flows that crossed it (the
        fabric's convergence time; default 0.5), read when a link goes down.
    detect : float
        Seconds two ranks left without a live route wait for one before their operations
        fail with :class:`LinkFailure` (a heartbeat timeout; default 3, as
        :class:`faults.FaultSchedule`'s ``detect``), read when a link goes down.
    bytes_sent : float
        Payload bytes moved or in flight: bytes are counted as flows are injected, and the
        bytes a flow never moved are taken back when a fault removes it (a failed, dropped or
        cancelled operation counts only what it moved).
    """

    def __init__(
        self,
        env: simpy.Environment,
        topology: nx.Graph,
        model: str = "flow",
        sharing: str = "maxmin",
        efficiency: float = 1.0,
        collectives: Mapping[str, str] | None = None,
        unfairness: float = 0.0,
        seed: int = 0,
        record: bool = True,
        routing: str = "ecmp",
    ) -> None:
        if model not in MODELS:
            raise NetworkError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if sharing not in SHARINGS:
            raise NetworkError(f"sharing must be one of {', '.join(SHARINGS)}, got {sharing!r}")
        check_efficiency(efficiency, "efficiency")
        self.routing = check_routing(routing)
        self.unfairness = check_unfairness(unfairness, "unfairness")
        # Its own stream: drawing weights must not shift any other seeded draw of the run.
        self._weights = np.random.default_rng([seed, _WEIGHT_STREAM])
        try:
            topologies.validate(topology)
        except topologies.TopologyError as err:
            raise NetworkError(f"topology is invalid: {err}") from err
        self.env, self.topology, self.model, self.sharing = env, topology, model, sharing
        self.router = r = Router(topology, efficiency, routing, seed)
        self.solver = RateSolver(
            r.route_links,
            r.capacity,
            lambda: r.route_latency,
            lambda: r.route_bottleneck,
            model,
            sharing,
            r.route_share if routing == "spray" else None,
        )
        self.record = record
        self.stats = LinkStats(r, self.solver.patterns)
        self.planner = Planner(r, collectives)
        self.n_ranks = r.n_hosts
        self.bytes_sent = 0.0
        self._per_rank = np.zeros(r.n_hosts)
        # Batches injected since ``_per_rank`` was last brought up to date, as runs
        # [per-rank bytes, times in a row]: a round of 131,072 ranks adds no per-rank pass.
        self._sent_runs: list[list] = []
        self.flows_simulated = 0
        self._start = env.now
        self.flows = FlowTable()
        self.timer = FlowTimer(
            env, self.flows, self.solver, self.stats, self._dispatch, bool(unfairness), record
        )
        self._owners: list[Owner | None] = [self._deliver]
        self._events: dict[int, simpy.Event] = {}
        self._next_tag = 0
        # Faults: collectives in flight by their owners' ids, faulty links, stalled flows.
        self._runs: dict[int, CollectiveRun] = {}
        self._links = LinkStates()
        self._stalls: list[Stall] = []
        self._held: list[Held] = []
        self.reroute_delay = 0.5
        self.detect = 3.0

    # -- public operations ------------------------------------------------------------------

    def send(self, src: int, dst: int, nbytes: float, *, connection: int = 0) -> simpy.Event:
        """Send ``nbytes`` from rank ``src`` to rank ``dst``; the event fires at delivery.

        Its value is the delivery time. ``src == dst`` delivers after 0 s without touching the
        network; ``nbytes == 0`` costs the route latency only. ``connection`` labels the
        connection the message goes on (``ecmp`` hashes it: another connection between the
        same ranks may take another path; the messages of one all take the same).
        """
        src, dst = self.check_rank(src, "src"), self.check_rank(dst, "dst")
        size = check_nbytes(nbytes)
        if (
            isinstance(connection, bool)
            or not isinstance(connection, (int, np.integer))
            or connection < 0
        ):
            raise NetworkError(f"connection must be an int >= 0, got {connection!r}")
        if src == dst:
            return self.env.timeout(0, value=self.env.now)
        try:
            flow = FlowBatch(
                self.router, np.array([src]), np.array([dst]), np.array([size]), int(connection)
            )
        except LinkFailure as exc:  # the links down cut every path: it waits for one
            tag = self._next_tag
            self._next_tag += 1
            event = self._events[tag] = self.env.event()
            retry = functools.partial(self._start_send, tag, src, dst, size, int(connection))
            self.hold(exc, retry, tag, (src, dst))
            return event
        tag = self._next_tag
        self._next_tag += 1
        event = self._events[tag] = self.env.event()
        self.inject(flow, 0, np.array([tag]))
        return event

    def _start_send(self, tag: int, src: int, dst: int, size: float, connection: int) -> None:
        """Inject send ``tag`` while links are down: held while no live route connects its
        ranks (:meth:`_hold`)."""
        if tag not in self._events:  # failed or cancelled while it was held
            return
        try:
            flow = FlowBatch(
                self.router, np.array([src]), np.array([dst]), np.array([size]), connection
            )
        except LinkFailure as exc:
            retry = functools.partial(self._start_send, tag, src, dst, size, connection)
            self.hold(exc, retry, tag, (src, dst))
            return
        self.inject(flow, 0, np.array([tag]))

    def collective(
        self,
        op: str,
        nbytes: float,
        *,
        ranks: Iterable[int] | None = None,
        algorithm: str = "auto",
        root: int | None = None,
        pace: str = "step",
    ) -> simpy.Event:
        """Run collective ``op`` as point-to-point flows; the event fires when all ranks finish.

        ``nbytes`` is the full buffer size per rank (see :func:`sim.collective_time`). The
        event's value maps each rank to the time it finished its part (its last message).
        ``pace="step"`` (default) runs lock-step rounds: a round's messages start together once
        the previous round is delivered, so a round is one batch. ``pace="rank"`` lets every
        rank move on as soon as its own messages allow (the algorithm's exact dependencies);
        it simulates many more events where route latencies differ (a ring on a fat tree:
        ~100x slower), costs about what ``"step"`` does where every rank enters each step at
        once (a hierarchical all-reduce), and equals ``"step"`` for ring algorithms on
        homogeneous fabrics.
        """
        size = check_nbytes(nbytes)
        if pace not in PACES:
            raise NetworkError(f"pace must be one of {', '.join(PACES)}, got {pace!r}")
        event = self.env.event()
        if ranks is not None:
            ranks = list(ranks)
        self._start_collective(event, op, size, ranks, algorithm, root, pace)
        return event

    def _start_collective(
        self,
        event: simpy.Event,
        op: str,
        size: float,
        ranks: list[int] | None,
        algorithm: str,
        root: int | None,
        pace: str,
    ) -> None:
        """Plan and start the collective of ``event``; held while a rule that reads the
        routes finds none (:meth:`_hold`)."""
        if event.triggered:  # failed or cancelled while it was held
            return
        try:
            channels, members = self.planner.plan(op, size, ranks, algorithm, root)
        except LinkFailure as exc:  # a rule that reads the routes found none
            retry = functools.partial(
                self._start_collective, event, op, size, ranks, algorithm, root, pace
            )
            every = tuple(range(self.n_ranks)) if ranks is None else tuple(ranks)
            self.hold(exc, retry, event, every)
            return
        CollectiveRun(self, channels, members, event, pace)

    def check_rank(self, rank: object, name: str = "rank") -> int:
        """Return ``rank`` as an int, or raise a one-line :class:`NetworkError` naming it."""
        if (
            isinstance(rank, bool)
            or not isinstance(rank, (int, np.integer))
            or not 0 <= rank < self.n_ranks
        ):
            raise NetworkError(f"{name} must be a host rank in 0..{self.n_ranks - 1}, got {rank!r}")
        return int(rank)

    @property
    def bytes_sent_per_rank(self) -> np.ndarray:
        """Payload bytes injected by each rank so far (see :attr:`bytes_sent`)."""
        if self._sent_runs:
            self._per_rank = fold_runs(self._per_rank, self._sent_runs)
            self._sent_runs = []
        return self._per_rank

    @bytes_sent_per_rank.setter
    def bytes_sent_per_rank(self, value: np.ndarray) -> None:
        self._sent_runs = []  # ``value`` was read through the getter: it has them
        self._per_rank = value

    def bytes_sent_by(self, rank: int) -> float:
        """Payload bytes injected by ``rank`` so far."""
        return float(self.bytes_sent_per_rank[self.check_rank(rank)])

    def link_stats(self) -> pd.DataFrame:
        """Per directed link ``(u, v)``: capacity, bytes carried, busy time, mean utilisation.

        Utilisation is bytes carried / (bandwidth x elapsed simulated time). Counts flows'
        transfer up to the last network event (a flow still in flight is counted so far).
        """
        return self.stats.table(self._start, self.timer.t_last)

    def utilisation(self, start: float, end: float) -> pd.Series:
        """Mean utilisation of each directed link over simulated times ``[start, end]``."""
        return self.stats.utilisation(start, end)

    # -- batch interface used by collectives -------------------------------------------------

    def register(self, owner: Owner, run: CollectiveRun | None = None) -> int:
        """Register a completion callback (called with the finished flows' tags); return its id.

        ``run`` is the collective the owner's flows belong to: a fault that hits one of them
        fails it (:meth:`fail_collective`).
        """
        self._owners.append(owner)
        if run is not None:
            self._runs[len(self._owners) - 1] = run
        return len(self._owners) - 1

    def unregister(self, owner_id: int) -> None:
        """Forget an owner whose flows have all finished."""
        self._owners[owner_id] = None
        self._runs.pop(owner_id, None)

    def inject(self, batch: FlowBatch, owner: int, tags: np.ndarray) -> None:
        """Start the flows of ``batch`` now; ``owner`` is told their ``tags`` as they finish."""
        weights = None
        if self.unfairness:
            weights = np.exp(self.unfairness * self._weights.standard_normal(batch.size))
        self.flows.add(batch, owner, tags, self.env.now, weights)
        self.bytes_sent += batch.total
        runs = self._sent_runs
        if runs and runs[-1][0] is batch.per_rank:
            runs[-1][1] += 1
        else:
            runs.append([batch.per_rank, 1])
        self.flows_simulated += batch.size
        if not self.timer.busy:  # else the instant's end schedules them with the rest
            self.timer.schedule()

    # -- faults ------------------------------------------------------------------------------

    def set_link(self, u: object, v: object, factor: float) -> None:
        """From now on the link between nodes ``u`` and ``v`` (both directions) carries
        ``factor`` times its bandwidth.

        ``0 < factor < 1`` slows it: the flows' rates change at once. ``factor == 0`` takes it
        down: routes are found anew without it (every routing mode chooses among the live
        paths; ``dmodk`` falls back to the shortest live path where its own crosses a down
        link); every flow whose route crosses it stalls (rate 0, or its latency phase held)
        and :attr:`reroute_delay` seconds later goes on with the bytes it has left on a new
        route. Where no live route is left then, it waits: it goes on once a link comes back
        that gives it one, and its operation fails with :class:`LinkFailure` only once its
        two ranks have been without a live route for :attr:`detect` seconds (a heartbeat
        timeout: as over TCP, a transient outage delays an operation, a lasting one fails
        it). An operation that starts while no live route connects its ranks waits the same
        way (fails at once if they have been cut off ``detect`` seconds already); with one it
        takes it. ``factor > 0`` brings a down link back: routes found from now on may use it
        again; stalled flows whose own route is live again go on on it at once (no
        retransmission delay is modelled), those that found no route at their reroute are
        routed anew, held operations start, and flows already moved stay where they are. Link
        statistics keep measuring against the nominal bandwidth.
        """
        ids = tuple(sorted(self.router.link_ids(u, v)))  # one key for either naming
        factor = check_factor(factor)
        old = self._links.factor(ids)
        if factor == old:
            return
        delay = check_reroute_delay(self.reroute_delay) if factor == 0 else 0.0
        detect = check_delay(self.detect, "detect") if factor == 0 else 0.0

        def change() -> None:
            self._links.set(ids, (u, v), factor, float(self.env.now))
            if self._links.nominal:
                self.solver.set_capacity(self.router.capacity, nominal=True)
            else:
                self.solver.set_capacity(self._links.capacity(self.router.capacity))
            if (factor == 0) != (old == 0):
                self.router.set_down(self._links.down_edges)
            if factor == 0:
                self._stall(ids, delay)
            elif old == 0:
                self._restored()

        self.timer.apply(change)
        if factor == 0:  # where it cuts ranks off, they are given up on then
            self.env.timeout(detect).callbacks.append(lambda _: self._give_up())

    def drop_rank(self, rank: int) -> None:
        """A crashed host: every flow from or to ``rank`` stops at once (it frees its links),
        and the operations they belong to fail with :class:`RankDown`, as does every
        collective in flight with ``rank`` among its members (a collective with a dead member
        cannot complete; NCCL aborts it). Operations started later are not refused."""
        rank = self.check_rank(rank)

        def change() -> None:
            ends = self.router.route_ends
            sends: dict[int, Exception | None] = {}
            runs: dict[CollectiveRun, Exception | None] = {}
            for routes, owner, tag in self._flow_groups():
                hit = (ends[routes, 0] == rank) | (ends[routes, 1] == rank)
                for o, t in zip(owner[hit].tolist(), tag[hit].tolist(), strict=True):
                    self._group(o, t, RankDown(rank), sends, runs)
            for run in self._runs.values():
                if run not in runs and rank in run.members:
                    runs[run] = RankDown(rank)
            for held in list(self._held):
                if rank in held.members:
                    self._fail_held(held.key, RankDown(rank), sends, runs)
            self._fail(sends, runs)

        self.timer.apply(change)

    def cancel(self, event: simpy.Event) -> bool:
        """Remove the flows of the send or collective whose event is ``event``, without
        firing it (it never fires). Returns False where ``event`` is no operation in flight
        here (finished, failed or cancelled already: nothing to do). The bytes its flows
        never moved are taken back from :attr:`bytes_sent`."""
        sends: dict[int, Exception | None] = {
            tag: None for tag, ev in self._events.items() if ev is event
        }
        runs: dict[CollectiveRun, Exception | None] = {
            run: None for run in self._runs.values() if run.event is event
        }
        unplanned = [held for held in self._held if held.key is event]
        if unplanned:  # a collective held before it could be planned: forget it
            self._held = [held for held in self._held if held.key is not event]
            return True
        if not sends and not runs:
            return False
        self.timer.apply(lambda: self._fail(sends, runs))
        return True

    def fail_collective(self, run: CollectiveRun, exc: Exception) -> None:
        """Fail collective ``run`` with ``exc`` and remove its flows (a round of it found no
        live route)."""
        self.timer.apply(lambda: self._fail({}, {run: exc}))

    def _flow_groups(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(routes, owners, tags)`` of the flows in the table and of the stalled flows."""
        pending, active = self.flows.pending, self.flows.active
        groups = [(pending[1], pending[3], pending[4]), (active[0], active[4], active[5])]
        for stall in self._stalls:
            groups += stall.flows()
        return groups

    def _group(
        self,
        owner: int,
        tag: int,
        exc: Exception | None,
        sends: dict[int, Exception | None],
        runs: dict[CollectiveRun, Exception | None],
    ) -> None:
        """Add the operation of flow ``(owner, tag)`` to ``sends`` or ``runs``, unless there."""
        if owner == 0:
            sends.setdefault(tag, exc)
        elif owner in self._runs:
            runs.setdefault(self._runs[owner], exc)

    def _stall(self, ids: tuple[int, ...], delay: float) -> None:
        """Take the flows whose routes cross links ``ids`` out until ``delay`` from now."""
        route_links, down = self.router.route_links, list(ids)

        def crossing(routes: np.ndarray) -> np.ndarray:
            if not routes.size:
                return np.zeros(0, dtype=bool)
            hit = [r for r in np.unique(routes).tolist() if np.isin(route_links[r], down).any()]
            return np.isin(routes, hit)

        pending, active = self.flows.take(
            crossing(self.flows.pending[1]), crossing(self.flows.active[0])
        )
        if not pending[0].size and not active[0].size:
            return
        stall = Stall(self.env.now + delay, pending, active)
        self._stalls.append(stall)
        wake = self.env.timeout(delay)
        wake.callbacks.append(lambda _: self.timer.apply(lambda: self._resume(stall)))

    def _resume(self, stall: Stall) -> None:
        """The reroute of ``stall``'s flows: those whose ranks a live route connects go on on
        it; the others wait for a link to come back (:meth:`_reroute`)."""
        if stall not in self._stalls:  # its flows went on before (their link came back)
            return
        stall.resume_at = None
        self._reroute(stall)

    def _reroute(self, stall: Stall) -> None:
        """Route the flows of ``stall`` anew: those with a live route go on on it with the
        bytes they have left; the operations of those whose ranks have been cut off
        :attr:`detect` seconds fail; the others stay."""
        ends = self.router.route_ends
        routed: dict[int, int | LinkFailure] = {}
        sends: dict[int, Exception | None] = {}
        runs: dict[CollectiveRun, Exception | None] = {}
        now = float(self.env.now)
        for routes, owner, tag in stall.flows():
            for r, o, t in zip(routes.tolist(), owner.tolist(), tag.tolist(), strict=True):
                if r not in routed:
                    src, dst, label = ends[r].tolist()
                    try:
                        routed[r] = self.router.route(src, dst, label)
                    except LinkFailure as exc:
                        routed[r] = exc
                new = routed[r]
                if isinstance(new, LinkFailure) and self._given_up_at(new) <= now:
                    self._group(o, t, new, sends, runs)
        self._fail(sends, runs)  # takes their flows out of ``stall`` too
        live = [r for r, new in routed.items() if not isinstance(new, LinkFailure)]
        pending, active = stall.split(lambda routes: np.isin(routes, live))
        self._forget_empty()

        def moved(routes: np.ndarray) -> np.ndarray:
            return np.array([routed[r] for r in routes.tolist()], dtype=np.int64)

        pending = (np.maximum(pending[0], now), moved(pending[1]), *pending[2:])
        active = (moved(active[0]), *active[1:])
        self.flows.put(pending, active)

    def _restored(self) -> None:
        """A down link came back: stalled flows whose own route is live again go on on it at
        once, flows waiting for any route are routed anew, and held operations start (or
        wait again)."""
        down, route_links = list(self.router.down), self.router.route_links
        now = float(self.env.now)

        def own_route_live(routes: np.ndarray) -> np.ndarray:
            if not routes.size:
                return np.zeros(0, dtype=bool)
            live = [
                r for r in np.unique(routes).tolist() if not np.isin(route_links[r], down).any()
            ]
            return np.isin(routes, live)

        for stall in list(self._stalls):
            if stall.resume_at is None:
                self._reroute(stall)
                continue
            pending, active = stall.split(own_route_live)
            self.flows.put((np.maximum(pending[0], now), *pending[1:]), active)
        self._forget_empty()  # a forgotten stall's reroute timer then finds nothing
        self._retry_held()

    def _forget_empty(self) -> None:
        """Drop the stalls no flow is left in."""
        self._stalls = [stall for stall in self._stalls if not stall.empty]

    def hold(
        self,
        exc: LinkFailure,
        retry: Callable[[], None],
        key: CollectiveRun | int | simpy.Event,
        members: tuple[int, ...],
    ) -> None:
        """An operation (``key``: a send's tag, a collective's run, or its event before it
        is planned) found no live route (``exc``): fail it now if its ranks have been cut off
        :attr:`detect` seconds, else call ``retry`` once a link comes back, or at the
        detection (``members``: the ranks it involves; a crash of one fails it)."""
        if self._given_up_at(exc) <= self.env.now:
            sends: dict[int, Exception | None] = {}
            runs: dict[CollectiveRun, Exception | None] = {}
            self._fail_held(key, exc, sends, runs)
            if runs:
                for run in runs:
                    run.fail(exc)
            elif sends:
                for tag in sends:
                    fail_quietly(self._events.pop(tag), exc)
            return
        self._held.append(Held(retry, key, members))

    def _fail_held(
        self,
        key: CollectiveRun | int | simpy.Event,
        exc: Exception,
        sends: dict[int, Exception | None],
        runs: dict[CollectiveRun, Exception | None],
    ) -> None:
        """Add held operation ``key`` to ``sends`` or ``runs``; a collective not planned yet
        fails at once (it has no flows) and is forgotten."""
        if isinstance(key, CollectiveRun):
            runs.setdefault(key, exc)
        elif isinstance(key, int):
            sends.setdefault(key, exc)
        else:
            self._held = [held for held in self._held if held.key is not key]
            if not key.triggered:
                fail_quietly(key, exc)

    def _retry_held(self) -> None:
        """Try the held operations again (each is held again, fails, or starts)."""
        held, self._held = self._held, []
        for h in held:
            key = h.key
            if isinstance(key, CollectiveRun):
                if key.failed:
                    continue
            elif isinstance(key, int):
                if key not in self._events:
                    continue
            elif key.triggered:
                continue
            h.retry()

    def _given_up_at(self, exc: LinkFailure) -> float:
        """When the ranks ``exc`` names are given up on: :attr:`detect` seconds after the
        links down cut them off (after the first moment since which the links that have been
        down all along cut every path between them)."""
        downs = self._links.down_since
        since = downs[-1][1] if downs else float(self.env.now)
        if len(downs) > 1:
            graph, hosts = self.router.graph, self.router.hosts
            s, t = hosts[exc.ranks[0]], hosts[exc.ranks[1]]
            cut: list[tuple[object, object]] = []
            for (u, v), when in downs:
                cut += [e for e in ((u, v), (v, u)) if graph.has_edge(*e)]
                if not nx.has_path(nx.restricted_view(graph, [], cut), s, t):
                    since = when
                    break
        return since + check_delay(self.detect, "detect")

    def _give_up(self) -> None:
        """``detect`` seconds after a link went down: the operations of ranks cut off that
        long (stalled flows with no live route, held operations) fail."""
        if not self._stalls and not self._held:
            return
        ends, now = self.router.route_ends, float(self.env.now)
        sends: dict[int, Exception | None] = {}
        runs: dict[CollectiveRun, Exception | None] = {}
        cut: dict[tuple[int, int], LinkFailure | None] = {}
        for stall in self._stalls:
            for routes, owner, tag in stall.flows():
                for r, o, t in zip(routes.tolist(), owner.tolist(), tag.tolist(), strict=True):
                    src, dst, _ = ends[r].tolist()
                    if (src, dst) not in cut:
                        try:
                            self.router.route(src, dst)
                            cut[(src, dst)] = None
                        except LinkFailure as exc:
                            cut[(src, dst)] = exc if self._given_up_at(exc) <= now else None
                    failure = cut[(src, dst)]
                    if failure is not None:
                        self._group(o, t, failure, sends, runs)
        if sends or runs:
            self.timer.apply(lambda: self._fail(sends, runs))
        self._retry_held()

    def _fail(
        self,
        sends: dict[int, Exception | None],
        runs: dict[CollectiveRun, Exception | None],
    ) -> None:
        """Remove every flow of the operations ``sends`` (tags) and ``runs`` and fail their
        events with the exception given (None: cancelled, never fired)."""
        if not sends and not runs:
            return
        owners = [o for o, run in self._runs.items() if run in runs]
        tags = list(sends)

        def select(owner: np.ndarray, tag: np.ndarray) -> np.ndarray:
            hit = np.isin(owner, owners)
            if tags:
                hit |= (owner == 0) & np.isin(tag, tags)
            return hit

        self._remove(select)
        if self._held:
            self._held = [h for h in self._held if h.key not in sends and h.key not in runs]
        for o in owners:
            self.unregister(o)
        for tag, exc in sends.items():
            event = self._events.pop(tag)
            if exc is not None:
                fail_quietly(event, exc)
        for run, exc in runs.items():
            run.failed = True
            if exc is not None:
                fail_quietly(run.event, exc)

    def _remove(self, select: Select) -> None:
        """Take the flows ``select`` picks out of the table and the stalls; uncount the bytes
        they never moved."""
        pending, active = self.flows.pending, self.flows.active
        taken = [self.flows.take(select(pending[3], pending[4]), select(active[4], active[5]))]
        taken += [stall.drop(select) for stall in self._stalls]
        src = self.router.route_ends[:, 0]
        for gone_pending, gone_active in taken:
            for routes, unmoved in (
                (gone_pending[1], gone_pending[2]),
                (gone_active[0], gone_active[1]),
            ):
                if routes.size:
                    unmoved = np.maximum(unmoved, 0.0)
                    self.bytes_sent -= float(unmoved.sum())
                    self.bytes_sent_per_rank -= np.bincount(
                        src[routes], weights=unmoved, minlength=self.n_ranks
                    )

    # -- completions -------------------------------------------------------------------------

    def _dispatch(self, finished: Finished) -> None:
        """Tell each owner, in owner order, which of its flows finished."""
        if len(finished) == 1:
            owner, tag, sole = finished[0]
            if sole >= 0:  # one owner (its array may be left out): no array to read
                callback = self._owners[sole]
                if callback is not None and tag.size:
                    callback(tag)
                return
        else:
            owner = np.concatenate(
                [np.full(t.size, s, np.int64) if o is None else o for o, t, s in finished]
            )
            tag = np.concatenate([t for _, t, _ in finished])
            sole = finished[0][2] if all(f[2] == finished[0][2] for f in finished) else -1
        if not tag.size:
            return
        assert owner is not None, "flows of several owners come with their owners"
        if sole < 0 and (owner.size == 1 or np.count_nonzero(owner == owner[0]) == owner.size):
            sole = int(owner[0])
        if sole >= 0:
            callback = self._owners[sole]
            if callback is not None:
                callback(tag)
            return
        for who in np.unique(owner).tolist():
            callback = self._owners[who]
            if callback is not None:
                callback(tag[owner == who])

    def _deliver(self, tags: np.ndarray) -> None:
        now = self.env.now
        for tag in tags.tolist():
            self._events.pop(tag).succeed(now)
