"""The simulated network: flows on routes sharing links, driven by one SimPy timer.

A message is a flow. It first spends its route's latency (using no bandwidth, SimGrid's
convention), then transfers while every transferring flow shares each directed link by max-min
fairness, re-solved whenever a flow starts or finishes. No SimPy process exists per flow: the
flows live in numpy arrays, flows that start or finish at the same instant are handled as one
batch (one solve), and a single pending timer wakes the network at the next activation or
completion; a timer made stale by newer traffic is recognised by its generation number and
ignored.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Real

import networkx as nx
import numpy as np
import pandas as pd
import simpy

import topologies
from sim.collectives.schedule import PACES, CollectiveRun
from sim.collectives.select import plan
from sim.maxmin import MODELS, SHARINGS, RateSolver
from sim.routing import NetworkError, Router

__all__ = ["Network", "NetworkError", "check_nbytes"]

#: A transferring flow with less than this fraction of its bytes left has finished (float noise).
_DONE_FRACTION = 1e-10
#: ... and so has one whose remaining transfer time is below this fraction of the clock.
_DONE_CLOCK = 1e-13

Owner = Callable[[np.ndarray], None]


def check_nbytes(nbytes: object, name: str = "nbytes") -> float:
    """Return ``nbytes`` as a float, or raise a one-line :class:`NetworkError` naming it.

    >>> check_nbytes(-1)
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: nbytes must be a finite number >= 0 (bytes), got -1
    """
    if (
        isinstance(nbytes, bool)
        or not isinstance(nbytes, Real)
        or not math.isfinite(nbytes)
        or nbytes < 0
    ):
        raise NetworkError(f"{name} must be a finite number >= 0 (bytes), got {nbytes!r}")
    return float(nbytes)


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
    record : bool
        Keep the rate history needed by :meth:`link_stats` and :meth:`utilisation`.
    """

    def __init__(
        self,
        env: simpy.Environment,
        topology: nx.Graph,
        model: str = "flow",
        sharing: str = "maxmin",
        record: bool = True,
    ) -> None:
        if model not in MODELS:
            raise NetworkError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if sharing not in SHARINGS:
            raise NetworkError(f"sharing must be one of {', '.join(SHARINGS)}, got {sharing!r}")
        try:
            topologies.validate(topology)
        except topologies.TopologyError as err:
            raise NetworkError(f"topology is invalid: {err}") from err
        self.env, self.topology, self.model, self.sharing = env, topology, model, sharing
        self.router = r = Router(topology)
        self.solver = RateSolver(
            r.route_links,
            r.capacity,
            lambda: r.route_latency,
            lambda: r.route_bottleneck,
            model,
            sharing,
        )
        self.record = record
        self.n_ranks = r.n_hosts
        self.bytes_sent = 0.0
        self.bytes_sent_per_rank = np.zeros(r.n_hosts)
        self.flows_simulated = 0
        self._start = env.now
        # Flows in their latency phase (p) and transferring (a), as parallel arrays.
        i64, f64 = np.empty(0, np.int64), np.empty(0)
        self._p_time, self._p_route, self._p_bytes, self._p_owner, self._p_tag = (
            f64,
            i64,
            f64,
            i64,
            i64,
        )
        self._a_route, self._a_rem, self._a_size, self._a_rate, self._a_owner, self._a_tag = (
            i64,
            f64,
            f64,
            f64,
            i64,
            i64,
        )
        self._t_last = env.now
        self._pattern = -1
        self._dirty = False
        self._busy = False
        self._gen = 0
        self._timer_at = math.inf
        self._history: list[list[float]] = []  # [t0, t1, pattern id], merged when contiguous
        self._owners: list[Owner | None] = [self._deliver]
        self._events: dict[int, simpy.Event] = {}
        self._next_tag = 0

    # -- public operations ------------------------------------------------------------------

    def send(self, src: int, dst: int, nbytes: float) -> simpy.Event:
        """Send ``nbytes`` from rank ``src`` to rank ``dst``; the event fires at delivery.

        Its value is the delivery time. ``src == dst`` delivers after 0 s without touching the
        network; ``nbytes == 0`` costs the route latency only.
        """
        src, dst = self.check_rank(src, "src"), self.check_rank(dst, "dst")
        size = check_nbytes(nbytes)
        if src == dst:
            return self.env.timeout(0, value=self.env.now)
        tag = self._next_tag
        self._next_tag += 1
        event = self._events[tag] = self.env.event()
        self.inject(np.array([src]), np.array([dst]), np.array([size]), 0, np.array([tag]))
        return event

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
        it simulates many more events where route latencies differ (a fat tree: ~25x slower),
        and equals ``"step"`` for ring algorithms on homogeneous fabrics.
        """
        size = check_nbytes(nbytes)
        if pace not in PACES:
            raise NetworkError(f"pace must be one of {', '.join(PACES)}, got {pace!r}")
        channels, members = plan(self.router, op, size, ranks=ranks, algorithm=algorithm, root=root)
        event = self.env.event()
        CollectiveRun(self, channels, members, event, pace)
        return event

    def check_rank(self, rank: object, name: str = "rank") -> int:
        """Return ``rank`` as an int, or raise a one-line :class:`NetworkError` naming it."""
        if (
            isinstance(rank, bool)
            or not isinstance(rank, (int, np.integer))
            or not 0 <= rank < self.n_ranks
        ):
            raise NetworkError(f"{name} must be a host rank in 0..{self.n_ranks - 1}, got {rank!r}")
        return int(rank)

    def bytes_sent_by(self, rank: int) -> float:
        """Payload bytes injected by ``rank`` so far."""
        return float(self.bytes_sent_per_rank[self.check_rank(rank)])

    # -- batch interface used by collectives -------------------------------------------------

    def register(self, owner: Owner) -> int:
        """Register a completion callback (called with the finished flows' tags); return its id."""
        self._owners.append(owner)
        return len(self._owners) - 1

    def unregister(self, owner_id: int) -> None:
        """Forget an owner whose flows have all finished."""
        self._owners[owner_id] = None

    def inject(
        self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray, owner: int, tags: np.ndarray
    ) -> None:
        """Start flows (rank arrays, sizes) now; ``owner`` is told their ``tags`` as they finish."""
        routes = self.router.routes(src, dst)
        self._p_time = np.concatenate(
            (self._p_time, self.env.now + self.router.route_latency[routes])
        )
        self._p_route = np.concatenate((self._p_route, routes))
        self._p_bytes = np.concatenate((self._p_bytes, nbytes))
        self._p_owner = np.concatenate((self._p_owner, np.full(src.size, owner, np.int64)))
        self._p_tag = np.concatenate((self._p_tag, tags))
        self.bytes_sent += float(nbytes.sum())
        self.bytes_sent_per_rank += np.bincount(src, weights=nbytes, minlength=self.n_ranks)
        self.flows_simulated += src.size
        if not self._busy:
            self._schedule()

    # -- the event loop ----------------------------------------------------------------------

    def _schedule(self) -> None:
        t = self._p_time.min() if self._p_time.size else math.inf
        if self._a_rem.size:
            t = min(t, self._t_last + float((self._a_rem / self._a_rate).min()))
        if t >= self._timer_at or t == math.inf:
            return
        self._gen += 1
        self._timer_at = t
        timer = self.env.timeout(max(float(t) - self.env.now, 0.0))
        timer.callbacks.append(lambda _, gen=self._gen: self._fire(gen))

    def _fire(self, gen: int) -> None:
        if gen != self._gen:
            return  # superseded by a timer set for newer traffic
        self._timer_at = math.inf
        self._busy = True
        try:
            while self._advance():
                pass
            if self._dirty:
                self._resolve()
        finally:
            self._busy = False
        self._schedule()

    def _advance(self) -> bool:
        """Bring flows to ``now``; finish and start what is due. True if new flows became due."""
        now = self.env.now
        dt = now - self._t_last
        if dt > 0 and self._a_rem.size:
            self._a_rem -= self._a_rate * dt
            self._log(self._t_last, now)
        self._t_last = now
        done = (self._a_rem <= _DONE_FRACTION * self._a_size) | (
            self._a_rem <= self._a_rate * (_DONE_CLOCK * now)
        )
        fin_owner, fin_tag = self._a_owner[done], self._a_tag[done]
        if done.any():
            keep = ~done
            self._a_route, self._a_rem, self._a_size, self._a_rate, self._a_owner, self._a_tag = (
                x[keep]
                for x in (
                    self._a_route,
                    self._a_rem,
                    self._a_size,
                    self._a_rate,
                    self._a_owner,
                    self._a_tag,
                )
            )
            self._dirty = True
        due = self._p_time <= now * (1 + 1e-15)
        if due.any():
            route, size = self._p_route[due], self._p_bytes[due]
            owner, tag = self._p_owner[due], self._p_tag[due]
            keep = ~due
            self._p_time, self._p_route, self._p_bytes, self._p_owner, self._p_tag = (
                x[keep]
                for x in (self._p_time, self._p_route, self._p_bytes, self._p_owner, self._p_tag)
            )
            # Empty routes and empty messages are delivered at the end of their latency.
            instant = (size <= 0) | (self.router.route_hops[route] == 0)
            fin_owner = np.concatenate((fin_owner, owner[instant]))
            fin_tag = np.concatenate((fin_tag, tag[instant]))
            go = ~instant
            if go.any():
                self._a_route = np.concatenate((self._a_route, route[go]))
                self._a_rem = np.concatenate((self._a_rem, size[go]))
                self._a_size = np.concatenate((self._a_size, size[go]))
                self._a_rate = np.concatenate((self._a_rate, np.ones(int(go.sum()))))
                self._a_owner = np.concatenate((self._a_owner, owner[go]))
                self._a_tag = np.concatenate((self._a_tag, tag[go]))
                self._dirty = True
        if fin_tag.size:
            single = fin_owner.min() == fin_owner.max()
            for who in [int(fin_owner[0])] if single else np.unique(fin_owner).tolist():
                callback = self._owners[who]
                if callback is not None:
                    callback(fin_tag if single else fin_tag[fin_owner == who])
        return bool(self._p_time.size) and bool((self._p_time <= now * (1 + 1e-15)).any())

    def _resolve(self) -> None:
        self._dirty = False
        if self._a_route.size:
            self._a_rate, self._pattern = self.solver.solve(self._a_route)
        else:
            self._pattern = -1

    def _deliver(self, tags: np.ndarray) -> None:
        now = self.env.now
        for tag in tags.tolist():
            self._events.pop(tag).succeed(now)

    # -- statistics --------------------------------------------------------------------------

    def _log(self, t0: float, t1: float) -> None:
        if not self.record or self._pattern < 0:
            return
        last = self._history[-1] if self._history else None
        if last is not None and last[2] == self._pattern and last[1] == t0:
            last[1] = t1
        else:
            self._history.append([t0, t1, self._pattern])

    def _carried(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Bytes carried and busy time per link within ``[start, end]``."""
        n = self.router.capacity.size
        carried, busy = np.zeros(n), np.zeros(n)
        if not self._history:
            return carried, busy
        h = np.asarray(self._history)
        overlap = np.clip(np.minimum(h[:, 1], end) - np.maximum(h[:, 0], start), 0.0, None)
        per_pattern = np.bincount(h[:, 2].astype(np.int64), weights=overlap)
        for pid in np.flatnonzero(per_pattern).tolist():
            links, load = self.solver.patterns[pid]
            carried[links] += load * per_pattern[pid]
            busy[links] += per_pattern[pid]
        return carried, busy

    def link_stats(self) -> pd.DataFrame:
        """Per directed link ``(u, v)``: capacity, bytes carried, busy time, mean utilisation.

        Utilisation is bytes carried / (bandwidth x elapsed simulated time). Counts flows'
        transfer up to the last network event (a flow still in flight is counted so far).
        """
        elapsed = self._t_last - self._start
        carried, busy = self._carried(self._start, self._t_last)
        r = self.router
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.where(elapsed > 0, carried / (r.capacity * elapsed), 0.0)
        index = pd.MultiIndex.from_tuples(r.links, names=["u", "v"])
        return pd.DataFrame(
            {
                "bandwidth": r.capacity,
                "latency": r.latency,
                "bytes": carried,
                "busy_time": busy,
                "utilisation": util,
            },
            index=index,
        )

    def utilisation(self, start: float, end: float) -> pd.Series:
        """Mean utilisation of each directed link over simulated times ``[start, end]``."""
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise NetworkError(f"utilisation needs finite start < end, got {start!r}, {end!r}")
        carried, _ = self._carried(start, end)
        index = pd.MultiIndex.from_tuples(self.router.links, names=["u", "v"])
        return pd.Series(
            carried / (self.router.capacity * (end - start)), index=index, name="utilisation"
        )
