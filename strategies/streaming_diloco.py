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
    log_compression,
    merge,
    pseudo_gradient,
)
from strategies.base import Program, Strategy
from strategies.compression.codec import charge
from strategies.context import WorkerContext
from strategies.diloco import OUTER, outer_optimizer
from strategies.fields import Algorithm, Compressed, OuterLr, OuterMomentum, Period
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

    def __post_init__(self) -> None:
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

    def worker(self, w: WorkerContext) -> Program:
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
