"""Fits of what the calibration probe measured: pure functions over its log rows.

* :func:`fit_link`: one-way time ``t(s) = latency + s / bandwidth``: the bandwidth from the
  larger half of the sizes (where the transfer dominates; small messages on a shaped link
  also ride its token bucket's burst, which a line through every size would mistake for a
  faster link), the latency from the smaller half;
* :func:`fit_collective`: which of the simulator's algorithms predicts a measured collective
  best, and the constant per-call overhead left over;
* :func:`fit_unfairness`: how unevenly concurrent flows share a link (the simulator's
  ``network.unfairness``), from one rank's sends to all others at once;
* :func:`compute_profile`: each rank's worker-step seconds, warm-up dropped, as
  ``compute.csv`` holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "CollectiveFit",
    "LinkFit",
    "UnfairnessFit",
    "compute_profile",
    "evenness",
    "fit_collective",
    "fit_link",
    "fit_unfairness",
]

#: Latency floor of a fit: a negative intercept means "below what the sizes can resolve".
MIN_LATENCY = 1e-7


@dataclass
class LinkFit:
    """One-way time of a pair's messages: ``latency + size / bandwidth``.

    ``residuals`` are (fitted - measured) / measured at each size's median.
    """

    latency: float
    bandwidth: float
    sizes: list[float]
    measured: list[float]
    residuals: list[float] = field(default_factory=list)

    def predict(self, size: float | np.ndarray) -> float | np.ndarray:
        """Seconds for ``size`` payload bytes."""
        return self.latency + np.asarray(size, dtype=float) / self.bandwidth

    @property
    def max_residual(self) -> float:
        """The largest relative error of the fit over the sizes."""
        return float(np.max(np.abs(self.residuals))) if self.residuals else float("nan")


def fit_link(sizes: Sequence[float], seconds: Sequence[float]) -> LinkFit:
    """Fit ``seconds = latency + size / bandwidth`` to repeated measurements.

    Repeats of one size are reduced to their median first (one slow repeat should not move
    the fit). The bandwidth is the least-squares slope over the larger half of the sizes;
    the latency the median of ``t - size / bandwidth`` over the smaller half (floored at
    :data:`MIN_LATENCY`).

    Examples
    --------
    >>> sizes = [1e3, 1e4, 1e5, 1e6] * 2
    >>> fit = fit_link(sizes, [1e-4 + s / 1e8 for s in sizes])
    >>> round(fit.latency, 9), round(fit.bandwidth), fit.max_residual < 1e-9
    (0.0001, 100000000, True)
    """
    table = pd.DataFrame({"size": np.asarray(sizes, float), "t": np.asarray(seconds, float)})
    medians = table.groupby("size")["t"].median()
    if len(medians) < 2:
        raise ValueError("a link fit needs at least two message sizes")
    s, t = medians.index.to_numpy(float), medians.to_numpy(float)
    large = slice(len(s) // 2 - (len(s) == 2), None)  # with two sizes: both
    slope = np.polyfit(s[large], t[large], 1)[0] if s[large].size > 1 else 0.0
    if slope <= 0:
        raise ValueError(
            "the measured times do not grow with size (noise dominates); raise --max-size"
        )
    small = slice(0, max(1, len(s) // 2))
    latency = max(MIN_LATENCY, float(np.median(t[small] - s[small] * slope)))
    fit = LinkFit(latency, float(1 / slope), s.tolist(), t.tolist())
    fit.residuals = ((fit.predict(s) - t) / t).tolist()
    return fit


@dataclass
class CollectiveFit:
    """A collective's measured times against the simulator's algorithms.

    ``predicted[algorithm]`` are the simulator's seconds at each size on the calibrated
    topology; ``algorithm`` is the one with the smallest RMS relative error; ``overhead`` the
    median of measured - predicted with it (a backend's per-call cost the network model
    lacks); ``residuals`` its relative errors once the overhead is added.
    """

    op: str
    sizes: list[float]
    measured: list[float]
    predicted: dict[str, list[float]]
    algorithm: str
    overhead: float
    residuals: list[float]

    @property
    def largest(self) -> int:
        """How many of the largest sizes the algorithm is judged on: a third, two at least."""
        return max(2, len(self.sizes) // 3)

    def rms(self, algorithm: str) -> float:
        """RMS relative error of ``algorithm``'s predictions (no overhead added) over the
        :attr:`largest` sizes, which chose :attr:`algorithm`."""
        p = np.asarray(self.predicted[algorithm])[-self.largest :]
        m = np.asarray(self.measured)[-self.largest :]
        return float(np.sqrt(np.mean(((p - m) / m) ** 2)))


def fit_collective(
    op: str,
    sizes: Sequence[float],
    seconds: Sequence[float],
    predict: Callable[[str, float], float],
    algorithms: Sequence[str],
) -> CollectiveFit:
    """Compare measured ``op`` times (medians per size) with ``predict(algorithm, size)``.

    The algorithm is chosen on the largest third of the sizes (two at least), where the
    data's path through the network decides the time (small collectives measure the
    library's per-call cost, which every algorithm's line misses the same way); the overhead
    is the median gap over the smaller half.

    Examples
    --------
    >>> model = {"ring": lambda s: 2e-4 + s / 5e7, "tree": lambda s: 1e-4 + s / 2e7}
    >>> sizes = [1e3, 1e5, 1e6]
    >>> fit = fit_collective("all_reduce", sizes, [model["ring"](s) + 1e-5 for s in sizes],
    ...                      lambda a, s: model[a](s), ["ring", "tree"])
    >>> fit.algorithm, round(fit.overhead, 9)
    ('ring', 1e-05)
    """
    table = pd.DataFrame({"size": np.asarray(sizes, float), "t": np.asarray(seconds, float)})
    medians = table.groupby("size")["t"].median()
    s, t = medians.index.to_numpy(float), medians.to_numpy(float)
    predicted = {a: [float(predict(a, x)) for x in s] for a in algorithms}
    fit = CollectiveFit(op, s.tolist(), t.tolist(), predicted, "", 0.0, [])
    fit.algorithm = min(algorithms, key=fit.rms)
    best = np.asarray(predicted[fit.algorithm])
    small = slice(0, max(1, len(s) // 2))
    fit.overhead = float(np.median((t - best)[small]))
    fit.residuals = ((best + fit.overhead - t) / t).tolist()
    return fit


@dataclass
class UnfairnessFit:
    """How evenly a fan-out's receivers finished, measured and simulated.

    ``measured`` is the mean over repeats of :func:`evenness`; ``curve`` maps each
    ``unfairness`` the search tried to the simulator's mean evenness of the same fan-out;
    ``unfairness`` is the one whose evenness is closest to the measured one.
    """

    unfairness: float
    measured: float
    repeats: int
    curve: dict[float, float]

    @property
    def predicted(self) -> float:
        """The simulator's evenness at the fitted ``unfairness``."""
        return self.curve[self.unfairness]


def evenness(rows: pd.DataFrame) -> pd.Series:
    """Per repeat of a fan-out: the receivers' mean time over the last one's.

    1 when they finish together (max-min sharing of equal routes); for ``n`` receivers
    served one after another, ``(n + 1) / (2 n)``.

    >>> rows = pd.DataFrame({"repeat": [1, 1, 1, 2, 2, 2], "fanout": [1, 2, 3, 3, 3, 3.0]})
    >>> evenness(rows).tolist()
    [0.6666666666666666, 1.0]
    """
    times = rows.groupby("repeat")["fanout"]
    return times.mean() / times.max()


#: The largest ``unfairness`` a fit returns (weights spread by e^3 per standard deviation:
#: flows all but served one after another), and the resolution of its search.
MAX_UNFAIRNESS, UNFAIRNESS_STEP = 3.0, 0.01


def fit_unfairness(rows: pd.DataFrame, simulate: Callable[[float], float]) -> UnfairnessFit:
    """Find the ``unfairness`` whose simulated evenness (``simulate(unfairness)``: the mean
    over draws of the flows' weights, falling as ``unfairness`` grows) equals the measured
    mean :func:`evenness` of ``rows`` (``repeat``, ``fanout`` seconds per receiver), by
    bisection to :data:`UNFAIRNESS_STEP` within ``[0, MAX_UNFAIRNESS]``.

    Examples
    --------
    A simulator whose evenness falls linearly from 1 at 0 to 0.7 at 3:

    >>> rows = pd.DataFrame({"repeat": [1, 1, 2, 2], "fanout": [0.8, 1.0, 0.9, 1.0]})
    >>> fit = fit_unfairness(rows, lambda u: 1 - 0.1 * u)
    >>> fit.measured, round(fit.unfairness, 2), len(fit.curve) < 12
    (0.925, 0.75, True)
    """
    per_repeat = evenness(rows)
    if per_repeat.empty:
        raise ValueError("the probe recorded no fan-out; it needs at least three ranks")
    measured = float(per_repeat.mean())
    curve = {0.0: float(simulate(0.0)), MAX_UNFAIRNESS: float(simulate(MAX_UNFAIRNESS))}
    low, high = 0.0, MAX_UNFAIRNESS
    if measured >= curve[low]:
        high = low  # as even as max-min sharing, or more: fair
    elif measured <= curve[high]:
        low = high
    while high - low > UNFAIRNESS_STEP:
        middle = round((low + high) / 2, 6)
        curve[middle] = float(simulate(middle))
        low, high = (middle, high) if curve[middle] > measured else (low, middle)
    best = min((low, high), key=lambda u: abs(curve[u] - measured))
    return UnfairnessFit(best, measured, int(per_repeat.size), dict(sorted(curve.items())))


def compute_profile(logs: pd.DataFrame, warmup: int = 1) -> pd.DataFrame:
    """Each rank's worker-step seconds (``rank``, ``gradient``, ``seconds``), without the
    first ``warmup`` steps of each rank (allocation and dispatch caches).

    Examples
    --------
    >>> logs = pd.DataFrame({"rank": [0, 0, 0, 1, 1], "gradient": [0, 1, 2, 0, 1],
    ...                      "compute": [0.9, 0.1, 0.2, 0.8, 0.3]})
    >>> compute_profile(logs).to_dict("list")
    {'rank': [0, 0, 1], 'gradient': [0, 1, 0], 'seconds': [0.1, 0.2, 0.3]}
    """
    rows = logs.dropna(subset=["compute"]).sort_values(["rank", "gradient"], kind="stable")
    parts = []
    for rank, group in rows.groupby("rank"):
        seconds = group["compute"].to_numpy(float)
        seconds = seconds[warmup:] if len(seconds) > warmup else seconds  # keep every rank
        parts.append(
            pd.DataFrame({"rank": int(rank), "gradient": range(len(seconds)), "seconds": seconds})
        )
    if not parts:
        raise ValueError("the probe recorded no worker steps; give it steps >= 2")
    return pd.concat(parts, ignore_index=True)
