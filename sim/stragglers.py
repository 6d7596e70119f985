"""Straggler draws: each straggler's parameters, declared once (:mod:`options.declare`),
and the per-step factor (or trace time) each rank meets.

Draws come from one generator per rank, seeded by the run's seed and the rank, so a run is
reproducible and a rank meets the same stragglers whatever the strategy.

Examples
--------
>>> draws = Stragglers("exponential", straggler_parameters("exponential", {"prob": 0.0}))
>>> draws.params, draws.factor(rank=0)
({'prob': 0.0, 'scale': 0.5}, 1.0)
>>> straggler_parameters("lognormal", {"sigam": 0.2})
Traceback (most recent call last):
...
sim.stragglers.StragglerOptionError: options ['sigam'] do not apply to straggler='lognormal' (it takes ['sigma']); did you mean 'sigma'?
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from options.declare import OptionError, check_options, declared, option_fields
from options.spec import did_you_mean
from sim.compute_fields import Number
from sim.compute_trace import read_trace

__all__ = ["STRAGGLERS", "StragglerOptionError", "Stragglers", "straggler_parameters"]

#: A straggler parameter: finite, >= 0.
_Spread = Annotated[Number, Field(ge=0, allow_inf_nan=False)]


@declared
def constant() -> None:
    """Factor 1: every step takes the base time."""


@declared
def normal(
    *,
    cv: Annotated[_Spread, Field(description="the factor's standard deviation")] = 0.1,
) -> None:
    """Factor 1 + cv N(0, 1), clipped at 0.05."""


@declared
def lognormal(
    *,
    sigma: Annotated[_Spread, Field(description="the log-factor's standard deviation")] = 0.5,
) -> None:
    """Mean-one lognormal factor: exp(sigma N(0, 1) - sigma^2 / 2)."""


@declared
def exponential(
    *,
    prob: Annotated[Number, Field(ge=0, le=1, description="the chance a step is slow")] = 1.0,
    scale: Annotated[_Spread, Field(description="a slow step's mean extra factor")] = 0.5,
) -> None:
    """With probability ``prob`` a step takes 1 + Exp(mean ``scale``) times longer."""


@declared
def trace(
    *,
    path: Annotated[
        str | Path,
        Field(
            description="a CSV of step times, or a real run's or 'commsim calibrate' "
            "directory, e.g. options={'path': 'times.csv'}"
        ),
    ],
) -> None:
    """Step times read from a file, replacing base x factor."""


class StragglerOptionError(OptionError):
    """A bad straggler parameter (``field`` names it), so a caller can say it sits in the
    compute model's ``options``."""


_DECLARED: dict[str, Callable[..., None]] = {
    "constant": constant,
    "normal": normal,
    "lognormal": lognormal,
    "exponential": exponential,
    "trace": trace,
}

STRAGGLERS = tuple(_DECLARED)


def straggler_parameters(
    straggler: str, given: Mapping[str, Any], beside: Sequence[str] = ()
) -> dict[str, Any]:
    """``given`` checked against ``straggler``'s declared parameters, defaults filled in.
    Raises :class:`OptionError` naming the parameter (its ``field``); an unknown name gets
    the closest of the parameters or, failing that, of the names ``beside`` them (the
    compute model's fields, which an experiment file writes next to them)."""
    declaration = _DECLARED[straggler]
    takes = list(option_fields(declaration))
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise StragglerOptionError(
            f"options {unknown} do not apply to straggler={straggler!r} "
            f"(it takes {sorted(takes) or 'no options'})"
            f"{did_you_mean(unknown[0], takes) or did_you_mean(unknown[0], beside)}",
            unknown[0],
        )
    try:
        return check_options(declaration, given)
    except OptionError as exc:
        raise StragglerOptionError(f"{exc} for straggler={straggler!r}", exc.field) from None


class Stragglers:
    """The draws of one compute model: a factor per step, or, for ``trace``, step times read
    from its file (per rank, replayed in order, when the file has ranks; else drawn)."""

    def __init__(self, straggler: str, params: Mapping[str, Any]) -> None:
        """``params``: checked by :func:`straggler_parameters`, defaults filled in."""
        self.straggler = straggler
        self.params = dict(params)
        #: A trace's times (per rank when its file has ranks) and whether a row is a
        #: gradient (a run's ``compute.csv``) rather than a micro-batch.
        self.trace: dict[int, np.ndarray] | np.ndarray | None = None
        self.per_gradient = False
        if straggler == "trace":
            self.trace, self.per_gradient = read_trace(self.params["path"])
        self.reseed(0)

    def reseed(self, seed: int) -> None:
        """Restart the draws under ``seed``."""
        # One stream per rank: a rank's k-th draw is the same whatever order ranks compute in,
        # so strategies compared under one seed meet the same stragglers.
        self._seed = seed
        self._rngs: dict[int, np.random.Generator] = {}

    def _rng(self, rank: int) -> np.random.Generator:
        rng = self._rngs.get(rank)
        if rng is None:
            rng = np.random.default_rng(np.random.SeedSequence([self._seed, 0xC0FFEE, rank]))
            self._rngs[rank] = rng
        return rng

    def factor(self, rank: int) -> float:
        """The factor on ``rank``'s next step time (not for ``trace``)."""
        p = self.params
        if self.straggler == "constant":
            return 1.0
        rng = self._rng(rank)
        if self.straggler == "normal":
            return max(0.05, 1.0 + p["cv"] * rng.standard_normal())
        if self.straggler == "lognormal":
            return float(np.exp(p["sigma"] * rng.standard_normal() - p["sigma"] ** 2 / 2))
        tail = rng.exponential(p["scale"]) if rng.random() < p["prob"] else 0.0
        return 1.0 + tail

    def trace_time(
        self, rank: int, step: int, micro_batches: int, slow: float, contention: float
    ) -> float:
        """``rank``'s ``step``-th gradient over ``micro_batches`` from the trace, times its
        ``slow`` factor (and ``contention``, for a file of micro-batches)."""
        trace = self.trace
        if isinstance(trace, dict):
            if rank not in trace:
                raise ValueError(f"compute trace has no rows for rank {rank}")
            series = trace[rank]
            if self.per_gradient:
                return float(series[step % len(series)]) * slow
            times: list[float] | np.ndarray = [
                series[(step * micro_batches + i) % len(series)] for i in range(micro_batches)
            ]
        else:
            assert trace is not None, "trace_time is for straggler='trace'"
            times = self._rng(rank).choice(trace, size=micro_batches)
        return float(np.sum(times)) * slow * contention
