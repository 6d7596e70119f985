"""Which algorithm runs a collective: argument checks, the support table and ``auto``.

``auto`` follows a rule (:mod:`sim.collectives.rules`): ``commsim`` (the default, below),
``gloo`` or ``nccl`` (what those libraries run), chosen per network (``collectives="gloo"``,
or ``{"rule": "nccl:channels=4", "all_reduce": "ring"}`` with collectives fixed by name).

The ``commsim`` rule picks like MPICH does, from the message size and the topology:

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

from sim.collectives import direct, gloo, halving_doubling, hierarchical, nccl, ring, tree
from sim.collectives.rules import DEFAULT_RULE, GLOO, NCCL, Rule, parse_rule
from sim.collectives.schedule import Schedule
from sim.routing import NetworkError, Router

__all__ = [
    "ALGORITHMS",
    "check_auto",
    "nccl_model",
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
ALGORITHMS = (
    "auto",
    "ring",
    "tree",
    "halving_doubling",
    "direct",
    "hierarchical",
    "ring_all_reduce",
    "ring_to_root",
)
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
        "ring_all_reduce": gloo.reduce_scatter,
    },
    "all_gather": {
        "ring": ring.all_gather,
        "direct": direct.all_gather,
        "halving_doubling": halving_doubling.all_gather,
    },
    "broadcast": {"ring": ring.broadcast, "tree": tree.broadcast, "direct": direct.broadcast},
    "reduce": {
        "ring": ring.reduce,
        "tree": tree.reduce,
        "direct": direct.reduce,
        "ring_to_root": gloo.reduce,
    },
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
    """The ``commsim`` rule (see the module docstring).

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


def _nodes(router: Router, members: np.ndarray) -> np.ndarray:
    """Each member's node, numbered from 0; a host without a ``node`` attribute is its own."""
    g = router.graph
    labels = [g.nodes[router.hosts[r]].get("node") for r in members.tolist()]
    if any(v is None for v in labels):
        return np.arange(members.size)
    index: dict[object, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in labels], dtype=np.int64)


def nccl_model(router: Router, members: np.ndarray, channels: int) -> nccl.CostModel:
    """NCCL's cost model for ``members`` on this network.

    The bandwidths and the latency are those of the ring's own hops (local rank ``i`` to
    ``i+1``): their narrowest inside a node and between nodes, and their slowest between
    nodes; with every rank on one node the model has no network part.

    Two nodes of four GPUs, a 10 GB/s NIC per GPU: the node's uplink carries 40 GB/s, as
    NCCL's channels spread over its four NICs do.

    >>> import topologies
    >>> g = topologies.hierarchical(2, 4, intra_bandwidth=100e9, inter_bandwidth=10e9)
    >>> m = nccl_model(Router(g), np.arange(8), 2)
    >>> m.n_nodes, m.bw_intra, m.bw_inter
    (2, 100000000000.0, 40000000000.0)
    """
    node = _nodes(router, members)
    after = np.roll(np.arange(members.size), -1)
    routes = router.routes(members, members[after])
    bandwidth = router.route_bottleneck[routes]
    latency = router.route_latency[routes]
    cross = node != node[after]
    inter = float(bandwidth[cross].min()) if cross.any() else float(bandwidth.min())
    intra = float(bandwidth[~cross].min()) if (~cross).any() else inter
    return nccl.CostModel(
        n_ranks=int(members.size),
        n_nodes=int(node.max()) + 1,
        bw_intra=intra,
        bw_inter=inter,
        latency_inter=float(latency[cross].max()) if cross.any() else 0.0,
        channels=channels,
    )


def _auto(
    rule: Rule, router: Router, op: str, nbytes: float, members: np.ndarray, grid: np.ndarray | None
) -> tuple[str, int | None]:
    """The algorithm ``rule`` picks for this call, and NCCL's channels (None: the builder's)."""
    if rule.name == "gloo":
        return GLOO[op], None
    if rule.name != "nccl":
        return choose(op, nbytes, members.size, grid), None
    # PyTorch's NCCL barrier is an all-reduce of one float.
    size = 4.0 if op == "barrier" else nbytes
    if op in NCCL:
        algorithm = NCCL[op]
    elif members.size < 2:
        algorithm = "ring"
    else:
        algorithm = nccl_model(router, members, rule.channels).all_reduce(size)
    if algorithm == "direct":  # send/recv: NCCL's p2p channels are not modelled
        return algorithm, None
    return algorithm, nccl.channels_for(size, rule.channels)


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
    rule: str = DEFAULT_RULE,
) -> tuple[list[Schedule], np.ndarray]:
    """Check the arguments and return ``(channels, members)`` for a collective.

    ``members[i]`` is the network rank of local rank ``i`` of the schedules; ``rule`` is what
    ``auto`` follows (:mod:`sim.collectives.rules`).
    """
    channels, members, _ = _plan(router, op, nbytes, ranks, algorithm, root, parse_rule(rule))
    return channels, members


def _plan(
    router: Router,
    op: str,
    nbytes: float,
    ranks: Iterable[int] | None,
    algorithm: str,
    root: int | None,
    rule: Rule,
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
    split: int | None = None
    if algorithm == "auto":
        algorithm, split = _auto(rule, router, op, nbytes, members, grid)
    if algorithm not in _TABLE[op]:
        raise NetworkError(
            f"algorithm {algorithm!r} does not implement {op}; use one of "
            f"auto, {', '.join(supported(op))}"
        )
    build = _TABLE[op][algorithm]
    if algorithm == "hierarchical" and grid is None:
        raise NetworkError(why_not)

    def built(size: float) -> list[Schedule]:
        if algorithm == "hierarchical":
            out = build(grid, size)
        elif op in ROOTED_OPS:
            out = build(n, size, local_root)
        else:
            out = build(n, size)
        return out if isinstance(out, list) else [out]

    # NCCL cuts the message into one slice per channel, each on its own ring or tree. Each
    # channel keeps the pipeline depth of the whole message, so that channels sharing one
    # path take the time one schedule takes (commsim's chunks are coarser than NCCL's: split
    # further, a deep pipeline's fill would grow with the channels).
    if split is None:
        channels = built(nbytes)
    elif algorithm == "tree" and op in ("all_reduce", "barrier"):
        size = nbytes if op == "all_reduce" else 0.0
        channels = tree.all_reduce(n, size, split, ring.pipeline_chunks(size / 2))
    elif algorithm == "ring" and op in ("broadcast", "reduce"):
        depth = ring.pipeline_chunks(nbytes)
        chain = ring.broadcast if op == "broadcast" else ring.reduce
        channels = [chain(n, nbytes / split, local_root, depth) for _ in range(split)]
    else:
        channels = [s for _ in range(split) for s in built(nbytes / split)]
    return channels, members, algorithm


def check_auto(auto: str | Mapping[str, str]) -> dict[str, str]:
    """What ``auto`` stands for, checked: a rule's name, or algorithms fixed per collective
    (with ``"rule"`` for the others); a one-line error otherwise.

    >>> check_auto("gloo"), check_auto({"rule": "nccl", "all_reduce": "ring"})
    ({'rule': 'gloo'}, {'rule': 'nccl:channels=2', 'all_reduce': 'ring'})
    >>> check_auto({"all_reduce": "butterfly"})
    Traceback (most recent call last):
    ...
    sim.routing.NetworkError: collectives: all_reduce has no algorithm 'butterfly'; use one of ring, tree, halving_doubling, direct, hierarchical
    """
    if isinstance(auto, str):
        auto = {"rule": auto}
    if not isinstance(auto, Mapping):
        raise NetworkError(
            f"collectives: {auto!r} must name a rule (commsim, gloo, nccl) or map "
            "collectives to algorithms, e.g. {'all_reduce': 'ring'}"
        )
    checked: dict[str, str] = {}
    for op, algorithm in auto.items():
        if op == "rule":
            checked[op] = parse_rule(algorithm).spec
            continue
        if op not in _TABLE:
            raise NetworkError(
                f"collectives: {op!r} is not a collective; use one of rule, {', '.join(_TABLE)}"
            )
        if algorithm not in _TABLE[op]:
            raise NetworkError(
                f"collectives: {op} has no algorithm {algorithm!r}; use one of "
                f"{', '.join(_TABLE[op])}"
            )
        checked[op] = algorithm
    return checked


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

    Or it may follow a library's rule (:mod:`sim.collectives.rules`), which a run records:

    >>> planner = Planner(Router(topologies.ring(4)), auto="gloo")
    >>> _ = planner.plan("reduce_scatter", 8.0, None, "auto", None)
    >>> planner.rule.spec, planner.auto_choices
    ('gloo', {'reduce_scatter': ['ring_all_reduce']})
    """

    def __init__(self, router: Router, auto: str | Mapping[str, str] | None = None) -> None:
        self.router = router
        self.auto = check_auto(auto or {})
        #: What ``auto`` follows where no algorithm is fixed for a collective.
        self.rule = parse_rule(self.auto.get("rule", DEFAULT_RULE))
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
            return plan(
                self.router,
                op,
                nbytes,
                ranks=ranks,
                algorithm=algorithm,
                root=root,
                rule=self.rule.spec,
            )
        if planned is None:
            fixed = self.auto.get(op, "auto") if algorithm == "auto" else algorithm
            channels, members, chosen = _plan(
                self.router, op, nbytes, ranks, fixed, root, self.rule
            )
            if algorithm == "auto":
                self._auto.setdefault(op, set()).add(chosen)
            planned = channels, members
            if len(self._plans) >= PLANS_KEPT:
                del self._plans[next(iter(self._plans))]
            self._plans[key] = planned
        return planned
