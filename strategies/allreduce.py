"""Synchronous data-parallel SGD: average gradients with one all-reduce per step."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from options.declare import OptionError
from strategies.averaging import check_compression, group_mean
from strategies.base import Program, Strategy
from strategies.buckets import FIRST_BUCKET_MB
from strategies.checks import Group, PeerFailure
from strategies.context import WorkerContext
from strategies.fields import Algorithm, Compressed, FaultTolerance, MinReplicas
from strategies.handles import all_of
from strategies.membership import heal
from strategies.registry import register

__all__ = ["AllReduceSGD"]


@register
class AllReduceSGD(Strategy):
    """Every worker computes a gradient, all-reduces the mean, and applies it to its replica.

    Parameters
    ----------
    algorithm
        Collective algorithm the simulator decomposes the all-reduce into (``"auto"`` picks
        as the network engine does). The real backend leaves the choice to gloo/NCCL.
    compression
        A ``strategies.compression`` scheme for the gradients (``"fp16"``, ``"topk"``,
        ``{"name": "powersgd", "rank": 4}`` ...): its encoded payload is what travels, by
        the collective the scheme composes with (see ``docs/strategies.md``).

    fault_tolerance
        ``"quorum"`` (torchft's fault-tolerant DDP): every step starts with a quorum of the
        live workers (``w.quorum``) and averages over it; a worker that restarted is healed
        from a live peer first (its state, charged on the network); a step whose all-reduce
        fails (a member crashed) is dropped, not retried: its gradients are lost
        (``lost_steps``, ``lost_samples``). ``None``: a crash ends the run.
    min_replicas
        With ``fault_tolerance="quorum"``: the fewest workers a step needs (it waits for
        restarted ones below that).
    bucket_mb
        Overlap the all-reduce with backward, as DDP does: the gradient comes in buckets of
        this many MiB (DDP's ``bucket_cap_mb``, 25 there) as backward produces them, last
        parameters first (``w.compute_gradients_in_buckets``), and each bucket's all-reduce
        starts as soon as it is ready; the step is applied once every bucket is reduced.
        ``None`` (the default): one all-reduce of the whole gradient after backward. The
        numbers are the same either way in ``sim`` (each element is summed in rank order).
    first_bucket_mb
        With ``bucket_mb``: the cap of the bucket of the first parameters, which backward
        produces last (DDP's 1 MiB: a short all-reduce after backward ends).

    Bytes per worker and step: one all-reduce of ``4 * numel`` bytes (a ring sends
    ``2 (n - 1) / n`` of it), or the scheme's payload.

    Examples
    --------
    >>> AllReduceSGD(algorithm="ring")
    AllReduceSGD(algorithm='ring', compression=None, fault_tolerance=None, min_replicas=1, bucket_mb=None, first_bucket_mb=1.0)
    >>> AllReduceSGD(algorithm="butterfly")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: algorithm='butterfly' is unknown; use one of auto, ring, tree, halving_doubling, direct, hierarchical
    """

    name = "allreduce"
    #: Every replica applies the same mean gradient, so any one of them is the global model.
    global_model = "primary"

    algorithm: Algorithm = "auto"
    compression: Compressed = None
    fault_tolerance: FaultTolerance = None
    min_replicas: MinReplicas = 1
    bucket_mb: Annotated[
        Annotated[float, Field(gt=0)] | None, Field(description="MiB a bucket, DDP: 25")
    ] = None
    first_bucket_mb: Annotated[
        float, Field(gt=0, description="MiB of the first bucket, DDP: 1")
    ] = FIRST_BUCKET_MB

    def __post_init__(self) -> None:
        if self.bucket_mb is not None and self.compression is not None:
            raise OptionError(
                "bucket_mb cannot be combined with compression yet; drop one", "bucket_mb"
            )
        if self.bucket_mb is not None and self.fault_tolerance is not None:
            raise OptionError(
                "bucket_mb cannot be combined with fault_tolerance='quorum' yet; drop one",
                "bucket_mb",
            )
        self.compression = check_compression(self.compression, self.algorithm)
        if self.fault_tolerance is not None and self.compression is not None:
            # A codec's state (error feedback, PowerSGD's factors) is per group and rank: a
            # quorum's group changes with its members.
            raise OptionError(
                "compression cannot be combined with fault_tolerance='quorum' yet; drop one",
                "compression",
            )

    def worker(self, w: WorkerContext) -> Program:
        if self.fault_tolerance == "quorum":
            yield from self._quorum_worker(w)
            return
        group = w.comm.new_group(w.workers)
        if self.bucket_mb is not None:
            yield from self._bucketed_worker(w, group, self.bucket_mb)
            return
        codec = self.compression.codec(w, salt="gradients") if self.compression else None
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield from group_mean(w, grads, group, codec, self.algorithm)
            w.apply(grads)

    def _bucketed_worker(self, w: WorkerContext, group: Group, bucket_mb: float) -> Program:
        while not w.done:
            buckets = w.compute_gradients_in_buckets(bucket_mb, self.first_bucket_mb)
            reduces = []
            for bucket in buckets:  # in the order backward makes them ready
                part = yield bucket.handle
                reduces.append(
                    w.comm.all_reduce(part, op="mean", group=group, algorithm=self.algorithm)
                )
            parts = yield all_of(reduces)
            w.apply(buckets.assemble(parts))

    def _quorum_worker(self, w: WorkerContext) -> Program:
        while not w.done:
            quorum = yield w.quorum(min_size=self.min_replicas)
            try:
                yield from heal(w, quorum)
                grads = yield w.compute_gradients()
                grads = yield w.comm.all_reduce(
                    grads, op="mean", group=quorum.group, algorithm=self.algorithm
                )
            except PeerFailure:
                w.lose(steps=1)  # the round failed on every member: its step is dropped
                continue
            w.apply(grads)
