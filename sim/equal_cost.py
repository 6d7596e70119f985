"""The equal-cost paths between two nodes: counted, ranked and, for ``spray``, split.

``ecmp`` and ``spray`` routing (:mod:`sim.routing`) use every path of least cost (least
latency in whole femtoseconds, then fewest hops) between two non-stub nodes. A Dijkstra that
keeps every predecessor at least cost gives their DAG; counting paths on it (``sigma_s(v)``
from the source, ``sigma_t(v)`` to the destination) ranks the paths in the order of their
node-index sequences (:meth:`EqualCostPaths.unrank`: ``ecmp`` takes path ``hash % n``) and
gives the fraction of a split flow on each link (``sigma_s(u) sigma_t(v) / n``: ``spray``).
Nodes are indices and links are link ids of a :class:`sim.paths.ShortestPaths`' adjacency.
"""

from __future__ import annotations

import heapq

import numpy as np

from sim.paths import NoRouteError, ShortestPaths

__all__ = ["EqualCostPaths"]

#: DAG searches kept for resuming (one per source node), as :mod:`sim.paths` keeps its own.
_KEEP_DAGS = 256
#: Equal-cost path structures are kept per (source, destination) switch pair while their
#: links number at most this in all (a far pair on a 64 x 64 torus has ~10^4).
_KEEP_MIDDLE_LINKS = 1 << 20


class EqualCostPaths:
    """The equal-cost paths between non-stub nodes of a :class:`sim.paths.ShortestPaths`.

    Parameters
    ----------
    paths : ShortestPaths
        The topology's links and adjacency (stubs left out).
    spray : bool
        Whether to compute each link's fraction of a split flow (``spray`` only).

    Examples
    --------
    A ring of four nodes has two equal-cost paths from 0 to 2: path 0 through node 1 (links
    0, 1), path 1 through node 3; a sprayed flow puts half its rate on each of their links.

    >>> import numpy as np
    >>> links = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 0), (2, 1), (3, 2), (0, 3)]
    >>> paths = ShortestPaths([0, 1, 2, 3], links, np.ones(8), directed=False)
    >>> ecp = EqualCostPaths(paths, spray=True)
    >>> ecp.unrank(0, 2, 0), ecp.unrank(0, 2, 1), ecp.unrank(0, 2, 2)
    ([0, 1], [7, 6], [0, 1])
    >>> links, shares = ecp.split(0, 2)
    >>> links.tolist(), shares.tolist()
    ([0, 1, 6, 7], [0.5, 0.5, 0.5, 0.5])
    >>> ecp.split(0, 1) is None  # one path: the whole flow on it
    True
    """

    def __init__(self, paths: ShortestPaths, spray: bool) -> None:
        self._paths = paths
        self._spray = spray
        self._ends: list[tuple[int, int]] | None = None  # links' node indices, spray's only
        self._dags: dict[int, tuple] = {}  # resumable DAG searches by source, oldest first
        self._cost_adj: list[list[tuple[int, int, int]]] | None = None  # built on first use
        self._middles: dict[tuple[int, int], tuple] = {}  # equal-cost paths by node pair
        self._middle_links = 0  # links held by ``_middles``

    def split(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(links, fraction of the flow on each)`` of a flow split evenly over the paths
        from ``s`` to ``t``, links in id order; None where there is one path (or ``s == t``):
        the whole flow on it, exactly ``single``'s route."""
        if s == t or self._paths.is_forest:  # a forest has one path per pair
            return None
        _, _, n, links, shares = self._middle(s, t)
        return None if n == 1 else (links, shares)

    def unrank(self, s: int, t: int, pick: int) -> list[int]:
        """Link ids of equal-cost path ``pick % n_paths`` from ``s`` to ``t``, the paths
        ordered by their node-index sequences (path 0 is :meth:`ShortestPaths.best`'s)."""
        if s == t:
            return []
        if self._paths.is_forest:  # one path per pair: the one every rank picks
            return self._paths.tree_path(s, t)
        successors, sigma_t, n, _, _ = self._middle(s, t)
        pick %= n
        links = []
        u = s
        while u != t:
            for v, lid in successors[u]:
                if pick < sigma_t[v]:
                    links.append(lid)
                    u = v
                    break
                pick -= sigma_t[v]
        return links

    def _middle(self, s: int, t: int) -> tuple:
        """The equal-cost paths between non-stub nodes ``s != t``, counted, cached per pair:
        ``(successors, sigma_t, n_paths, links, shares)``.

        ``successors[u]`` lists ``(v, link)`` on the paths, by node index; ``sigma_t[v]``
        counts the paths from ``v`` to ``t``; ``links`` are the links on any path and, under
        ``spray`` (else None), ``shares`` the fraction of the paths through each
        (``sigma_s(u) sigma_t(v) / n``), both in link order.
        """
        key = (s, t)
        hit = self._middles.get(key)
        if hit is not None:
            return hit
        dist, preds, sigma_s = self._dag(s, t)
        # Nodes on the paths, farthest first: each node's successors on the paths to t are
        # counted before it (costs grow strictly along a link, so this order is topological).
        on, stack = {t}, [t]
        while stack:
            for u, _ in preds[stack.pop()]:
                if u not in on:
                    on.add(u)
                    stack.append(u)
        order = sorted(on, key=lambda v: dist[v], reverse=True)
        sigma_t = dict.fromkeys(on, 0)
        sigma_t[t] = 1
        successors: dict[int, list[tuple[int, int]]] = {v: [] for v in on}
        links: list[int] = []
        for v in order:
            for u, lid in preds[v]:
                sigma_t[u] += sigma_t[v]
                successors[u].append((v, lid))
                links.append(lid)
        for nexts in successors.values():
            nexts.sort()
        n = sigma_s[t]
        ids = np.asarray(links, dtype=np.int64)
        shares = None
        if self._spray:  # only a split flow needs them; counts are exact ints
            ends = self._ends
            if ends is None:
                index = self._paths.index
                ends = self._ends = [(index[u], index[v]) for u, v in self._paths.links]
            shares = np.array([sigma_s[ends[lid][0]] * sigma_t[ends[lid][1]] / n for lid in links])
            order_links = np.argsort(ids, kind="stable")
            ids, shares = ids[order_links], shares[order_links]
        hit = (successors, sigma_t, n, ids, shares)
        while self._middles and self._middle_links + ids.size > _KEEP_MIDDLE_LINKS:
            self._middle_links -= self._middles.pop(next(iter(self._middles)))[3].size
        self._middles[key] = hit
        self._middle_links += ids.size
        return hit

    def _dag(self, s: int, t: int) -> tuple[dict, dict, dict]:
        """``(cost, predecessors, path count)`` per node settled by a Dijkstra from ``s`` on
        costs ``(latency in fs, hops)`` (one int: ``latency * H + hops``), run until ``t`` is
        settled (and kept to resume, like :meth:`ShortestPaths.best`'s). A node's predecessors
        are every ``(node, link)`` that reaches it at its least cost; its path count is the
        number of equal-cost paths from ``s``."""
        adj = self._cost_adj
        if adj is None:
            # (latency, hops) as one integer, latency * H + hops with H above any hop count:
            # the same order, compared and added as one int.
            h = len(self._paths.nodes) + 1
            adj = self._cost_adj = [
                [(v, lid, w * h + 1) for v, lid, w in n] for n in self._paths.adj
            ]
        state = self._dags.pop(s, None)
        if state is None:
            state = ({s: 0}, {s: []}, {}, [(0, s)])
        self._dags[s] = state
        if len(self._dags) > _KEEP_DAGS:
            del self._dags[next(iter(self._dags))]
        dist, preds, sigma, heap = state
        pop, push = heapq.heappop, heapq.heappush
        while t not in sigma and heap:
            cost, u = pop(heap)
            if u in sigma:
                continue
            # Every predecessor is settled (its cost is strictly less): u's count is final.
            count = 0
            for p, _ in preds[u]:
                count += sigma[p]
            sigma[u] = count or 1
            for v, lid, w in adj[u]:
                if v in sigma:
                    continue
                new = cost + w
                old = dist.get(v)
                if old is None or new < old:
                    dist[v] = new
                    preds[v] = [(u, lid)]
                    push(heap, (new, v))
                elif new == old:
                    preds[v].append((u, lid))
        if t not in sigma:
            raise NoRouteError(self._paths.nodes, s, t)
        return dist, preds, sigma
