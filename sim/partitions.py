"""Network partitions as the membership sees them: which live ranks a quorum can hold.

A link that is down with no other path cuts the hosts behind it off; the ranks there are
alive, so a quorum that admitted them would fail every round once the cut is detected. A
partition-aware membership admits only the *primary* part instead: the connected component
(over the links that are up) with the most live ranks of the round, ties going to the one
holding the lowest rank. The membership learns of a link down ``detect`` seconds after it
went down (a heartbeat timeout, as the network gives up on the flows it cut then), and of a
link back at once (the next heartbeat gets through).

Examples
--------
>>> import simpy, topologies
>>> graph = topologies.star(3, bandwidth=1e9, latency=1e-6)
>>> env = simpy.Environment()
>>> parts = Partitions(env, graph, {r: r for r in range(3)}, detect=3.0)
>>> parts.link(("s0", 2), 0.0); parts.primary((0, 1, 2)) is None  # not known yet
True
>>> env.run(until=3.0); sorted(parts.primary((0, 1, 2))), parts.cut_by()
([0, 1], [('s0', 2)])
>>> parts.parts((0, 1, 2))
[frozenset({0, 1}), frozenset({2})]
>>> parts.link(("s0", 2), 1.0); parts.primary((0, 1, 2)) is None
True
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

import networkx as nx
import simpy

from topologies.partitions import components, primary

__all__ = ["Partitions"]

Edge = tuple[Hashable, Hashable]


class Partitions:
    """The links down and the primary part of the live ranks (see the module docstring).

    Parameters
    ----------
    env
        The run's clock.
    graph
        The topology.
    hosts
        Each rank's node in ``graph``.
    detect
        Seconds after a link went down at which the membership knows it.
    """

    def __init__(
        self,
        env: simpy.Environment,
        graph: nx.Graph,
        hosts: Mapping[int, Hashable],
        detect: float,
    ) -> None:
        self.env = env
        self.graph = graph.to_undirected(as_view=True) if graph.is_directed() else graph
        self.hosts = dict(hosts)
        self.detect = detect
        #: Scheduled link repairs still to come (a cut may heal: do not give up on it).
        self.pending_ups = 0
        self._down: dict[frozenset[Hashable], tuple[Edge, float]] = {}
        self._parts: dict[frozenset[frozenset[Hashable]], dict[Hashable, int]] = {}

    def link(self, edge: Edge, factor: float) -> None:
        """The link ``edge`` carries ``factor`` of its bandwidth from now (0: down)."""
        key = frozenset(edge)
        if factor == 0:
            self._down.setdefault(key, (edge, float(self.env.now)))
        else:
            self._down.pop(key, None)

    def cut_by(self) -> list[Edge]:
        """The links down that the membership knows of, the longest down first."""
        now = float(self.env.now)
        known = [(since, edge) for edge, since in self._down.values() if since + self.detect <= now]
        return [edge for _, edge in sorted(known, key=lambda item: item[0])]

    def since(self) -> float:
        """When the first of the links known down went down (a cut's outage starts then)."""
        known = [since for _, since in self._down.values() if since + self.detect <= self.env.now]
        return min(known, default=float(self.env.now))

    def primary(self, ranks: Iterable[int]) -> frozenset[int] | None:
        """The ranks of ``ranks`` (the live ones a round may hold) in the primary part, or
        None when the links known down leave them all connected (the rule is
        :func:`topologies.partitions.primary`, which a testbed's ranks apply too)."""
        ranks = tuple(ranks)
        part = self._components()
        if part is None or not ranks:
            return None
        return primary(part, self.hosts, ranks)

    def parts(self, ranks: Iterable[int]) -> list[frozenset[int]] | None:
        """``ranks`` split into the connected parts the links known down leave (each part
        once, in the order of its first rank), or None when they are all connected."""
        ranks = tuple(ranks)
        part = self._components()
        if part is None or not ranks:
            return None
        groups: dict[int, list[int]] = {}
        for r in ranks:
            groups.setdefault(part[self.hosts[r]], []).append(r)
        if len(groups) == 1:
            return None
        return [frozenset(g) for g in groups.values()]

    def _components(self) -> Mapping[Hashable, int] | None:
        """Each node's part under the links known down (None: none is known down)."""
        known = frozenset(frozenset(edge) for edge in self.cut_by())
        if not known:
            return None
        part = self._parts.get(known)
        if part is None:  # each set of links down is solved once
            part = self._parts[known] = components(self.graph, known)
        return part
