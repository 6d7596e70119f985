"""The equal-cost paths between two nodes: counted, ranked and, for ``spray``, split.

``ecmp`` and ``spray`` routing (:mod:`sim.routing`) use every path of least cost (least
latency in whole femtoseconds, then fewest hops) between two non-stub nodes. A Dijkstra that
keeps every predecessor at least cost gives their DAG (from the source, resumed for its next
destination; or from both ends, meeting in the middle, for a source's first: a ring's pair of
neighbouring edge switches then costs two levels of the fat tree, not the whole fabric);
counting paths on it (``sigma_s(v)``
from the source, ``sigma_t(v)`` to the destination) ranks the paths in the order of their
node-index sequences (:meth:`EqualCostPaths.unrank`: ``ecmp`` takes path ``hash % n``) and
gives the fraction of a split flow on each link (``sigma_s(u) sigma_t(v) / n``: ``spray``).
Nodes are indices and links are link ids of a :class:`sim.paths.ShortestPaths`' adjacency.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from sim.paths import NoRouteError, ShortestPaths

__all__ = ["EqualCostPaths"]

#: Per node on the equal-cost paths, its ``(next node, link)`` on them.
Successors = dict[int, list[tuple[int, int]]]

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
        self._dags: dict[int, tuple] = {}  # resumable DAG searches by source, oldest first
        self._cost_adj: list[list[tuple[int, int, int]]] | None = None  # built on first use
        self._cost_radj: list[list[tuple[int, int, int]]] | None = None  # the same, links in
        self._middles: dict[tuple[int, int], tuple] = {}  # equal-cost paths by node pair
        self._sources: set[int] = set()  # sources asked for before
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

        The paths' links come from the search from ``s`` where one is kept (it resumes), else
        from a search from both ends (:meth:`_meet`): the first time a source is asked, since
        a source asked once (a ring's, a shift's) would leave a kept search of its whole
        neighbourhood behind for nothing, and a source asked for many destinations (an
        all-to-all's) pays the one search it always paid. Both give the same set of links, and
        everything here is counted from that set alone.
        """
        key = (s, t)
        hit = self._middles.get(key)
        if hit is not None:
            return hit
        if s in self._sources:  # a source asked again: its search, kept and resumed
            order, successors = self._from_source(s, t)
        else:
            self._sources.add(s)
            order, successors = self._meet(s, t)
        # Each node's successors on the paths to t are counted before it (``order`` is
        # topological: costs grow strictly along a link).
        sigma_t: dict[int, int] = {t: 1}
        links: list[int] = []
        for u in reversed(order):
            nexts = successors[u]
            if nexts:
                nexts.sort()
                count = 0
                for v, lid in nexts:
                    count += sigma_t[v]
                    links.append(lid)
                sigma_t[u] = count
        n = sigma_t[s]
        ids = np.asarray(links, dtype=np.int64)
        shares = None
        if self._spray:  # only a split flow needs them; counts are exact ints
            sigma_s = dict.fromkeys(order, 0)
            sigma_s[s] = 1
            for u in order:
                for v, _ in successors[u]:
                    sigma_s[v] += sigma_s[u]
            shares = np.array(
                [sigma_s[u] * sigma_t[v] / n for u in reversed(order) for v, _ in successors[u]]
            )
            order_links = np.argsort(ids, kind="stable")
            ids, shares = ids[order_links], shares[order_links]
        hit = (successors, sigma_t, n, ids, shares)
        while self._middles and self._middle_links + ids.size > _KEEP_MIDDLE_LINKS:
            self._middle_links -= self._middles.pop(next(iter(self._middles)))[3].size
        self._middles[key] = hit
        self._middle_links += ids.size
        return hit

    def _adjacency(self) -> list[list[tuple[int, int, int]]]:
        """Per node, ``(neighbour, link, cost)`` out of it, cost ``(latency, hops)`` as one
        integer ``latency * H + hops`` with H above any hop count: the same order, compared
        and added as one int (built on first use)."""
        adj = self._cost_adj
        if adj is None:
            h = len(self._paths.nodes) + 1
            adj = self._cost_adj = [
                [(v, lid, w * h + 1) for v, lid, w in n] for n in self._paths.adj
            ]
        return adj

    def _reverse_adjacency(self) -> list[list[tuple[int, int, int]]]:
        """Per node, ``(neighbour, link, cost)`` into it, as :meth:`_adjacency`'s."""
        radj = self._cost_radj
        if radj is None:
            radj = self._cost_radj = [[] for _ in self._paths.adj]
            for u, out in enumerate(self._adjacency()):
                for v, lid, w in out:
                    radj[v].append((u, lid, w))
        return radj

    def _keep(self, s: int, state: tuple) -> None:
        """Keep the search from ``s`` to resume, the :data:`_KEEP_DAGS` most recent."""
        self._dags[s] = state
        if len(self._dags) > _KEEP_DAGS:
            del self._dags[next(iter(self._dags))]

    def _from_source(self, s: int, t: int) -> tuple[list[int], Successors]:
        """``(nodes, successors)`` of the equal-cost paths from ``s`` to ``t`` out of the
        search from ``s`` (resumed until ``t`` is settled): the nodes in order of cost, and
        each node's ``(next node, link)`` on the paths."""
        dist, preds = self._dag(s, t)
        on, stack = {t}, [t]
        while stack:
            for u, _ in preds[stack.pop()]:
                if u not in on:
                    on.add(u)
                    stack.append(u)
        order = sorted(on, key=dist.__getitem__)
        successors: Successors = {v: [] for v in order}
        for v in order:
            for u, lid in preds[v]:
                successors[u].append((v, lid))
        return order, successors

    def _dag(self, s: int, t: int) -> tuple[dict, dict]:
        """``(cost, predecessors)`` per node settled by a Dijkstra from ``s`` on costs
        ``(latency in fs, hops)`` (one int, see :meth:`_adjacency`), run until ``t`` is
        settled (and kept to resume, like :meth:`ShortestPaths.best`'s). A node's predecessors
        are every ``(node, link)`` that reaches it at its least cost."""
        adj = self._adjacency()
        state = self._dags.pop(s, None)
        if state is None:
            state = ({s: 0}, {s: []}, {}, [(0, s)])
        self._keep(s, state)
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
        return dist, preds

    def _meet(self, s: int, t: int) -> tuple[list[int], Successors]:
        """``(nodes, successors)`` of the equal-cost paths from ``s`` to ``t`` as
        :meth:`_from_source` gives them, by Dijkstras from ``s`` (forward) and from ``t``
        (backward) that meet in the middle.

        Each side settles whole levels of cost (side F: every node of cost at most ``rf``
        from ``s``; side B: at most ``rb`` to ``t``), the side whose next level is nearer
        first; ``best`` is the least ``cost(s, u) + link + cost(v, t)`` over the links from
        F to B, checked as the later end settles. Once the next level ``nf`` of F has
        ``nf + rb >= best``, every path of least cost D leaves F by a link whose far end
        ``v`` has ``cost(v, t) <= D - nf <= rb``, so it is in B: then ``best`` is D and
        those links (F to outside F, to B, at cost D) cut every path exactly once; the
        paths are the links of least cost into them from ``s`` and out of them to ``t``.
        The same with the sides swapped when ``rf + nb >= best``. On a fat tree the search
        from an edge switch to one of its pod's settles two levels, not the whole fabric.
        """
        adj, radj = self._adjacency(), self._reverse_adjacency()
        dist: dict[int, int] = {s: 0}
        preds: dict[int, list[tuple[int, int]]] = {s: []}
        sigma: dict[int, int] = {}  # settled forward (the count is :meth:`_dag`'s)
        heap = [(0, s)]
        bdist: dict[int, int] = {t: 0}
        bsucc: dict[int, list[tuple[int, int]]] = {t: []}
        bdone: dict[int, int] = {}  # cost to t of each node settled backward
        bheap = [(0, t)]
        best: float = math.inf
        meet: list[tuple[int, int, int]] = []  # links from F to B of cost ``best``
        pop, push = heapq.heappop, heapq.heappush
        rf = rb = 0
        forward = True  # which side settles the next level
        while True:
            if forward:
                level = rf = heap[0][0]
                while heap and heap[0][0] == level:
                    cost, u = pop(heap)
                    if u in sigma:
                        continue
                    sigma[u] = 1
                    for v, lid, w in adj[u]:
                        b = bdone.get(v)
                        if b is not None:
                            total = cost + w + b
                            if total < best:
                                best, meet = total, [(u, v, lid)]
                            elif total == best:
                                meet.append((u, v, lid))
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
            else:
                level = rb = bheap[0][0]
                while bheap and bheap[0][0] == level:
                    cost, x = pop(bheap)
                    if x in bdone:
                        continue
                    bdone[x] = cost
                    for v, lid, w in radj[x]:
                        if v in sigma:
                            total = dist[v] + w + cost
                            if total < best:
                                best, meet = total, [(v, x, lid)]
                            elif total == best:
                                meet.append((v, x, lid))
                        if v in bdone:
                            continue
                        new = cost + w
                        old = bdist.get(v)
                        if old is None or new < old:
                            bdist[v] = new
                            bsucc[v] = [(x, lid)]
                            push(bheap, (new, v))
                        elif new == old:
                            bsucc[v].append((x, lid))
            if not bdone:  # level 0 of both sides first
                forward = False
                continue
            while heap and heap[0][1] in sigma:
                pop(heap)
            while bheap and bheap[0][1] in bdone:
                pop(bheap)
            nf = heap[0][0] if heap else math.inf
            nb = bheap[0][0] if bheap else math.inf
            if best == math.inf and (not heap or not bheap):
                raise NoRouteError(self._paths.nodes, s, t)
            if nf + rb >= best:  # cut where the paths leave F
                cut = [e for e in meet if e[1] not in sigma]
                break
            if rf + nb >= best:  # cut where the paths enter B
                cut = [e for e in meet if e[0] not in bdone]
                break
            forward = nf <= nb
        # Side F: the cut's tails and their predecessors of least cost back to s.
        successors: Successors = {}
        for u, v, lid in cut:
            nexts = successors.get(u)
            if nexts is None:
                nexts = successors[u] = []
            nexts.append((v, lid))
        stack = list(successors)
        while stack:
            v = stack.pop()
            for u, lid in preds[v]:
                nexts = successors.get(u)
                if nexts is None:
                    nexts = successors[u] = []
                    stack.append(u)
                nexts.append((v, lid))
        on_f = list(successors)
        # Side B: the cut's heads and their successors of least cost on to t (each node's
        # list is the backward search's own, complete once it is settled).
        stack = list({v: None for _, v, _ in cut})
        for v in stack:
            successors[v] = []  # claimed; its list is set when it is popped
        on_b = []
        while stack:
            x = stack.pop()
            on_b.append(x)
            successors[x] = nexts = bsucc[x]
            for y, _ in nexts:
                if y not in successors:
                    successors[y] = []  # claimed; its list is set when it is popped
                    stack.append(y)
        order = sorted(on_f, key=dist.__getitem__) + sorted(
            on_b, key=bdone.__getitem__, reverse=True
        )
        return order, successors
