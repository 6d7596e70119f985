"""Local SGD / periodic parameter averaging, with post-local warm-up and AdaComm periods."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from options.declare import OptionError
from strategies.averaging import (
    adacomm_period,
    check_compression,
    check_quorum,
    drop_round,
    group_mean,
    heal_with,
    quorum_mean,
    take,
)
from strategies.base import Program, Strategy, feedback_state
from strategies.checks import PeerFailure
from strategies.context import WorkerContext
from strategies.fields import Algorithm, Compressed, FaultTolerance, MinReplicas
from strategies.registry import register

__all__ = ["LocalSGD"]


@register
class LocalSGD(Strategy):
    """``period`` local optimizer steps, then the workers' parameters are averaged.

    Parameters
    ----------
    period
        Local steps between averagings (``1``: every step, which equals all-reduce SGD for
        plain SGD), or ``"adaptive"``: AdaComm (Wang and Joshi, 2019) starts at
        ``initial_period`` and, at each averaging, sets the next period to
        ``ceil(sqrt(F / F0) * initial_period)``: ``F0`` is the workers' mean training loss
        at the first step, ``F`` their mean over the last period (long periods early,
        shorter as the loss flattens). Both travel in the averaging all-reduce (8 bytes), so
        every worker picks the same period; the first worker logs it (``period``). The paper
        re-chooses every fixed wall-clock interval and scales by the learning rate's decay
        too; here the period changes at averagings and leaves the schedule out.
    warmup
        Steps of plain all-reduce SGD before local steps begin (post-local SGD, Lin et al.,
        2020).
    initial_period
        AdaComm's first period (only with ``period="adaptive"``).
    compression
        A ``strategies.compression`` scheme (``"topk"``, ``{"name": "qsgd", "levels": 8}``
        ...) for the averaging: the change since the last averaging is what is compressed
        (with error feedback where the scheme has it), and warm-up gradients too.
    algorithm
        Collective algorithm of the all-reduces (the simulator's hint).
    fault_tolerance
        ``"quorum"`` (torchft's fault-tolerant LocalSGD): every averaging starts with a
        quorum of the live workers (``w.quorum``) and averages over it; a worker that
        restarted is healed there from a live peer (its parameters, optimizer buffers and
        the last averaged parameters, charged on the network) and does not contribute to
        that round's mean. An averaging that fails (a member crashed during it) is
        discarded: every member rolls back to the last averaged parameters and redoes the
        round's ``period`` steps (``lost_steps``; torchft keeps the local parameters, this
        rolls back as its DiLoCo does). Not with ``compression``, ``warmup`` or
        ``period="adaptive"``. ``None``: a crash ends the run.
    min_replicas
        With ``fault_tolerance="quorum"``: the fewest workers an averaging needs.

    Bytes per worker and averaging: an all-reduce of ``4 * numel`` bytes (plus 8 for
    AdaComm), i.e. ``2 (n - 1) / n * 4 numel / period`` per step with a ring.

    Examples
    --------
    >>> LocalSGD(period=4, warmup=10)
    LocalSGD(period=4, warmup=10, initial_period=None, compression=None, algorithm='auto', fault_tolerance=None, min_replicas=1)
    >>> LocalSGD(period="fast")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: period='fast' must be an integer >= 1 or 'adaptive' (local steps between synchronisations)
    """

    name = "local_sgd"

    period: Annotated[int, Field(ge=1)] | Literal["adaptive"] = Field(
        8, description="local steps between synchronisations"
    )
    warmup: Annotated[int, Field(ge=0, description="steps of all-reduce SGD first")] = 0
    initial_period: Annotated[int, Field(ge=1)] | None = Field(
        None, description="AdaComm's first period; 16 with period='adaptive'"
    )
    compression: Compressed = None
    algorithm: Algorithm = "auto"
    fault_tolerance: FaultTolerance = None
    min_replicas: MinReplicas = 1

    def __post_init__(self) -> None:
        check_quorum(self)
        if self.fault_tolerance is not None:
            for name, value, why in (
                ("compression", self.compression, "a codec's state is per group"),
                ("warmup", self.warmup or None, "its steps would need a quorum each"),
                (
                    "period",
                    "adaptive" if self.period == "adaptive" else None,
                    "AdaComm's losses would need healing too",
                ),
            ):
                if value is not None:
                    raise OptionError(
                        f"{name}={value!r} cannot be combined with fault_tolerance='quorum' "
                        f"yet ({why}); drop one",
                        name,
                    )
        if self.period == "adaptive":
            if self.initial_period is None:
                self.initial_period = 16
        elif self.initial_period is not None:
            raise OptionError(
                f"initial_period={self.initial_period!r} applies only to period='adaptive'",
                "initial_period",
            )
        self.compression = check_compression(
            self.compression, self.algorithm, averages_changes=True
        )

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        check_quorum(self, len(self.workers(world_size)))

    def reads_values(self) -> str | None:
        if self.period == "adaptive":
            return "period='adaptive' sets its period from the training losses"
        return None

    def worker_state(self) -> dict[str, float]:
        """None of its own: a round ends on the average itself. With compression, the
        parameters at the last averaging (what a round changed is compressed) and a residual
        per codec (the warm-up's gradients and the rounds' changes).

        >>> LocalSGD().worker_state(), LocalSGD(compression="topk").worker_state()
        ({}, {'parameters at the last averaging': 1.0, 'error-feedback residual': 1.0})
        """
        if self.compression is None:
            return {}
        codecs = 2.0 if self.warmup else 1.0
        return {
            "parameters at the last averaging": 1.0,
            **feedback_state(self.compression, codecs),
        }

    def worker(self, w: WorkerContext) -> Program:
        if self.fault_tolerance == "quorum":
            yield from self._quorum_worker(w)
            return
        group = w.comm.new_group(w.workers)
        initial = self.initial_period  # set (16 by default) exactly when period is "adaptive"
        adaptive = initial is not None
        period = int(initial if initial is not None else self.period)
        spec = self.compression
        grads_codec = spec.codec(w, salt="warmup") if spec and self.warmup else None
        delta_codec = spec.codec(w, salt="average") if spec else None
        synced = w.parameters()  # the parameters at the last averaging
        first_loss, losses, since = math.nan, 0.0, 0
        if adaptive and w.index == 0:
            w.log(period=period)
        while not w.done:
            grads = yield w.compute_gradients()
            if w.step < self.warmup:
                grads = yield from group_mean(w, grads, group, grads_codec, self.algorithm)
                w.apply(grads)
                synced = w.parameters()
                continue
            w.apply(grads)
            if math.isnan(first_loss):  # the training loss at the start, F(x_0)
                first_loss = w.last_loss
            losses, since = losses + w.last_loss, since + 1
            if since < period:
                continue
            # AdaComm's inputs, averaged over the workers: F(x_0), and the loss now (the mean
            # over the last period, a steadier estimate than one batch's).
            loss = torch.tensor([first_loss, losses / since])
            if delta_codec is None:  # average the parameters (and the losses) in one all-reduce
                buffer = torch.cat([w.parameters(), loss]) if adaptive else w.parameters()
                mean = yield w.comm.all_reduce(
                    buffer, op="mean", group=group, algorithm=self.algorithm
                )
                synced, loss = (mean[:-2], mean[-2:]) if adaptive else (mean, loss)
            else:  # compress what the local steps changed since the last averaging
                change = synced - w.parameters()
                mean = yield from group_mean(w, change, group, delta_codec, self.algorithm)
                synced = synced - mean
                if adaptive:  # the losses must arrive intact: their own 8-byte all-reduce
                    loss = yield w.comm.all_reduce(loss, op="mean", group=group)
            if initial is not None:  # adaptive
                new = adacomm_period(initial, float(loss[0]), float(loss[1]))
                if new != period and w.index == 0:
                    w.log(period=new)
                period = new
            w.load_parameters(synced)
            losses, since = 0.0, 0

    def _quorum_worker(self, w: WorkerContext) -> Program:
        period = int(self.period)  # an int: "adaptive" is refused with a quorum
        synced, synced_step = w.parameters(), 0  # the last averaged parameters, and when
        fresh = w.rejoined  # a restarted worker has no state: it waits for a round first
        # Each round's quorum is asked for as the round starts and taken at its averaging
        # (torchft starts its quorum early so it overlaps the inner steps): its members
        # are those alive at the start, so a crash during the round fails its averaging.
        pending = w.quorum(min_size=self.min_replicas)
        while not w.done:
            if not fresh:
                grads = yield w.compute_gradients()
                w.apply(grads)
                if w.step % period:
                    continue
            quorum = yield from take(pending)
            try:
                got = yield from heal_with(w, quorum, synced, w.numel, {"synced_step": synced_step})
                if got is not None:  # healed: the last averaged parameters came with it
                    synced, synced_step = got[0], int(got[1]["synced_step"])
                fresh = False
                mean = yield quorum_mean(w, w.parameters(), quorum, self.algorithm)
            except PeerFailure:
                # The averaging failed on every member: it is discarded, and the round's
                # steps with it (global steps, counted once by the ledger).
                drop_round(w, synced, synced_step, fresh)
                pending = w.quorum(min_size=self.min_replicas)
                continue
            synced, synced_step = mean, w.step
            w.load_parameters(synced)
            pending = w.quorum(min_size=self.min_replicas)  # the next round's
