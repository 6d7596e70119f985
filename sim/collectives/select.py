"""Which algorithm runs a collective: argument checks, the support table and the ``auto`` rule.

``auto`` picks like NCCL/MPICH do, from the message size and the topology:

* ``all_reduce``: ``hierarchical`` when the participating hosts carry ``node`` attributes
  spanning two or more nodes with more than one rank on some node; otherwise
  ``halving_doubling`` below :data:`SMALL_MESSAGE_BYTES` (latency-bound: ``2 log2 n`` steps)
  and ``ring`` from there on (bandwidth-optimal, neighbour traffic only);
* ``reduce_scatter``, ``all_gather``: ``halving_doubling`` when small, else ``ring``;
* ``broadcast``, ``reduce``: binomial ``tree`` when small, else pipelined ``ring`` (chain);
* ``all_to_all``: ``direct``; ``gather``, ``scatter``: ``tree``; ``barrier``:
  ``halving_doubling`` (dissemination, ``ceil(log2 n)`` rounds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from sim.collectives import direct, halving_doubling, hierarchical, ring, tree
from sim.collectives.schedule import Schedule
from sim.routing import NetworkError, Router

__all__ = [
    "ALGORITHMS",
    "check_auto",
    "OPS",
    "ROOTED_OPS",
    "SMALL_MESSAGE_BYTES",
    "Planner",
    "choose",
    "plan",
    "supported",
]

#: Below this many bytes per rank a collective is latency-bound and ``auto`` avoids rings.
SMALL_MESSAGE_BYTES = 256 * 1024

OPS = (
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "broadcast",
    "reduce",
    "all_to_all",
    "barrier",
    "gather",
    "scatter",
)
ROOTED_OPS = ("broadcast", "reduce", "gather", "scatter")
ALGORITHMS = ("auto", "ring", "tree", "halving_doubling", "direct", "hierarchical")
#: Plans a :class:`Planner` keeps: a training run repeats a few, and a plan over thousands of
#: ranks (with its routed rounds) can take megabytes. The oldest goes first.
PLANS_KEPT = 32

Builder = Callable[..., "Schedule | list[Schedule]"]

_TABLE: dict[str, dict[str, Builder]] = {
    "all_reduce": {
        "ring": ring.all_reduce,
        "tree": tree.all_reduce,
        "halving_doubling": halving_doubling.all_reduce,
        "direct": direct.all_reduce,
        "hierarchical": hierarchical.all_reduce,
    },
    "reduce_scatter": {
        "ring": ring.reduce_scatter,
        "direct": direct.reduce_scatter,
        "halving_doubling": halving_doubling.reduce_scatter,
    },
    "all_gather": {
        "ring": ring.all_gather,
        "direct": direct.all_gather,
        "halving_doubling": halving_doubling.all_gather,
    },
    "broadcast": {"ring": ring.broadcast, "tree": tree.broadcast, "direct": direct.broadcast},
    "reduce": {"ring": ring.reduce, "tree": tree.reduce, "direct": direct.reduce},
    "all_to_all": {"ring": ring.all_to_all, "direct": direct.all_to_all},
    "gather": {"tree": tree.gather, "direct": direct.gather},
    "scatter": {"tree": tree.scatter, "direct": direct.scatter},
    "barrier": {
        "ring": lambda n, _: ring.all_reduce(n, 0.0),
        "tree": lambda n, _: tree.all_reduce(n, 0.0),
        "halving_doubling": lambda n, _: halving_doubling.barrier(n),
        "direct": lambda n, _: direct.barrier(n),
        "hierarchical": lambda grid, _: hierarchical.all_reduce(grid, 0.0),
    },
}


def supported(op: str) -> tuple[str, ...]:
    """Algorithms that implement ``op`` (besides ``auto``).

    >>> supported("gather")
    ('tree', 'direct')
    """
    return tuple(_TABLE[op])


def _grid(router: Router, members: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Local indices as ``[node, local]`` from the hosts' ``node`` attrs, or why not."""
    g = router.graph
    nodes = [g.nodes[router.hosts[r]].get("node") for r in members.tolist()]
    if any(v is None for v in nodes):
        return None, (
            "algorithm='hierarchical' needs a 'node' attribute on every participating "
            "host; build with topologies.hierarchical or set g.nodes[h]['node']"
        )
    by_node: dict[object, list[int]] = {}
    for i, v in enumerate(nodes):
        by_node.setdefault(v, []).append(i)
    sizes = sorted(len(v) for v in by_node.values())
    if sizes[0] != sizes[-1]:
        return None, (
            "algorithm='hierarchical' needs the same number of ranks on every node, "
            f"got {sizes}; pass ranks= that cover the nodes evenly"
        )
    return np.array(list(by_node.values()), dtype=np.int64), ""


def choose(op: str, nbytes: float, n: int, grid: np.ndarray | None) -> str:
    """The ``auto`` rule (see the module docstring).

    >>> choose("all_reduce", 1e9, 8, None), choose("all_reduce", 1e3, 8, None)
    ('ring', 'halving_doubling')
    >>> choose("all_reduce", 1e3, 8, np.arange(8).reshape(2, 4))
    'hierarchical'
    """
    small = nbytes < SMALL_MESSAGE_BYTES
    if op == "all_reduce":
        if grid is not None and grid.shape[0] > 1 and grid.shape[1] > 1:
            return "hierarchical"
        return "halving_doubling" if small else "ring"
    if op in ("reduce_scatter", "all_gather"):
        return "halving_doubling" if small else "ring"
    if op in ("broadcast", "reduce"):
        return "tree" if small else "ring"
    return {
        "all_to_all": "direct",
        "gather": "tree",
        "scatter": "tree",
        "barrier": "halving_doubling",
    }[op]


def _members(router: Router, ranks: Iterable[int] | None) -> np.ndarray:
    if ranks is None:
        return np.arange(router.n_hosts)
    try:
        ranks = list(ranks)
        members = [int(r) for r in ranks]
        ok = all(float(r) == m for r, m in zip(ranks, members, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok or not members or any(not 0 <= r < router.n_hosts for r in members):
        raise NetworkError(
            f"ranks must be a non-empty list of host ranks in "
            f"0..{router.n_hosts - 1}, got {ranks!r}"
        )
    if len(set(members)) != len(members):
        raise NetworkError(f"ranks lists a rank twice: {ranks!r}; give each rank once")
    return np.array(members, dtype=np.int64)


def plan(
    router: Router,
    op: str,
    nbytes: float,
    *,
    ranks: Iterable[int] | None = None,
    algorithm: str = "auto",
    root: int | None = None,
) -> tuple[list[Schedule], np.ndarray]:
    """Check the arguments and return ``(channels, members)`` for a collective.

    ``members[i]`` is the network rank of local rank ``i`` of the schedules.
    """
    channels, members, _ = _plan(router, op, nbytes, ranks, algorithm, root)
    return channels, members


def _plan(
    router: Router,
    op: str,
    nbytes: float,
    ranks: Iterable[int] | None,
    algorithm: str,
    root: int | None,
) -> tuple[list[Schedule], np.ndarray, str]:
    """:func:`plan`, and the algorithm it runs (what ``auto`` chose)."""
    if op not in OPS:
        raise NetworkError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    if algorithm not in ALGORITHMS:
        raise NetworkError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    members = _members(router, ranks)
    n = members.size
    local_root = 0
    if op in ROOTED_OPS and root is not None:
        hits = np.flatnonzero(members == root) if isinstance(root, (int, np.integer)) else []
        if isinstance(root, bool) or len(hits) != 1:
            raise NetworkError(f"root must be one of the participating ranks, got {root!r}")
        local_root = int(hits[0])
    elif root is not None:
        raise NetworkError(f"root is only for {', '.join(ROOTED_OPS)}; drop root= for {op}")
    grid, why_not = _grid(router, members)
    if algorithm == "auto":
        algorithm = choose(op, nbytes, n, grid)
    if algorithm not in _TABLE[op]:
        raise NetworkError(
            f"algorithm {algorithm!r} does not implement {op}; use one of "
            f"auto, {', '.join(supported(op))}"
        )
    build = _TABLE[op][algorithm]
    if algorithm == "hierarchical":
        if grid is None:
            raise NetworkError(why_not)
        built = build(grid, nbytes)
    elif op in ROOTED_OPS:
        built = build(n, nbytes, local_root)
    else:
        built = build(n, nbytes)
    return (built if isinstance(built, list) else [built]), members, algorithm


def check_auto(auto: Mapping[str, str]) -> dict[str, str]:
    """``auto``'s fixed algorithms per collective, checked; a one-line error otherwise.

    >>> check_auto({"all_reduce": "butterfly"})
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: collectives: all_reduce has no algorithm 'butterfly'; use one of ring, tree, halving_doubling, direct, hierarchical
    """
    for op, algorithm in auto.items():
        if op not in _TABLE:
            raise NetworkError(
                f"collectives: {op!r} is not a collective; use one of {', '.join(_TABLE)}"
            )
        if algorithm not in _TABLE[op]:
            raise NetworkError(
                f"collectives: {op} has no algorithm {algorithm!r}; use one of "
                f"{', '.join(_TABLE[op])}"
            )
    return dict(auto)


class Planner:
    """:func:`plan` for one router, remembering its answers.

    Schedules are immutable, and a training run asks for the same few collectives (same op,
    size, ranks, algorithm and root) thousands of times; the same plan object also lets each
    round keep its routed flows (:meth:`~sim.collectives.schedule.Step.flows`) across calls.

    Examples
    --------
    >>> import topologies
    >>> planner = Planner(Router(topologies.ring(4)))
    >>> a = planner.plan("all_reduce", 8.0, [0, 1, 2, 3], "auto", None)
    >>> planner.plan("all_reduce", 8.0, range(4), "auto", None) is a
    True
    >>> planner.auto_choices
    {'all_reduce': ['halving_doubling']}

    ``auto`` may stand for a fixed algorithm per collective instead of the rule: what a
    library runs (``commsim calibrate`` finds gloo's ring on a two-level tree, where the rule
    would pick ``hierarchical``):

    >>> planner = Planner(Router(topologies.ring(4)), auto={"all_reduce": "ring"})
    >>> _ = planner.plan("all_reduce", 8.0, None, "auto", None)
    >>> planner.auto_choices
    {'all_reduce': ['ring']}
    """

    def __init__(self, router: Router, auto: Mapping[str, str] | None = None) -> None:
        self.router = router
        self.auto = check_auto(auto or {})
        self._plans: dict[tuple[Any, ...], tuple[list[Schedule], np.ndarray]] = {}
        self._auto: dict[str, set[str]] = {}

    @property
    def auto_choices(self) -> dict[str, list[str]]:
        """The algorithms ``auto`` chose, by collective: what a run records it resolved to."""
        return {op: sorted(chosen) for op, chosen in sorted(self._auto.items())}

    def plan(
        self, op: str, nbytes: float, ranks: Iterable[int] | None, algorithm: str, root: Any
    ) -> tuple[list[Schedule], np.ndarray]:
        """:func:`plan` (its arguments checked the same way), cached."""
        if ranks is not None:
            ranks = list(ranks)
        try:
            # The root's type is in the key: True == 1, but only 1 is a valid root.
            key = (op, nbytes, None if ranks is None else tuple(ranks), algorithm, type(root), root)
            planned = self._plans.get(key)
        except TypeError:  # an unhashable argument: plan() says what is wrong with it
            return plan(self.router, op, nbytes, ranks=ranks, algorithm=algorithm, root=root)
        if planned is None:
            fixed = self.auto.get(op, "auto") if algorithm == "auto" else algorithm
            channels, members, chosen = _plan(self.router, op, nbytes, ranks, fixed, root)
            if algorithm == "auto":
                self._auto.setdefault(op, set()).add(chosen)
            planned = channels, members
            if len(self._plans) >= PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
            self._plans[key] = planned
        return planned
