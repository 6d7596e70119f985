"""Random crash times: each rank's successive uptimes, drawn from its own stream of the run's
seed, so that a schedule's crashes are the same on every rerun and on both backends.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

__all__ = ["DISTRIBUTIONS", "STREAM", "Distribution", "uptimes"]

#: The distributions of the time between failures.
DISTRIBUTIONS = ("exponential", "weibull")
Distribution = Literal["exponential", "weibull"]

#: The crash draws' stream of the run's seed: a rank's generator is seeded with
#: ``[seed, STREAM, rank]``, apart from every other draw of the run (stragglers, data order,
#: the network's weights), so adding faults to a run shifts none of them. Above 2**22 (the most
#: hosts a topology may have), so no ``[seed, rank, epoch]`` seed of another draw can equal it.
STREAM = 0xFA1175


def uptimes(
    mtbf: float, distribution: Distribution, shape: float | None, seed: int, rank: int
) -> Iterator[float]:
    """Successive uptimes of ``rank`` (seconds from each (re)start to its next crash), endless.

    Parameters
    ----------
    mtbf
        The mean time between failures, seconds (> 0): the draws' mean.
    distribution
        ``"exponential"`` (memoryless) or ``"weibull"``, scaled to the mean ``mtbf``
        (``scale = mtbf / gamma(1 + 1/shape)``; ``shape < 1``: failures come early, as
        infant mortality; ``shape > 1``: wear-out).
    shape
        The Weibull shape (> 0); None for exponential.
    seed, rank
        The run's seed and the rank: the generator is ``default_rng([seed, STREAM, rank])``.

    Examples
    --------
    >>> from itertools import islice
    >>> [round(t, 1) for t in islice(uptimes(300.0, "exponential", None, 0, 3), 3)]
    [638.9, 48.8, 124.1]
    >>> a = list(islice(uptimes(300.0, "weibull", 0.7, 1, 0), 5))
    >>> a == list(islice(uptimes(300.0, "weibull", 0.7, 1, 0), 5))
    True
    >>> a == list(islice(uptimes(300.0, "weibull", 0.7, 1, 1), 5))
    False
    """
    rng = np.random.default_rng([seed, STREAM, rank])
    if distribution == "exponential":
        while True:
            yield float(rng.exponential(mtbf))
    if shape is None:
        raise ValueError("a weibull draw needs a shape")
    scale = mtbf / math.gamma(1.0 + 1.0 / shape)
    while True:
        yield float(scale * rng.weibull(shape))
