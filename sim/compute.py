"""How long a worker's gradient computation takes in simulated time.

Per-step time = base time x straggler draw x the worker's slowdown factor x ``contention``
(ranks sharing CPU cores). A server's own work per optimizer step (averaging what it received
and updating its parameters) costs ``server`` seconds for the whole model, its shard's share
of that when sharded. Draws come from one
generator per rank, seeded by the run's seed and the rank, so a run is reproducible and a
rank meets the same stragglers whatever the strategy. The base time is a number of seconds,
``"measure"`` (time the workload's real forward/backward here), or ``"flops"`` (the
workload's FLOPs per step over a device's peak times an efficiency), which predicts a GPU
cluster from a laptop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from options.declare import OptionError
from runs.schema import COMPUTE_FILE

__all__ = [
    "DEVICE_PEAK_FLOPS",
    "MAX_SECONDS",
    "STRAGGLERS",
    "ComputeModel",
    "measure_server_step",
    "measure_step_time",
    "trace_file",
]

#: Published dense bf16/fp16 tensor-core peaks (FLOP/s) for ``base="flops"``.
DEVICE_PEAK_FLOPS: dict[str, float] = {
    "V100": 125e12,  # fp16 tensor cores (no bf16)
    "A100": 312e12,
    "L4": 121e12,
    "H100": 989e12,  # SXM
    "H200": 989e12,  # same compute as H100 SXM, more memory
    "MI300X": 1307e12,
}

STRAGGLERS = ("constant", "normal", "lognormal", "exponential", "trace")

#: The longest one micro-batch's compute (or one server step) may take: a day. More is a unit
#: mistake (milliseconds written as seconds), and makes a run's time meaningless.
MAX_SECONDS = 86400.0


def measure_step_time(
    workload: Any, seed: int = 0, repeats: int = 10, update: bool = False
) -> float:
    """Median wall time of one forward/backward on one micro-batch of ``workload`` (and an
    SGD update of the parameters, with ``update``: a worker's whole step)."""
    import torch

    model = workload.make_model(seed)
    batches = workload.batches(0, 1, seed)
    times = []
    for i in range(repeats + 2):
        x, y = next(batches)
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        workload.loss(model(x), y).backward()
        if update:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-1e-3)
        if i >= 2:  # the first passes pay for allocation and dispatch caches
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_server_step(workload: Any, workers: int, seed: int = 0, repeats: int = 10) -> float:
    """Median wall time of a parameter server's step here: averaging ``workers`` flat
    gradients of ``workload``'s model and one SGD update of its flat parameters."""
    import torch

    model = workload.make_model(seed)
    numel = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(seed)
    grads = [torch.randn(numel, generator=generator) for _ in range(max(1, workers))]
    params = torch.zeros(numel)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        average = torch.stack(grads).sum(0).div_(len(grads))
        params.add_(average, alpha=-0.1)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def trace_file(path: str | Path) -> Path:
    """The CSV a ``trace`` straggler reads: ``path`` itself, or a run or calibration
    directory's ``compute.csv``.

    >>> import tempfile
    >>> trace_file(tempfile.gettempdir()).name, trace_file("times.txt").name
    ('compute.csv', 'times.txt')
    """
    path = Path(path)
    return path / COMPUTE_FILE if path.is_dir() else path


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _is_real(value) and math.isfinite(value) and value > 0


def _read_trace(path: str | Path) -> tuple[dict[int, np.ndarray] | np.ndarray, bool]:
    """The step times (per rank, when the file has ranks) and whether a row is a gradient
    (a run's ``compute.csv`` has a ``gradient`` column) rather than a micro-batch."""
    import pandas as pd

    given, path = path, trace_file(path)
    if not path.is_file():
        if Path(given).is_dir():
            raise ValueError(
                f"compute trace path={str(given)!r} has no {COMPUTE_FILE}; give a real run's "
                "directory, a 'commsim calibrate' directory, or a CSV of step times"
            )
        raise ValueError(f"compute trace={str(path)!r} does not exist; give a CSV of step times")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(f"compute trace {path} is not a readable CSV: {reason}") from None
    if "seconds" not in table.columns:
        raise ValueError(f"compute trace {path} needs a 'seconds' column (and optionally 'rank')")
    if table.empty:
        raise ValueError(f"compute trace {path} has no rows; give one step time per row")
    seconds = pd.to_numeric(table["seconds"], errors="coerce")
    bad = ~((seconds > 0) & (seconds <= MAX_SECONDS))  # NaN, inf, text: all bad
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(
            f"compute trace path={str(path)!r}: row {row + 2} has seconds="
            f"{table['seconds'].tolist()[row]!r}; "
            f"every step time must be a number of seconds in (0, {MAX_SECONDS:g}]"
        )
    table["seconds"] = seconds
    per_gradient = "gradient" in table.columns
    if "rank" in table.columns:
        ranks_column = pd.to_numeric(table["rank"], errors="coerce")
        bad = ~((ranks_column >= 0) & (ranks_column % 1 == 0))
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValueError(
                f"compute trace path={str(path)!r}: row {row + 2} has rank="
                f"{table['rank'].tolist()[row]!r}; "
                "ranks are integers from 0"
            )
        table["rank"] = ranks_column.astype(int)
        if per_gradient:  # a run's file: replayed in the order it computed
            table = table.sort_values(["rank", "gradient"], kind="stable")
        ranks = {int(r): g["seconds"].to_numpy(float) for r, g in table.groupby("rank")}
        return ranks, per_gradient
    return table["seconds"].to_numpy(float), per_gradient


@dataclass
class ComputeModel:
    """Per-step compute time of each worker.

    Parameters
    ----------
    base
        Seconds per micro-batch, ``"measure"`` or ``"flops"``.
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
        For ``base="flops"``: a key of :data:`DEVICE_PEAK_FLOPS` and the achieved fraction.
    server
        Seconds of a server's own work per optimizer step for the whole model (averaging what
        it received, then the update), or ``"measure"`` (time that here, with as many
        gradients as the run has workers); a server holding a shard pays its share. While
        it works, the server starts no communication. 0 (the default) makes it free.
    contention
        Factor on every compute time: ranks that share CPU cores slow each other down (4
        ranks on 2 cores took 2x the time one rank takes alone). ``"measure"`` and
        ``"flops"`` time one process alone; a measured trace already includes it.

    Examples
    --------
    >>> model = ComputeModel(0.01, slowdown={1: 3.0})
    >>> model.resolve(None, seed=0)
    >>> model.step_time(rank=1, step=0)
    0.03
    """

    base: float | str = 0.01
    straggler: str = "constant"
    options: dict[str, Any] = field(default_factory=dict)
    slowdown: Mapping[int, float] = field(default_factory=dict)
    device: str = "H100"
    efficiency: float = 0.4
    server: float | str = 0.0
    contention: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.base, str):
            if self.base not in ("measure", "flops"):
                raise OptionError(
                    f"compute base={self.base!r} must be seconds, 'measure' or 'flops'",
                    "base",
                )
        elif not (_positive(self.base) and self.base <= MAX_SECONDS):
            raise OptionError(
                f"compute base={self.base!r} must be seconds per micro-batch in (0, "
                f"{MAX_SECONDS:g}] (at most a day), 'measure' or 'flops'",
                "base",
            )
        if self.straggler not in STRAGGLERS:
            raise OptionError(
                f"compute straggler={self.straggler!r} is unknown; use one of {', '.join(STRAGGLERS)}",
                "straggler",
            )
        for rank, factor in self.slowdown.items():
            if not _positive(factor):
                raise OptionError(
                    f"compute slowdown[{rank}]={factor!r} must be a positive number", "slowdown"
                )
        if self.base == "flops" and self.device not in DEVICE_PEAK_FLOPS:
            raise OptionError(
                f"compute device={self.device!r} is unknown; use one of {', '.join(DEVICE_PEAK_FLOPS)}",
                "device",
            )
        if not (_is_real(self.efficiency) and 0 < self.efficiency <= 1):
            raise OptionError(
                f"compute efficiency={self.efficiency!r} must be in (0, 1]", "efficiency"
            )
        server = self.server
        if server != "measure" and not (
            isinstance(server, Real) and not isinstance(server, bool) and 0 <= server <= MAX_SECONDS
        ):
            raise OptionError(
                f"compute server={self.server!r} must be seconds per server step in [0, "
                f"{MAX_SECONDS:g}] (at most a day), or 'measure'",
                "server",
            )
        if not _positive(self.contention):
            raise OptionError(
                f"compute contention={self.contention!r} must be a positive factor (1: none)",
                "contention",
            )
        defaults = {
            "normal": {"cv": 0.1},
            "lognormal": {"sigma": 0.5},
            "exponential": {"prob": 1.0, "scale": 0.5},
            "trace": {},
        }
        allowed = defaults.get(self.straggler, {})
        expected = set(allowed) | ({"path"} if self.straggler == "trace" else set())
        unknown = set(self.options) - expected
        if unknown:
            raise OptionError(
                f"compute options {sorted(unknown)} do not apply to straggler={self.straggler!r}; "
                f"it takes {sorted(expected) or 'no options'}",
                sorted(unknown)[0],
            )
        self._params = {**allowed, **self.options}
        for name, value in self._params.items():
            if name == "path":
                continue
            upper = 1.0 if name == "prob" else math.inf
            if not (_is_real(value) and 0 <= value <= upper and math.isfinite(value)):
                bounds = "in [0, 1]" if name == "prob" else "a finite number >= 0"
                raise OptionError(f"compute options[{name!r}]={value!r} must be {bounds}", name)
        if self.straggler == "trace":
            if "path" not in self._params:
                raise OptionError(
                    "compute straggler='trace' needs options={'path': 'times.csv'}", "path"
                )
            if self.contention != 1:
                raise OptionError(
                    f"compute contention={self.contention!r} does not apply to a trace: "
                    "measured times include it already; leave contention at 1",
                    "contention",
                )
            # A run's compute.csv has a row per gradient (its micro-batches included).
            self._trace, self._per_gradient = _read_trace(self._params["path"])
        self._seconds: float | None = None if isinstance(self.base, str) else float(self.base)
        self._server: float | None = None if self.server == "measure" else float(self.server)
        self._model_numel = 0
        self._seed = 0
        self._rngs: dict[int, np.random.Generator] = {}

    @classmethod
    def parse(cls, spec: float | str | Mapping[str, Any] | ComputeModel) -> ComputeModel:
        """Build from a number of seconds, ``"measure"``/``"flops"``, or a dict of fields."""
        if isinstance(spec, ComputeModel):
            return spec
        if isinstance(spec, (np.integer, np.floating)):
            spec = float(spec)
        if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
            return cls(base=spec)
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"compute={spec!r} must be seconds, 'measure', 'flops' or a mapping of fields"
            )
        fields = dict(spec)
        known = {
            "base",
            "straggler",
            "options",
            "slowdown",
            "device",
            "efficiency",
            "server",
            "contention",
        }
        unknown = set(fields) - known
        if unknown:
            raise OptionError(
                f"compute fields {sorted(unknown)} are unknown; use {sorted(known)}",
                sorted(unknown)[0],
            )
        if not isinstance(fields.get("options", {}), Mapping):
            raise OptionError(f"compute options={fields['options']!r} must be a mapping", "options")
        slowdown = fields.get("slowdown", {})
        if not isinstance(slowdown, Mapping):
            raise OptionError(
                f"compute slowdown={slowdown!r} must map ranks to factors", "slowdown"
            )
        try:
            fields["slowdown"] = {int(k): float(v) for k, v in slowdown.items()}
        except (TypeError, ValueError):
            raise OptionError(
                f"compute slowdown={slowdown!r} must map integer ranks to numbers, e.g. {{3: 2.0}}",
                "slowdown",
            ) from None
        return cls(**fields)

    def check_world(self, world_size: int, workers: list[int]) -> None:
        """Fail early if ``slowdown`` names ranks the world lacks, or a per-rank trace lacks a
        worker."""
        outside = sorted(r for r in self.slowdown if not 0 <= r < world_size)
        if outside:
            raise OptionError(
                f"compute slowdown names ranks {outside} outside this world (0..{world_size - 1})",
                "slowdown",
            )
        trace = getattr(self, "_trace", None)
        if isinstance(trace, dict):
            missing = sorted(set(workers) - set(trace))
            if missing:
                raise OptionError(
                    f"compute trace path={str(self._params['path'])!r} has no rows for worker "
                    f"ranks {missing}; add them",
                    "path",
                )

    def config(self) -> dict[str, Any]:
        """The fields as written to ``run.json``."""
        return {
            "base": self.base,
            "straggler": self.straggler,
            "options": dict(self.options),
            "slowdown": dict(self.slowdown),
            "device": self.device,
            "efficiency": self.efficiency,
            "server": self.server,
            "contention": self.contention,
        }

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

    def resolve(self, workload: Any, seed: int, workers: int = 1) -> None:
        """Fix the base time (measuring or counting FLOPs if asked), the server's step (for
        ``workers`` gradients) and seed the generator."""
        if self.server == "measure":
            self._server = measure_server_step(workload, workers, seed)
        if self._server:
            model = workload.make_model(seed)
            self._model_numel = sum(p.numel() for p in model.parameters())
        if self.base == "measure":
            self._seconds = measure_step_time(workload, seed)
        elif self.base == "flops":
            flops = float(workload.flops_per_step())
            self._seconds = flops / (DEVICE_PEAK_FLOPS[self.device] * self.efficiency)
        # One stream per rank: a rank's k-th draw is the same whatever order ranks compute in,
        # so strategies compared under one seed meet the same stragglers.
        self._seed = seed
        self._rngs = {}

    def _rng(self, rank: int) -> np.random.Generator:
        rng = self._rngs.get(rank)
        if rng is None:
            rng = np.random.default_rng(np.random.SeedSequence([self._seed, 0xC0FFEE, rank]))
            self._rngs[rank] = rng
        return rng

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
            trace = self._trace
            if isinstance(trace, dict):
                if rank not in trace:
                    raise ValueError(f"compute trace has no rows for rank {rank}")
                series = trace[rank]
                if self._per_gradient:
                    return float(series[step % len(series)]) * slow
                times: list[float] | np.ndarray = [
                    series[(step * micro_batches + i) % len(series)] for i in range(micro_batches)
                ]
            else:
                times = self._rng(rank).choice(trace, size=micro_batches)
            return float(np.sum(times)) * slow * self.contention
        return self.seconds * micro_batches * self._factor(rank) * slow * self.contention

    def _factor(self, rank: int) -> float:
        p = self._params
        if self.straggler == "constant":
            return 1.0
        rng = self._rng(rank)
        if self.straggler == "normal":
            return max(0.05, 1.0 + p["cv"] * rng.standard_normal())
        if self.straggler == "lognormal":
            return float(np.exp(p["sigma"] * rng.standard_normal() - p["sigma"] ** 2 / 2))
        tail = rng.exponential(p["scale"]) if rng.random() < p["prob"] else 0.0
        return 1.0 + tail
