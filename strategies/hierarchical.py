"""Hierarchical SGD: all-reduce gradients inside each node, average parameters across nodes."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Annotated, Any

import torch
from pydantic import Field

from options.declare import OneOf
from strategies.averaging import check_compression, group_mean
from strategies.base import Program, Strategy
from strategies.comm import ALGORITHMS_FOR, Group
from strategies.context import WorkerContext
from strategies.fields import Compressed, Period
from strategies.registry import register

__all__ = ["Hierarchical", "node_members"]

#: Inside a node one algorithm runs both the gradient all-reduce and the parameter broadcast.
INTRA_ALGORITHMS = tuple(
    a for a in ALGORITHMS_FOR["all_reduce"] if a in ALGORITHMS_FOR["broadcast"]
)


@register
class Hierarchical(Strategy):
    """Synchronous SGD inside each node, parameter averaging across nodes every ``period``.

    Every step, the workers of a node all-reduce the mean of their gradients (over the fast
    intra-node fabric) and apply it, so the replicas of a node stay equal. Every ``period``
    steps the node leaders (the first worker of each node: ``local_rank == 0`` when a node
    holds only workers) average their parameters across nodes with one all-reduce weighted
    by node size (the sum of ``size_n * x_n``, divided by the number of workers), and each
    leader broadcasts the result inside its node, where the others load it (not a step).
    The global model is the mean of the workers' replicas (``global_model = "average"``).
    With ``period=1`` and plain SGD it equals :class:`~strategies.allreduce.AllReduceSGD`:
    ``sum_n size_n (x - lr g_n) / N = x - lr * mean(g)``.

    A node with one worker skips its intra-node collectives, and a world with one node skips
    the cross-node synchronisation (its replicas are equal already): a group of one needs no
    communication.

    Traffic, for ``N`` workers on ``k`` nodes and a model of ``numel`` float32 parameters
    (``M = 4 * numel`` bytes), with bandwidth-optimal all-reduces (``ring``, or
    ``halving_doubling`` on a power-of-two group: ``2 (g - 1) M`` bytes over ``g`` ranks;
    ``auto`` picks one of them) and broadcasts that send each byte once per receiver
    (``(g - 1) M``):

    * every step: ``sum_n 2 (g_n - 1) M = 2 (N - k) M`` bytes inside the nodes;
    * every ``period`` steps: ``2 (k - 1) M`` bytes across nodes plus ``(N - k) M`` bytes of
      intra-node broadcasts;

    e.g. 2 nodes of 2 workers, ``period=1``: ``4M + 2M + 2M = 8M`` bytes a step.

    Parameters
    ----------
    period
        Steps between cross-node parameter averages (an integer >= 1).
    intra_algorithm
        Algorithm of the intra-node all-reduce and broadcast in the simulator: ``"auto"``
        (as the network engine picks) or one that implements both (``ring``, ``tree``,
        ``direct``).
    inter_algorithm
        Algorithm of the leaders' all-reduce: ``"auto"`` or any all-reduce algorithm.
    compression
        A ``strategies.compression`` scheme for the cross-node exchange, where links are
        slow: the leaders compress what their node's steps changed since the last average
        (scaled by node size), and the scheme's payload replaces the ``2 (k - 1) M`` bytes.

    Examples
    --------
    >>> Hierarchical(period=4, inter_algorithm="ring")
    Hierarchical(period=4, intra_algorithm='auto', inter_algorithm='ring', compression=None)
    >>> Hierarchical(period=0)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: period=0 must be an integer >= 1 (local steps between synchronisations)
    >>> Hierarchical(intra_algorithm="halving_doubling")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: intra_algorithm='halving_doubling' is unknown; use one of auto, ring, tree, direct (runs both the intra-node all-reduce and broadcast)
    >>> node_members((0, 0, 1, 1), [0, 1, 2, 3])
    [[0, 1], [2, 3]]
    """

    name = "hierarchical"
    #: Replicas of different nodes differ between synchronisations: the model is their mean.
    global_model = "average"

    period: Period = 1
    intra_algorithm: Annotated[
        str,
        OneOf(("auto", *INTRA_ALGORITHMS)),
        Field(description="runs both the intra-node all-reduce and broadcast"),
    ] = "auto"
    inter_algorithm: Annotated[str, OneOf(("auto", *ALGORITHMS_FOR["all_reduce"]))] = "auto"
    compression: Compressed = None

    def __post_init__(self) -> None:
        self.compression = check_compression(
            self.compression, self.inter_algorithm, averages_changes=True
        )

    def worker(self, w: WorkerContext) -> Program:
        nodes = node_members(w.nodes, w.workers)
        # Every rank creates every group, in the same order (torch.distributed requires it).
        groups = [w.comm.new_group(members) for members in nodes]
        leaders = w.comm.new_group([members[0] for members in nodes])
        mine = next(i for i, members in enumerate(nodes) if w.rank in members)
        local, size = groups[mine], len(nodes[mine])
        leader = w.rank == local.ranks[0]
        codec = None
        if self.compression is not None and leader:
            codec = self.compression.codec(w, salt="inter-node")
        synced = w.parameters()  # the node's parameters at the last cross-node average
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield from self.average_gradients(w, grads, local)
            w.apply(grads)
            if len(nodes) > 1 and w.step % self.period == 0:
                params = w.parameters()
                if leader and codec is None:
                    params.mul_(size)
                    yield w.comm.all_reduce(
                        params, op="sum", group=leaders, algorithm=self.inter_algorithm
                    )
                    params.div_(len(w.workers))
                elif leader:  # the mean over leaders of size-weighted changes
                    change = (synced - params) * (size * len(nodes) / len(w.workers))
                    mean = yield from group_mean(w, change, leaders, codec, self.inter_algorithm)
                    params = synced - mean
                if local.size > 1:
                    params = yield w.comm.broadcast(
                        params, src=local.ranks[0], group=local, algorithm=self.intra_algorithm
                    )
                w.load_parameters(params)
                synced = params

    def average_gradients(
        self, w: WorkerContext, grads: torch.Tensor, local: Group
    ) -> Generator[Any, Any, torch.Tensor]:
        """The gradient exchange: the mean of the node's gradients (``local``'s ranks).

        One small sub-program (``yield from``), so that a variant (compression) can replace
        it without touching the rest of the step."""
        if local.size == 1:
            return grads
        grads = yield w.comm.all_reduce(
            grads, op="mean", group=local, algorithm=self.intra_algorithm
        )
        return grads


def node_members(nodes: Sequence[int], workers: Sequence[int]) -> list[list[int]]:
    """The workers of each node, nodes in order of their first worker, ranks sorted.

    Every rank computes the same answer from the same ``w.nodes``, so the groups built from
    it are created in the same order everywhere."""
    by_node: dict[int, list[int]] = {}
    for rank in sorted(workers):
        by_node.setdefault(nodes[rank], []).append(rank)
    return list(by_node.values())
