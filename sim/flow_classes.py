"""A lock-step round held as classes of identical flows: exact, and cheap at any size.

A round of a collective (:class:`~sim.flows.FlowBatch`, every message of one step) injected
into an otherwise idle network is simulated by :class:`~sim.flows.FlowTable` row by row, each
row a *class* of flows that hold the same values in every column at every instant: the same
route latency, bytes and ``instant`` flag, and the same rate at every solve. A flow's column
values evolve by elementwise float operations (``end = now + latency``, ``rem - rate * dt``,
``rem / rate``, the completion tests), each rounded exactly as numpy rounds it, so doing them
once per class gives, bit for bit, the values the plain table computes for each of its flows:
the times, events and rates are the plain ones. A hierarchical all-reduce of 131,072 ranks
has one class per round; its rounds cost what a 1-rank round costs.

Classes start from equal ``(latency, bytes, instant)`` (:class:`FlowClasses`) and are split
whenever a solve gives members of one class different rates (the split keeps the state, which
is equal up to then); the rates are solved once per set of transferring classes, by the
network's own :class:`~sim.maxmin.RateSolver` on the classes' full route list, and kept with
the batch (keyed by the solver's :attr:`~sim.maxmin.RateSolver.version`: a changed capacity
solves again). Anything else that touches the table (other traffic, a fault, a cancelled
operation) first *expands* the round into the plain per-flow arrays, in the order the plain
table holds them, and the round goes on there.

Examples
--------
A ring's round: six flows, one class.

>>> import numpy as np, topologies
>>> from sim.flows import FlowBatch
>>> from sim.routing import Router
>>> r = Router(topologies.ring(6, bandwidth=1e9, latency=1e-6))
>>> src = np.arange(6)
>>> c = FlowClasses(FlowBatch(r, src, (src + 1) % 6, np.full(6, 8.0)))
>>> len(c.members), c.members[0].tolist()
(1, [0, 1, 2, 3, 4, 5])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sim.flows import FlowBatch
    from sim.maxmin import RateSolver

__all__ = ["FlowClasses"]

#: A batch is held as classes while it has at most this many (each costs Python per event;
#: beyond, the plain table's numpy passes are cheaper) ...
MAX_CLASSES = 16
#: ... and at least this many flows per class.
MIN_FLOWS_PER_CLASS = 4


class FlowClasses:
    """The flows of a batch, partitioned into classes that evolve identically.

    Attributes
    ----------
    members : list of np.ndarray
        Per class, the flows' positions in the batch (ascending).
    latency, nbytes : list of float
        Per class, its flows' route latency and bytes.
    instant : list of bool
        Per class, whether its flows are delivered at the end of their latency.
    """

    def __init__(self, batch: FlowBatch) -> None:
        self.batch = batch
        keys = np.stack((batch.latency, batch.nbytes, batch.instant.astype(float)))
        # Classes by first appearance in the batch: their order is then fixed by the batch.
        _, first, inverse = np.unique(keys, axis=1, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        label = rank[inverse]
        by = np.argsort(label, kind="stable")
        cuts = np.flatnonzero(np.diff(label[by])) + 1
        self.members: list[np.ndarray] = np.split(by, cuts) if by.size else []
        heads = [int(m[0]) for m in self.members]
        self.latency = [float(batch.latency[i]) for i in heads]
        self.nbytes = [float(batch.nbytes[i]) for i in heads]
        self.instant = [bool(batch.instant[i]) for i in heads]
        #: (solver version, active classes...) -> (rate per class, pattern id).
        self._solves: dict[tuple[int, ...], tuple[dict[int, float], int]] = {}
        self._owners: dict[int, np.ndarray] = {}
        self._unions: dict[tuple[int, ...], np.ndarray] = {}
        #: Whether the batch is worth holding as classes (False once a split makes too many).
        self.worth = self._worth(len(self.members))

    def _worth(self, n_classes: int) -> bool:
        return n_classes <= MAX_CLASSES and n_classes * MIN_FLOWS_PER_CLASS <= self.batch.size

    def union(self, ids: list[int]) -> np.ndarray:
        """The flows of classes ``ids``, ascending (kept: the same sets recur every round)."""
        if len(ids) == 1:
            return self.members[ids[0]]
        key = tuple(sorted(ids))
        flows = self._unions.get(key)
        if flows is None:
            if len(self._unions) >= 256:
                self._unions.clear()
            flows = self._unions[key] = np.sort(np.concatenate([self.members[c] for c in key]))
            flows.flags.writeable = False
        return flows

    def owners(self, owner: int) -> np.ndarray:
        """A read-only array of ``owner`` as long as the batch (slice it for fewer)."""
        full = self._owners.get(owner)
        if full is None:
            self._owners.clear()  # one owner per collective: keep the latest only
            full = self._owners[owner] = np.full(self.batch.size, owner, dtype=np.int64)
            full.flags.writeable = False
        return full

    def solve(self, solver: RateSolver, rows: list[list[Any]]) -> int | None:
        """Set the rate (``row[3]``) of every active row ``[class, rem, size, rate, wave]``,
        splitting a class whose flows get different rates (its row is copied into ``rows``);
        return the solver's pattern id, or None (rows untouched) where the splits would make
        the batch not :attr:`worth` holding as classes."""
        # Keyed by the rows' classes in table order (the same set in another order is
        # another key: solved again, to the same rates).
        key = (solver.version, *[row[0] for row in rows])
        known = self._solves.get(key)
        if known is None:
            flows = np.concatenate([self.members[row[0]] for row in rows])
            rates, pattern = solver.solve(self.batch.routes[flows])
            by_flow = np.empty(self.batch.size)
            by_flow[flows] = rates
            uneven = []
            for i, row in enumerate(rows):
                mine = by_flow[self.members[row[0]]]
                if mine.size > 1 and not (mine == mine[0]).all():
                    uneven.append((i, mine, np.unique(mine).size))
            extra = sum(n - 1 for *_, n in uneven)
            if extra and not self._worth(len(self.members) + extra):
                self.worth = False
                return None
            for i, mine, _ in uneven:
                self._split(rows, i, mine)
            if uneven:  # class ids changed: what was kept refers to the old ones
                self._solves.clear()
                self._unions.clear()
                key = (solver.version, *[row[0] for row in rows])
            per_class = {row[0]: float(by_flow[self.members[row[0]][0]]) for row in rows}
            known = self._solves[key] = (per_class, pattern)
        else:
            solver.hits += 1  # what the solver's own cache would have counted
        per_class, pattern = known
        for row in rows:
            row[3] = per_class[row[0]]
        return pattern

    def _split(self, rows: list[list[Any]], i: int, rates: np.ndarray) -> None:
        """Split the class of ``rows[i]`` by ``rates`` (its members' rates, in order): the
        first rate keeps the class id, each other gets a new class and a copy of the row."""
        c = rows[i][0]
        members = self.members[c]
        _, first, label = np.unique(rates, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        for k, v in enumerate(order.tolist()):
            part = members[label == v]
            if k == 0:
                self.members[c] = part
                continue
            self.members.append(part)
            self.latency.append(self.latency[c])
            self.nbytes.append(self.nbytes[c])
            self.instant.append(self.instant[c])
            rows.append([len(self.members) - 1, *rows[i][1:]])
