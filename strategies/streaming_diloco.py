"""Streaming DiLoCo: DiLoCo whose model is synchronised fragment by fragment, at staggered
steps, with each outer all-reduce overlapping inner steps (Douillard et al., 2025)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from options.declare import OptionError
from strategies.aggregate import shard_bounds
from strategies.averaging import (
    check_compression,
    check_quorum,
    heal_with,
    log_compression,
    merge,
    pseudo_gradient,
    quorum_mean,
    take,
)
from strategies.base import Program, Strategy, feedback_state
from strategies.checks import PeerFailure
from strategies.compression.codec import charge
from strategies.context import WorkerContext
from strategies.diloco import OUTER, export_outer, outer_optimizer, restore_outer
from strategies.fields import (
    Algorithm,
    Compressed,
    FaultTolerance,
    MinReplicas,
    OuterLr,
    OuterMomentum,
    Period,
)
from strategies.handles import Handle
from strategies.registry import register

__all__ = ["StreamingDiLoCo"]


@register
class StreamingDiLoCo(Strategy):
    """DiLoCo over ``fragments`` contiguous pieces of the flat model: fragment ``f`` starts
    its outer all-reduce every ``period`` steps, ``f * period // fragments`` steps before
    fragment 0 (see :meth:`syncs_at`); the result is
    applied ``overlap`` inner steps later (the all-reduce runs while the workers go on), and
    merged with the fragment's local values (``alpha`` kept, ``1 - alpha`` taken from the
    new outer parameters).

    Parameters
    ----------
    period
        Inner steps between two synchronisations of one fragment (``H``).
    fragments
        Number of fragments (``P``); each round moves ``1 / fragments`` of the model, so the
        peak bandwidth falls by that factor.
    overlap
        Inner steps the outer all-reduce may take (``tau``; ``0``: wait for it at once).
        At most ``period // fragments``, so a fragment's round ends before its next begins.
    alpha
        Weight of the local fragment in the merge (``0``: replace it, as DiLoCo does).
    outer_lr, outer_momentum, outer_nesterov
        The outer optimizer, one per fragment (see :class:`~strategies.diloco.DiLoCo`).
    compression
        Quantisation of the outer gradients: a single-round ``strategies.compression``
        scheme (``"fp16"``, ``"bf16"``, ``"uint8"``, ``"qsgd"`` ...), so it can overlap.
    algorithm
        Collective algorithm of the all-reduces (the simulator's hint).
    fault_tolerance
        ``"quorum"`` (torchft's fault-tolerant Streaming DiLoCo): each fragment's round has
        its quorum of the live workers, asked for as the previous fragment's round starts
        and taken when this one starts; a worker that restarted is healed there from a live
        peer (its parameters and inner optimizer buffers, and every fragment's outer
        state) and does not contribute to that round's mean. No other fragment's all-reduce
        is in flight then (``overlap <= period // fragments``), so the state is whole. A
        fragment's round whose all-reduce fails is discarded: no outer step, and that
        fragment alone rolls back to its global values; the other fragments keep their
        progress and no step is redone, so ``lost_steps`` stays 0 (the fragment's lost
        progress shows in the loss and time only). Not with ``compression``. ``None``: a
        crash ends the run.
    min_replicas
        With ``fault_tolerance="quorum"``: the fewest workers a round needs.

    One fragment, ``overlap=0`` and ``alpha=0`` is DiLoCo. Bytes per worker and period: one
    all-reduce of ``4 * numel / fragments`` bytes per fragment.

    Examples
    --------
    >>> StreamingDiLoCo(period=12, fragments=3, overlap=2).config()["fragments"]
    3
    >>> StreamingDiLoCo(period=12, fragments=3, overlap=5)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: overlap=5 must be an integer in 0..4 (period // fragments): a fragment's all-reduce must land before its next round
    >>> StreamingDiLoCo(compression="powersgd")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: compression='powersgd' takes 2 all-reduces; Streaming DiLoCo overlaps one: use fp16, bf16, uint8, qsgd, topk or randomk
    """

    name = "streaming_diloco"
    optimizers: dict[str, Any] = {"inner": None, "outer": OUTER}

    period: Period = 60
    fragments: Annotated[int, Field(ge=1)] = 3
    overlap: Annotated[int, Field(ge=0, description="at most period // fragments")] = 1
    alpha: Annotated[float, Field(ge=0, lt=1, description="the local fragment's weight")] = 0.5
    outer_lr: OuterLr = OUTER["lr"]
    outer_momentum: OuterMomentum = OUTER["momentum"]
    outer_nesterov: bool = OUTER["nesterov"]
    compression: Compressed = None
    algorithm: Algorithm = "auto"
    fault_tolerance: FaultTolerance = None
    min_replicas: MinReplicas = 1

    def __post_init__(self) -> None:
        check_quorum(self)
        if self.fault_tolerance is not None and self.compression is not None:
            raise OptionError(
                "compression cannot be combined with fault_tolerance='quorum' yet (a codec's "
                "state is per group); drop one",
                "compression",
            )
        if self.fragments > self.period:
            raise OptionError(
                f"fragments={self.fragments} exceeds period={self.period}: each fragment needs "
                "its own step to start on",
                "fragments",
            )
        room = self.period // self.fragments
        if self.overlap > room:
            raise OptionError(
                f"overlap={self.overlap!r} must be an integer in 0..{room} (period // "
                "fragments): a fragment's all-reduce must land before its next round",
                "overlap",
            )
        self.compression = check_compression(
            self.compression, self.algorithm, averages_changes=True
        )
        if self.compression is not None and self.compression.rounds != 1:
            raise OptionError(
                f"compression={self.compression.name!r} takes {self.compression.rounds} "
                "all-reduces; Streaming DiLoCo overlaps one: use fp16, bf16, uint8, qsgd, "
                "topk or randomk",
                "compression",
            )
        self.optimizers = {
            "inner": None,
            "outer": outer_optimizer(self.outer_lr, self.outer_momentum, self.outer_nesterov),
        }

    def syncs_at(self, fragment: int, step: int) -> bool:
        """Whether ``fragment``'s round ends at ``step``: fragment 0 at ``period``,
        ``2 period`` ..., fragment ``f`` ``f * period // fragments`` steps earlier.

        Examples
        --------
        >>> s = StreamingDiLoCo(period=6, fragments=3, overlap=0)
        >>> [[t for t in range(1, 13) if s.syncs_at(f, t)] for f in range(3)]
        [[6, 12], [4, 10], [2, 8]]
        """
        return step > 0 and (step + fragment * self.period // self.fragments) % self.period == 0

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        check_quorum(self, len(self.workers(world_size)))

    def worker_state(self) -> dict[str, float]:
        """As DiLoCo's: the outer parameters (every fragment's, one copy in all), the outer
        optimizers' state over them, and a compression's residuals (one per fragment).

        >>> StreamingDiLoCo().worker_state()
        {'outer parameters': 1.0, 'outer': 1.0}
        """
        return {"outer parameters": 1.0, "outer": 1.0, **feedback_state(self.compression)}

    def worker(self, w: WorkerContext) -> Program:
        if self.fault_tolerance == "quorum":
            yield from self._quorum_worker(w)
            return
        group = w.comm.new_group(w.workers)
        bounds = shard_bounds(w.numel, self.fragments)
        start = w.parameters()  # the outer parameters; fragment f is start[a:b]
        outers = [w.make_optimizer("outer", start[a:b]) for a, b in bounds]
        codecs = [
            self.compression.codec(w, numel=b - a, salt=f"fragment{f}")
            if self.compression
            else None
            for f, (a, b) in enumerate(bounds)
        ]
        in_flight: dict[int, tuple[Handle[torch.Tensor], int]] = {}  # fragment -> (sum, due step)
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            for f in sorted(in_flight):  # outer gradients due now: step and merge
                handle, due = in_flight[f]
                if w.step >= due:
                    del in_flight[f]
                    yield from self._finish(w, f, bounds[f], start, outers[f], codecs[f], handle)
            for f, (a, b) in enumerate(bounds):  # fragments whose round ends now: start
                if not self.syncs_at(f, w.step):
                    continue
                delta = pseudo_gradient(start[a:b], w.parameters()[a:b])
                codec = codecs[f]
                if codec is not None:
                    yield from charge(w, codec.encode_seconds())
                    handle = codec.start(w, delta, group, algorithm=self.algorithm)
                else:
                    handle = w.comm.all_reduce(
                        delta, op="mean", group=group, algorithm=self.algorithm
                    )
                if self.overlap == 0:
                    yield from self._finish(w, f, (a, b), start, outers[f], codec, handle)
                else:
                    in_flight[f] = (handle, w.step + self.overlap)

    def _finish(
        self,
        w: WorkerContext,
        fragment: int,
        bounds: tuple[int, int],
        start: torch.Tensor,
        outer: Any,
        codec: Any,
        handle: Handle[torch.Tensor],
    ) -> Program:
        mean = yield handle
        if codec is not None:
            yield from charge(w, codec.decode_seconds() * codec.decodes(len(w.workers)))
            log_compression(w, codec)
        outer.step(mean)
        a, b = bounds
        params = w.parameters()
        params[a:b] = merge(params[a:b], start[a:b], float(self.alpha))
        w.load_parameters(params)

    def _quorum_worker(self, w: WorkerContext) -> Program:
        bounds = shard_bounds(w.numel, self.fragments)
        start = w.parameters()  # the outer parameters; fragment f is start[a:b]
        outers = [w.make_optimizer("outer", start[a:b]) for a, b in bounds]
        sizes = [outer.export_numel() for outer in outers]
        in_flight: dict[int, tuple[Handle[torch.Tensor], int]] = {}  # fragment -> (mean, due)
        fresh = w.rejoined  # a restarted worker has no state: it waits for a round first
        pending = w.quorum(min_size=self.min_replicas)  # the next fragment round's
        while not w.done:
            if not fresh:
                grads = yield w.compute_gradients()
                w.apply(grads)
                for f in sorted(in_flight):  # outer gradients due now: step and merge
                    handle, due = in_flight[f]
                    if w.step >= due:
                        del in_flight[f]
                        yield from self._finish_quorum(w, f, bounds[f], start, outers[f], handle)
            syncing = [f for f in range(self.fragments) if self.syncs_at(f, w.step)]
            if not syncing and not fresh:
                continue
            quorum = yield from take(pending)
            try:
                got = yield from heal_with(w, quorum, *self._outer_state(outers, sizes))
            except PeerFailure:
                # A healing failed (the source or the worker it healed crashed): the fresh
                # worker asks again; the source drops the fragment's round, as the other
                # members do when its all-reduce fails.
                if not fresh:
                    params = w.parameters()
                    for f in syncing:
                        a, b = bounds[f]
                        params[a:b] = start[a:b]
                    w.load_parameters(params)
                w.lose()
                pending = w.quorum(min_size=self.min_replicas)
                continue
            pending = w.quorum(min_size=self.min_replicas)
            if got is not None:  # healed: every fragment's outer state came with it
                self._restore_outers(outers, sizes, *got)
                syncing = [f for f in range(self.fragments) if self.syncs_at(f, w.step)]
            fresh = False
            for f in syncing:  # (one fragment per step: their offsets differ)
                a, b = bounds[f]
                delta = pseudo_gradient(start[a:b], w.parameters()[a:b])
                handle = quorum_mean(w, delta, quorum, self.algorithm)
                if self.overlap == 0:
                    yield from self._finish_quorum(w, f, (a, b), start, outers[f], handle)
                else:
                    in_flight[f] = (handle, w.step + self.overlap)

    @staticmethod
    def _outer_state(
        outers: list[Any], sizes: list[int]
    ) -> tuple[torch.Tensor, int, dict[str, float]]:
        """Every fragment's :func:`~strategies.diloco.export_outer`, end to end, and its
        steps (a fragment's count of committed rounds) in the header."""
        states = [export_outer(outer) for outer in outers]
        header = {f"o{f}.steps": numbers["steps"] for f, (_, numbers) in enumerate(states)}
        return torch.cat([flat for flat, _ in states]), sum(sizes), header

    @staticmethod
    def _restore_outers(
        outers: list[Any], sizes: list[int], flat: torch.Tensor, header: dict[str, float]
    ) -> None:
        offset = 0
        for f, (outer, size) in enumerate(zip(outers, sizes)):
            restore_outer(outer, flat[offset : offset + size], {"steps": header[f"o{f}.steps"]})
            offset += size

    def _finish_quorum(
        self,
        w: WorkerContext,
        fragment: int,
        bounds: tuple[int, int],
        start: torch.Tensor,
        outer: Any,
        handle: Handle[torch.Tensor],
    ) -> Program:
        a, b = bounds
        try:
            mean = yield handle
        except PeerFailure:
            # The fragment's round failed on every member: no outer step, and the fragment
            # goes back to its global values (its local progress is lost).
            params = w.parameters()
            params[a:b] = start[a:b]
            w.load_parameters(params)
            w.lose()
            return
        outer.step(mean)
        params = w.parameters()
        params[a:b] = merge(params[a:b], start[a:b], float(self.alpha))
        w.load_parameters(params)
