"""Network partitions on a testbed run, as its ranks see them: which ranks a link down cuts
off, when they know it, and what a quorum records of it.

A testbed's link agent (:mod:`real.testbed.links`) writes every link change it makes, with
its link and time, to the run's store. A rank reads them (:meth:`Partitions.refresh`) and
knows a link down ``detect`` seconds after it went down (a heartbeat timeout, as in
``sim``), a link back at once; who a quorum may hold is then ``sim``'s rule,
:func:`topologies.partitions.primary` over the testbed's topology: the largest connected part
of the live ranks, ties to the lowest rank. The store is on the management network, which
no link fault touches, so a cut-off rank still reads and writes it: it announces itself for
quorums and waits, left out until its link is back.

What a quorum decided is written with its members (:mod:`real.membership`): the ranks cut
off then (``out``). The first member to read a quorum records its *marks* on the store
(:meth:`Partitions.mark`): each rank newly cut off (a ``cut_off`` row, as of when the links
went down) or admitted again (``reconnect``, healed as a restarted rank is), which the
launcher's replay gives the ledger (:meth:`strategies.ledger.Ledger.cut`), and whether each
rank is out now, which the launcher's stop reads (a rank cut off leaves the stop).

Examples
--------
>>> import torch.distributed as dist
>>> store = dist.HashStore()
>>> store.set("start", "0")
>>> store.set("testbed/links/0", '1.0 link_down ["s0", "2"]'); _ = store.add("testbed/links", 1)
>>> parts = Partitions(store, [("s0", 0), ("s0", 1), ("s0", 2)], [0, 1, 2],
...                    detect=2.0, repairs=0, clock=lambda: 2.5)
>>> parts.primary([0, 1, 2]) is None  # down since 1 s, known at 3 s
True
>>> parts.clock = lambda: 3.0
>>> sorted(parts.primary([0, 1, 2])), parts.cut_by(), parts.separated(0, [1, 2])
([0, 1], [('s0', 2)], ((2,), 3.0))
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import networkx as nx

from topologies.partitions import components, primary, stuck

__all__ = ["Partitions", "cuts", "is_out"]

LINKS_KEY = "testbed/links"  # as real.testbed.links writes them
_MARKS, _MARK = "partitions/marks", "partitions/marks/{index}"
_OUT, _FORMED = "partitions/out/{rank}", "partitions/formed/{where}{q}"

Edge = tuple[Hashable, Hashable]


class Partitions:
    """One rank's view of the testbed's links down (see the module docstring).

    Parameters
    ----------
    store
        A client of the run's store (the caller serialises its calls).
    links
        The topology's links (its own node names: a schedule's, as strings, are matched).
    hosts
        Each rank's node, by rank.
    detect
        Seconds after a link went down at which the ranks know it.
    repairs
        How many ``link_down`` events of the schedule have an ``until`` (a cut may heal).
    clock
        Seconds on the run's clock (the agent's, shared by every rank).
    """

    def __init__(
        self,
        store: Any,
        links: Sequence[tuple[Hashable, Hashable]],
        hosts: Sequence[Hashable],
        detect: float,
        repairs: int,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.graph = nx.Graph(list(links))
        self._nodes = {str(node): node for node in self.graph.nodes}
        self.hosts = dict(enumerate(hosts))
        self.detect, self.repairs, self.clock = detect, repairs, clock
        self._seen = 0  # link changes read so far
        self._ups = 0  # link_up changes read
        self._down: dict[frozenset[Hashable], tuple[Edge, float]] = {}
        self._parts: dict[frozenset[frozenset[Hashable]], dict[Hashable, int]] = {}

    def refresh(self) -> None:
        """Read the link changes the agent made since the last call."""
        count = int(self.store.add(LINKS_KEY, 0))
        while self._seen < count:
            key = f"{LINKS_KEY}/{self._seen}"
            self._seen += 1
            if not self.store.check([key]):
                continue
            at, event, *link = bytes(self.store.get(key)).decode().split(" ", 2)
            if not link:
                continue
            ends = json.loads(link[0])
            edge = (self._nodes[str(ends[0])], self._nodes[str(ends[1])])
            if event == "link_down":
                self._down.setdefault(frozenset(edge), (edge, float(at)))
            elif event == "link_up":
                self._ups += 1
                self._down.pop(frozenset(edge), None)

    def down(self) -> list[tuple[Edge, float]]:
        """Every link down now (known or not yet), and since when."""
        return [(edge, since) for edge, since in self._down.values()]

    def _known(self) -> list[tuple[float, Edge]]:
        now = self.clock()
        return sorted(
            (since, edge) for edge, since in self._down.values() if since + self.detect <= now
        )

    def cut_by(self) -> list[Edge]:
        """The links down that the ranks know of, the longest down first."""
        self.refresh()
        return [edge for _, edge in self._known()]

    def since(self) -> float:
        """When the first of the links known down went down."""
        self.refresh()
        return min((since for since, _ in self._known()), default=self.clock())

    def _part(self, down: Iterable[Edge]) -> dict[Hashable, int]:
        key = frozenset(frozenset(edge) for edge in down)
        if key not in self._parts:
            self._parts[key] = components(self.graph, key)
        return self._parts[key]

    def primary(self, ranks: Iterable[int]) -> frozenset[int] | None:
        """The ranks of ``ranks`` in the primary part (``sim``'s rule), or None when the
        links known down leave them connected."""
        known = self.cut_by()
        ranks = tuple(ranks)
        if not known or not ranks:
            return None
        return primary(self._part(known), self.hosts, ranks)

    def stuck(self, left: frozenset[int], live: Iterable[int], min_size: int) -> str | None:
        """The run's one-line end when ``left`` (the primary part) is smaller than
        ``min_size`` and no link repair is to come; None while one is (the quorum waits)."""
        if len(left) >= min_size or self._ups < self.repairs:
            return None
        out = [r for r in live if r not in left]
        return stuck(self.cut_by(), out, left, min_size)

    def separated(self, rank: int, ranks: Iterable[int]) -> tuple[tuple[int, ...], float]:
        """The ranks of ``ranks`` that the links down now (known or not yet) cut off from
        ``rank``, and when the ranks know it (the detection of the first of the links whose
        failure separates them); ``((), now)`` when none is."""
        self.refresh()
        ranks = tuple(r for r in ranks if r != rank)
        down = sorted((since, edge) for edge, since in self._down.values())
        for i in range(1, len(down) + 1):
            part = self._part([edge for _, edge in down[:i]])
            mine = part[self.hosts[rank]]
            cut = tuple(r for r in ranks if part[self.hosts[r]] != mine)
            if cut:
                return cut, down[i - 1][0] + self.detect
        return (), self.clock()

    def mark(self, where: str, q: int, cut: Sequence[int], back: Sequence[int]) -> None:
        """Record, once per quorum (the first member to call it), the ranks quorum ``q`` of
        ``where`` cut off (as of when the links went down) and admitted again (now)."""
        if not cut and not back:
            return
        token = uuid.uuid4().hex  # this call's own: the one that set it records the marks
        key = _FORMED.format(where=where, q=q)
        if bytes(self.store.compare_set(key, "", token)).decode() != token:
            return  # another member recorded it
        now, since = self.clock(), self.since()
        for rank, out, at in [(r, True, since) for r in cut] + [(r, False, now) for r in back]:
            self.store.set(_OUT.format(rank=rank), "1" if out else "0")
            index = int(self.store.add(_MARKS, 1)) - 1
            self.store.set(_MARK.format(index=index), json.dumps([now, rank, out, at]))


def is_out(store: Any, rank: int) -> bool:
    """Whether a quorum left ``rank`` cut off and none admitted it again since."""
    key = _OUT.format(rank=rank)
    return bool(store.check([key])) and bytes(store.get(key)).decode() == "1"


def cuts(store: Any) -> list[tuple[float, int, bool, float]]:
    """What the quorums recorded (:meth:`Partitions.mark`), in time order: ``(when, rank,
    cut off, since)``, for the launcher's replay (:meth:`strategies.ledger.Ledger.cut`)."""
    out = []
    for index in range(int(store.add(_MARKS, 0))):
        key = _MARK.format(index=index)
        if store.check([key]):
            now, rank, cut, since = json.loads(bytes(store.get(key)).decode())
            out.append((float(now), int(rank), bool(cut), float(since)))
    return sorted(out)
