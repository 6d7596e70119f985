"""Bandwidth sharing: vectorised (weighted) max-min fair rates, and a cache of solved patterns.

:func:`maxmin_rates` is the progressive-filling solver in its bottleneck form: repeatedly find
the link whose remaining capacity divided by the total weight of its unfrozen flows is
smallest, freeze those flows at ``weight * level``, and subtract their rates everywhere. Every
round is a few numpy passes over the (flow, link) incidence pairs, so the cost is the number of
pairs times the number of distinct bottleneck levels (one for a ring all-reduce step). A flow
split over several paths (``spray`` routing) puts a fraction of its rate on each of its links
(``usage``): a link's load grows by that fraction of the flow's weight.

:class:`RateSolver` turns a set of active routes into rates for a network model and caches
them by the sorted multiset of route ids: every step of a ring collective presents the same
routes, so it is solved once. A second cache, by the routes in the order given, answers a round
that recurs exactly (every all-reduce of a training run) without even sorting. Flows with
weights of their own (:meth:`RateSolver.solve_weighted`) are solved every time when two of them
share a link; where no link carries two flows (a ring collective's rounds) weights cannot
change a rate, and the cached solve answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MODELS", "SHARINGS", "RateSolver", "maxmin_rates"]

MODELS = ("flow", "analytic")
SHARINGS = ("maxmin", "rtt")

#: Links whose fair level is within this relative distance of the minimum saturate together.
_TIE = 1e-12
#: A route latency below this is treated as this in ``sharing="rtt"`` (avoids 1/0 weights).
_MIN_RTT = 1e-15
#: Entries of the by-order cache; it is emptied when full (the sorted cache stays).
_ORDERED_KEPT = 1024


def maxmin_rates(
    flow_ptr: np.ndarray,
    link_idx: np.ndarray,
    capacity: np.ndarray,
    weights: np.ndarray | None = None,
    usage: np.ndarray | None = None,
) -> np.ndarray:
    """Return the weighted max-min fair rate of every flow.

    Parameters
    ----------
    flow_ptr : np.ndarray
        CSR offsets, length ``n_flows + 1``: flow ``f`` uses ``link_idx[flow_ptr[f]:flow_ptr[f+1]]``.
    link_idx : np.ndarray
        Link indices into ``capacity``.
    capacity : np.ndarray
        Capacity of every link.
    weights : np.ndarray, optional
        Positive weight per flow (default all 1): a flow frozen at level ``x`` gets ``w * x``.
    usage : np.ndarray, optional
        Per (flow, link) pair, aligned with ``link_idx``: the fraction of the flow's rate that
        crosses the link (default all 1). A flow split over several paths (``spray`` routing)
        puts ``usage * rate`` on each of its links; progressive filling then raises each
        link's load by ``usage * weight`` per unit of level.

    Returns
    -------
    np.ndarray
        Rates; a flow with no links gets ``inf``.

    Examples
    --------
    Three flows over two links of capacities 10 and 4: flows 0 and 1 share link 0, flows 1 and
    2 share link 1. Link 1 saturates first at level 2; flow 0 then takes the rest of link 0.

    >>> maxmin_rates(np.array([0, 1, 3, 4]), np.array([0, 0, 1, 1]), np.array([10.0, 4.0]))
    array([8., 2., 2.])
    >>> maxmin_rates(np.array([0, 1, 2]), np.array([0, 0]), np.array([3.0]), np.array([1., 2.]))
    array([1., 2.])

    A flow split in halves over links 0 and 1 and a flow on link 1 alone (capacities 1): link 1
    carries half of the first and all of the second, so both get 2/3.

    >>> maxmin_rates(np.array([0, 2, 3]), np.array([0, 1, 1]), np.ones(2),
    ...              usage=np.array([0.5, 0.5, 1.0])).round(6).tolist()
    [0.666667, 0.666667]
    """
    n = flow_ptr.size - 1
    lengths = np.diff(flow_ptr)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    rates = np.full(n, np.inf)
    if link_idx.size == 0:
        return rates
    # Relabel to the links actually used so every pass is over touched links only.
    used, local = np.unique(link_idx, return_inverse=True)
    rem = capacity[used].astype(float)
    flow_of = np.repeat(np.arange(n), lengths)
    frozen = lengths == 0
    pair_w = w[flow_of]
    if usage is not None:
        pair_w = pair_w * usage
    while True:
        live = ~frozen[flow_of]
        if not live.any():
            return rates
        load = np.bincount(local[live], weights=pair_w[live], minlength=used.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(load > 0, rem / load, np.inf)
        lam = max(level.min(), 0.0)
        saturated = level <= lam * (1 + _TIE)
        hit = np.zeros(n, dtype=bool)
        hit[flow_of[live & saturated[local]]] = True
        rates[hit] = w[hit] * lam
        frozen |= hit
        fresh = hit[flow_of]
        taken = rates[flow_of[fresh]]
        if usage is not None:
            taken = taken * usage[fresh]
        rem -= np.bincount(local[fresh], weights=taken, minlength=used.size)
        np.maximum(rem, 0.0, out=rem)


class RateSolver:
    """Rates of the active flows for a network ``model`` and ``sharing`` policy, cached.

    Parameters
    ----------
    route_links : sequence of np.ndarray
        Link ids of each route (a :class:`sim.routing.Router`'s ``route_links``; may grow).
    capacity : np.ndarray
        Link capacities.
    route_latency, route_bottleneck : callable
        Return the per-route latency / bottleneck arrays (read lazily: routes are added on the fly).
    model : {"flow", "analytic"}
        ``"flow"`` shares links max-min fairly; ``"analytic"`` gives every flow its route's
        bottleneck bandwidth, with no contention.
    sharing : {"maxmin", "rtt"}
        ``"rtt"`` weights each flow by ``1 / route latency`` (SimGrid's TCP-like sharing).
    route_share : sequence of (np.ndarray or None), optional
        Per route, the fraction of a flow's rate on each of its links, or None for all of it
        (a :class:`sim.routing.Router`'s ``route_share``; may grow). Without it, every route
        carries its flows' whole rate on every link.

    Examples
    --------
    >>> links = [np.array([0]), np.array([0, 1])]
    >>> cap = np.array([2.0, 1.0])
    >>> s = RateSolver(links, cap, lambda: np.array([1., 3.]), lambda: np.array([2., 1.]))
    >>> rates, pattern = s.solve(np.array([1, 0]))
    >>> rates.tolist(), s.patterns[pattern][1].tolist()
    ([1.0, 1.0], [2.0, 1.0])
    >>> s.solve(np.array([1, 0]))[1] == pattern and s.hits
    1
    """

    def __init__(
        self,
        route_links: Sequence[np.ndarray],
        capacity: np.ndarray,
        route_latency,
        route_bottleneck,
        model: str = "flow",
        sharing: str = "maxmin",
        route_share: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        self.route_links = route_links
        self.route_share = route_share
        self.capacity = capacity
        self._nominal = True  # capacities as built: routes' bottlenecks are the router's
        self._route_latency = route_latency
        self._route_bottleneck = route_bottleneck
        self.model = model
        self.sharing = sharing
        self._cache: dict[bytes, tuple[np.ndarray, int]] = {}
        self._shared: dict[bytes, bool] = {}  # by routes in order: does a link carry two?
        self._by_order: dict[bytes, tuple[np.ndarray, int]] = {}
        #: Per pattern id: (link ids, summed rate on each) -- the link loads for statistics.
        self.patterns: list[tuple[np.ndarray, np.ndarray]] = []
        self.hits = 0
        self.misses = 0
        #: Counts the capacity changes: rates kept elsewhere are valid for one version.
        self.version = 0

    def set_capacity(self, capacity: np.ndarray, nominal: bool = False) -> None:
        """Solve with link capacities ``capacity`` from now on (a slowed or failed link);
        ``nominal`` says they are the ones built with (a link restored). Cached solves are
        dropped: they were solved for the old capacities.

        >>> s = RateSolver([np.array([0])], np.array([2.0]), None, None)
        >>> s.solve(np.array([0]))[0].tolist()
        [2.0]
        >>> s.set_capacity(np.array([0.5])); s.solve(np.array([0]))[0].tolist()
        [0.5]
        """
        self.capacity, self._nominal = capacity, nominal
        self.version += 1
        self._cache.clear()
        self._by_order.clear()

    def solve(self, routes: np.ndarray) -> tuple[np.ndarray, int]:
        """Return ``(rates, pattern id)`` for active flows on ``routes`` (route ids).

        ``rates`` is read-only: it may be handed out again for the same ``routes``.
        """
        if routes.dtype != np.int64:  # the caches are keyed by the ids' bytes
            routes = routes.astype(np.int64)
        given = routes.tobytes()
        known = self._by_order.get(given)
        if known is not None:
            self.hits += 1
            return known
        order = np.argsort(routes, kind="stable")
        ordered = routes[order]
        key = ordered.tobytes()
        hit = self._cache.get(key)
        if hit is None:
            self.misses += 1
            hit = self._solve_sorted(ordered)
            self._cache[key] = hit
        else:
            self.hits += 1
        rates = np.empty(routes.size)
        rates[order] = hit[0]
        rates.flags.writeable = False
        if len(self._by_order) >= _ORDERED_KEPT:
            self._by_order.clear()
        self._by_order[given] = (rates, hit[1])
        return rates, hit[1]

    def solve_weighted(self, routes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
        """Like :meth:`solve` for flows with sharing ``weights`` of their own (positive, one per
        flow; combined with ``sharing="rtt"``'s). Where two flows share a link, not cached
        (weights drawn per flow rarely recur: each solve adds a pattern to the statistics);
        where none do, :meth:`solve`, cached.
        """
        routes = np.asarray(routes, dtype=np.int64)
        given = routes.tobytes()
        shared = self._shared.get(given)
        if shared is None:
            if len(self._shared) >= _ORDERED_KEPT:
                self._shared.clear()
            links = [self.route_links[r] for r in routes.tolist()]
            used = np.concatenate(links) if links else np.empty(0, dtype=np.int64)
            shared = self._shared[given] = bool(used.size) and used.size > np.unique(used).size
        if not shared:  # every flow alone on its links: its weight cannot change its rate
            return self.solve(routes)
        self.misses += 1
        rates, used, load = self._rates(routes, np.asarray(weights, dtype=float))
        self.patterns.append((used, load))
        return rates, len(self.patterns) - 1

    def _solve_sorted(self, routes: np.ndarray) -> tuple[np.ndarray, int]:
        rates, used, load = self._rates(routes, None)
        self.patterns.append((used, load))
        return rates, len(self.patterns) - 1

    def _rates(
        self, routes: np.ndarray, weights: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rates of flows on ``routes``, and the links they use with the summed rate on each."""
        pieces = [self.route_links[r] for r in routes.tolist()]
        lengths = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
        ptr = np.concatenate(([0], np.cumsum(lengths)))
        links = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
        usage = self._usage(routes, lengths)
        if self.model == "analytic" and self._nominal:
            rates = self._route_bottleneck()[routes]
        elif self.model == "analytic":  # each route's narrowest link at today's capacities
            cap = self.capacity
            shares = [None] * len(pieces) if usage is None else np.split(usage, ptr[1:-1])
            rates = np.array(
                [
                    (cap[p] if u is None else cap[p] / u).min() if p.size else np.inf
                    for p, u in zip(pieces, shares, strict=True)
                ]
            )
        else:
            if self.sharing == "rtt":
                rtt = 1.0 / np.maximum(self._route_latency()[routes], _MIN_RTT)
                weights = rtt if weights is None else weights * rtt
            rates = maxmin_rates(ptr, links, self.capacity, weights, usage)
        finite = np.where(np.isfinite(rates), rates, 0.0)
        used, inverse = np.unique(links, return_inverse=True)
        carried = np.repeat(finite, lengths)
        if usage is not None:
            carried = carried * usage
        load = np.bincount(inverse, weights=carried, minlength=used.size)
        return rates, used, load

    def _usage(self, routes: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
        """The fraction of each flow's rate on each of its links, aligned with the routes'
        links, or None where every route carries all of it on every link."""
        if self.route_share is None:
            return None
        shares = [self.route_share[r] for r in routes.tolist()]
        if all(share is None for share in shares):
            return None
        return np.concatenate(
            [
                np.ones(size) if share is None else share
                for share, size in zip(shares, lengths.tolist(), strict=True)
            ]
        )
