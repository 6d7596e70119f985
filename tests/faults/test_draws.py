"""Random crash times: their distribution (mean and median against the theory), and that they
are the same on every rerun, per rank, and apart from the run's other draws."""

from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pytest

from faults import STREAM, RandomCrashes
from faults.draws import uptimes
from topologies.limits import MAX_HOSTS

N = 20_000


def _draws(crashes: RandomCrashes, seed: int = 0, rank: int = 0, n: int = N) -> np.ndarray:
    return np.array(list(islice(crashes.uptimes(seed, rank), n)))


@pytest.mark.parametrize(
    "crashes",
    [
        RandomCrashes(mtbf=300.0),
        RandomCrashes(mtbf=300.0, distribution="weibull", shape=0.7),
        RandomCrashes(mtbf=300.0, distribution="weibull", shape=2.5),
    ],
    ids=["exponential", "weibull-0.7", "weibull-2.5"],
)
def test_mean_is_the_mtbf_and_median_fits_the_shape(crashes: RandomCrashes) -> None:
    x = _draws(crashes)
    k = crashes.shape or 1.0  # an exponential is a weibull of shape 1
    scale = crashes.mtbf / math.gamma(1 + 1 / k)
    # The mean of N draws is within 5 standard errors of the mtbf (CLT; the theory's variance).
    sd = scale * math.sqrt(math.gamma(1 + 2 / k) - math.gamma(1 + 1 / k) ** 2)
    assert abs(x.mean() - crashes.mtbf) < 5 * sd / math.sqrt(N)
    # The shape: half the draws fall below the theory's median, within 5 binomial errors.
    median = scale * math.log(2) ** (1 / k)
    assert abs((x < median).mean() - 0.5) < 5 * 0.5 / math.sqrt(N)


def test_draws_are_bit_identical_on_every_call() -> None:
    crashes = RandomCrashes(mtbf=60.0, distribution="weibull", shape=1.5)
    first = _draws(crashes, seed=11, rank=3, n=100)
    assert first.tobytes() == _draws(crashes, seed=11, rank=3, n=100).tobytes()
    assert first.tobytes() == _draws(RandomCrashes(**vars(crashes)), 11, 3, 100).tobytes()


def test_ranks_and_seeds_draw_differently() -> None:
    crashes = RandomCrashes(mtbf=60.0)
    base = _draws(crashes, seed=1, rank=0, n=20)
    assert not np.array_equal(base, _draws(crashes, seed=1, rank=1, n=20))
    assert not np.array_equal(base, _draws(crashes, seed=2, rank=0, n=20))


def test_the_seed_is_the_documented_stream() -> None:
    # The contract backends and reruns rely on: rank r's draws come from
    # default_rng([seed, STREAM, r]) alone, whatever else the run draws.
    expected = np.random.default_rng([5, STREAM, 2]).exponential(300.0, size=4)
    assert list(islice(uptimes(300.0, "exponential", None, 5, 2), 4)) == expected.tolist()
    # Above any rank, so no [seed, rank, epoch] seed of the data order can be the same.
    assert STREAM > MAX_HOSTS


def test_the_values_are_pinned() -> None:
    # A change in how crashes are drawn changes every fault study's numbers: it must be seen.
    got = list(islice(uptimes(300.0, "exponential", None, 0, 3), 3))
    assert got == pytest.approx([638.867308, 48.830445, 124.102423], abs=1e-6)
