"""How long a worker's gradient computation takes in simulated time.

Per-step time = base time x straggler draw x the worker's slowdown factor x ``contention``
(ranks sharing CPU cores). A server's own work per optimizer step (averaging what it received
and updating its parameters) costs ``server`` seconds for the whole model, its shard's share
of that when sharded. Draws come from one
generator per rank, seeded by the run's seed and the rank, so a run is reproducible and a
rank meets the same stragglers whatever the strategy. The base time is a number of seconds,
``"measure"`` (time the workload's real forward/backward here), ``"flops"`` (the
workload's FLOPs per step over a device's peak times an efficiency), which predicts a GPU
cluster from a laptop, or ``"roofline"`` (each operator's FLOPs over the peak or bytes over
the memory bandwidth, whichever is longer, both times the efficiency: ``devices.roofline``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from devices.catalog import DEVICE_PEAK_FLOPS
from devices.catalog import device as find_device
from devices.roofline import roofline
from options.declare import Declared, OneOf, OptionError, option_fields
from sim.compute_fields import Factor, Number, RankFactors, Seconds, StragglerOptions
from sim.compute_trace import MAX_SECONDS, trace_file
from sim.measure import measure_server_step, measure_step_time
from sim.stragglers import (
    STRAGGLERS,
    StragglerOptionError,
    Stragglers,
    straggler_parameters,
)

__all__ = [
    "DEVICE_PEAK_FLOPS",
    "MAX_SECONDS",
    "STRAGGLERS",
    "ComputeModel",
    "measure_server_step",
    "measure_step_time",
    "trace_file",
]


class _Declares(Declared):
    """The declaring root: its subclass's options are its attributes, nothing else kept."""

    def __init__(self, **options: Any) -> None:
        pass


# ``options`` is a field of the compute model (the straggler's parameters), not the recorded
# options a strategy keeps under that name.
_Declares._root_names = frozenset()


class ComputeModel(_Declares):
    """Per-step compute time of each worker.

    Parameters
    ----------
    base
        Seconds per micro-batch, ``"measure"``, ``"flops"`` or ``"roofline"``.
    straggler
        ``"constant"`` (factor 1), ``"normal"`` (1 + cv N(0,1), clipped at 0.05),
        ``"lognormal"`` (mean-one lognormal with ``sigma``), ``"exponential"`` (with
        probability ``prob`` the step takes 1 + Exp(mean ``scale``) times longer), or
        ``"trace"`` (``path`` to a CSV with a ``seconds`` column, or to a real run's or a
        ``commsim calibrate`` directory, whose ``compute.csv`` it reads: drawn at random per
        micro-batch, or replayed in order per rank if it has a ``rank`` column, one row per
        gradient if it has a ``gradient`` column, as a run's file has; replaces base x
        factor).
    options
        The straggler's parameters (``cv``, ``sigma``, ``prob``, ``scale``, ``path``).
    slowdown
        Per-rank constant factors, e.g. ``{3: 2.0}`` makes rank 3 twice as slow.
    device, efficiency
        For ``base="flops"``: a device of :data:`devices.DEVICES` (peak dense bf16 FLOP/s,
        each with its vendor source; :data:`DEVICE_PEAK_FLOPS` has the peaks) and the
        achieved fraction of its peak, the MFU; for ``"roofline"``, of its peak and of its
        memory bandwidth.
    server
        Seconds of a server's own work per optimizer step for the whole model (averaging what
        it received, then the update), or ``"measure"`` (time that here, with as many
        gradients as the run has workers); a server holding a shard pays its share. While
        it works, the server starts no communication. 0 (the default) makes it free.
    contention
        Factor on every compute time: ranks that share CPU cores slow each other down (4
        ranks on 2 cores took 2x the time one rank takes alone). ``"measure"`` and
        ``"flops"`` time one process alone; a measured trace already includes it.
    memory
        For ``base="flops"`` or ``"roofline"``, what a run does with a worker's peak memory
        on ``device`` (:mod:`sim.device_memory`): ``"check"`` (the default) refuses, in one
        line, a rank that does not fit; ``"report"`` records the estimate and warns once,
        to time the data-parallel dimension of a job whose sharding or tensor/pipeline
        parallelism commsim does not model. Either way the summary has ``peak_memory_gb``.
    zero
        ZeRO's stage for that estimate (Rajbhandari et al. 2020): 0 none, 1 the optimizer
        state (and fp32 master weights) sharded over the workers, 2 the gradients too. Only
        for ``allreduce``, whose every step moves the same bytes as ZeRO-1/2's
        reduce-scatter and all-gather; a memory model only (the run is the same).

    Examples
    --------
    >>> model = ComputeModel(0.01, slowdown={1: 3.0})
    >>> model.resolve(None, seed=0)
    >>> model.step_time(rank=1, step=0)
    0.03
    """

    name: ClassVar[str] = "compute"  # what its errors call it

    base: Seconds | Literal["measure", "flops", "roofline"] = Field(
        0.01,
        description="seconds per micro-batch, at most a day; or time it, count FLOPs, or "
        "a per-operator roofline",
    )
    straggler: Annotated[str, OneOf(STRAGGLERS)] = "constant"
    options: StragglerOptions = Field(default_factory=dict)
    slowdown: RankFactors = Field(default_factory=dict)
    device: Annotated[str, Field(description="a device of devices.DEVICES, for base='flops'")] = (
        "H100"
    )
    efficiency: Annotated[Number, Field(gt=0, le=1, description="of the peak, for 'flops'")] = 0.4
    server: Annotated[Number, Field(ge=0, le=MAX_SECONDS)] | Literal["measure"] = Field(
        0.0, description="seconds per server step, at most a day; or time it"
    )
    contention: Annotated[Factor, Field(description="a factor on every compute time; 1: none")] = (
        1.0
    )
    memory: Annotated[
        str,
        OneOf(("check", "report")),
        Field(description="refuse a rank that does not fit the device, or report it"),
    ] = "check"
    zero: Annotated[
        int,
        OneOf((0, 1, 2)),
        Field(description="ZeRO stage of the device memory estimate (allreduce only)"),
    ] = 0

    def __post_init__(self) -> None:
        """Rules between the options; the straggler's parameters checked first (so a later
        error never names one of them), a trace read last."""
        fields = [name for name in option_fields(type(self)) if name != "options"]
        params = straggler_parameters(self.straggler, self.options, beside=fields)
        if self.base in ("flops", "roofline"):  # an unknown one: one line naming the closest
            find_device(self.device)
        if self.straggler == "trace" and self.contention != 1:
            raise OptionError(
                f"contention={self.contention!r} does not apply to a trace: "
                "measured times include it already; leave contention at 1",
                "contention",
            )
        self._draws = Stragglers(self.straggler, params)
        self._seconds: float | None = None if isinstance(self.base, str) else float(self.base)
        self._server: float | None = None if self.server == "measure" else float(self.server)
        self._model_numel = 0

    @classmethod
    def parse(cls, spec: float | str | Mapping[str, Any] | ComputeModel) -> ComputeModel:
        """Build from a number of seconds, ``"measure"``/``"flops"``, or a dict of fields
        (``slowdown``'s ranks and factors may be text, as a file writes them). A bad field is
        one line that starts with its path (``compute.efficiency: ...``)."""
        if isinstance(spec, ComputeModel):
            return spec
        if isinstance(spec, (np.integer, np.floating)):
            spec = float(spec)
        if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
            spec = {"base": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"compute={spec!r} must be seconds, 'measure', 'flops' or a mapping of fields"
            )
        fields = dict(spec)
        try:
            if "slowdown" in fields:
                fields["slowdown"] = _rank_factors(fields["slowdown"])
            return cls(**fields)
        except OptionError as exc:
            # A straggler's parameter is said at its path in ``options``.
            where = "compute.options" if isinstance(exc, StragglerOptionError) else "compute"
            where = f"{where}.{exc.field}" if exc.field else where
            raise OptionError(f"{where}: {exc}", exc.field) from None

    def check_world(self, world_size: int, workers: list[int]) -> None:
        """Fail early if ``slowdown`` names ranks the world lacks, or a per-rank trace lacks a
        worker."""
        outside = sorted(r for r in self.slowdown if not 0 <= r < world_size)
        if outside:
            raise OptionError(
                f"compute slowdown names ranks {outside} outside this world (0..{world_size - 1})",
                "slowdown",
            )
        trace = self._draws.trace
        if isinstance(trace, dict):
            missing = sorted(set(workers) - set(trace))
            if missing:
                raise OptionError(
                    f"compute trace path={str(self.options['path'])!r} has no rows for worker "
                    f"ranks {missing}; add them",
                    "path",
                )

    def config(self) -> dict[str, Any]:
        """The fields as written to ``run.json`` (mappings copied), in the declared order."""
        return {
            name: dict(value) if isinstance(value, Mapping) else value
            for name, value in ((n, getattr(self, n)) for n in option_fields(type(self)))
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.config().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComputeModel) and self.config() == other.config()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def seconds_or_none(self) -> float | None:
        """The resolved base seconds, or None before :meth:`resolve`."""
        return self._seconds

    def server_seconds_or_none(self) -> float | None:
        """The resolved server step seconds for the whole model (None: not measured yet)."""
        return self._server

    def server_step_time(self, numel: int) -> float:
        """Simulated seconds of a server's step over ``numel`` of the model's parameters.

        >>> model = ComputeModel(server=0.004, contention=2.0)
        >>> model._model_numel = 100  # resolve() counts the workload's parameters
        >>> model.server_step_time(50)
        0.004
        """
        if not self._server or not self._model_numel:
            return 0.0
        return self._server * numel / self._model_numel * self.contention

    def resolve(self, workload: Any, seed: int, workers: int = 1, numel: int | None = None) -> None:
        """Fix the base time (measuring or counting FLOPs if asked), the server's step (for
        ``workers`` gradients) and seed the generator. ``numel``: the model's parameters,
        when known (else the model is built to count them)."""
        if self.server == "measure":
            self._server = measure_server_step(workload, workers, seed)
        if self._server and numel is not None:
            self._model_numel = numel
        elif self._server:
            model = workload.make_model(seed)
            self._model_numel = sum(p.numel() for p in model.parameters())
        if self.base == "measure":
            self._seconds = measure_step_time(workload, seed)
        elif self.base == "flops":
            flops = float(workload.flops_per_step())
            self._seconds = flops / (find_device(self.device).peak_flops * self.efficiency)
        elif self.base == "roofline":
            self._seconds = roofline(workload, self.device, self.efficiency).seconds
        self._draws.reseed(seed)

    @property
    def seconds(self) -> float:
        """The resolved base time per micro-batch."""
        if self._seconds is None:
            raise RuntimeError("call resolve(workload, seed) before asking for times")
        return self._seconds

    def step_time(self, rank: int, step: int, micro_batches: int = 1) -> float:
        """Simulated seconds for ``rank``'s ``step``-th gradient over ``micro_batches``."""
        slow = self.slowdown.get(rank, 1.0)
        if self.straggler == "trace":
            return self._draws.trace_time(rank, step, micro_batches, slow, self.contention)
        if self.straggler == "constant":  # its factor is 1.0: the same product, one call fewer
            return self.seconds * micro_batches * slow * self.contention
        return self.seconds * micro_batches * self._draws.factor(rank) * slow * self.contention


def _rank_factors(slowdown: Any) -> dict[int, float]:
    """``slowdown`` as integer ranks to float factors (a file's text keys and values)."""
    if not isinstance(slowdown, Mapping):
        raise OptionError(f"slowdown={slowdown!r} must map ranks to factors", "slowdown")
    try:
        return {int(k): float(v) for k, v in slowdown.items()}
    except (TypeError, ValueError):
        raise OptionError(
            f"slowdown={slowdown!r} must map integer ranks to numbers, e.g. {{3: 2.0}}",
            "slowdown",
        ) from None
