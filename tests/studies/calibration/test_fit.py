"""The fits against closed forms, with noise where the real measurements have it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from studies.calibration.fit import compute_profile, fit_collective, fit_link


def test_a_link_fit_recovers_latency_and_bandwidth_through_noisy_repeats():
    rng = np.random.default_rng(0)
    sizes = np.repeat(np.geomspace(1e3, 4e6, 7), 5)
    clean = 2e-4 + sizes / 12.5e6
    noisy = clean * (1 + 0.01 * rng.standard_normal(sizes.size))
    noisy[::5] *= 3  # one slow repeat per size: the median ignores it
    fit = fit_link(sizes, noisy)
    assert fit.latency == pytest.approx(2e-4, rel=0.05)
    assert fit.bandwidth == pytest.approx(12.5e6, rel=0.02)
    assert fit.max_residual < 0.03


def test_a_negative_intercept_is_floored():
    sizes = [1e4, 1e5, 1e6]
    fit = fit_link(sizes, [s / 1e9 - 1e-7 for s in sizes])
    assert fit.latency == pytest.approx(1e-7)
    assert fit.bandwidth == pytest.approx(1e9, rel=1e-6)


def test_a_token_bucket_burst_on_mid_sizes_does_not_inflate_the_bandwidth():
    # tbf lets a full bucket (64 KiB) through at once: mid sizes look faster than the rate.
    rate, bucket = 12e6, 65536
    sizes = np.geomspace(1024, 4 * 2**20, 7)
    seconds = [1e-3 + max(0.0, s - bucket) / rate for s in sizes]
    fit = fit_link(sizes, seconds)
    assert fit.bandwidth == pytest.approx(rate, rel=0.02)


@pytest.mark.parametrize(
    "sizes, seconds, needle",
    [([1e3, 1e3], [1e-3, 1e-3], "two message sizes"), ([1e3, 1e6], [1e-2, 1e-3], "do not grow")],
)
def test_fits_that_cannot_be_made_say_why(sizes, seconds, needle):
    with pytest.raises(ValueError, match=needle):
        fit_link(sizes, seconds)


def test_a_collective_fit_picks_the_algorithm_that_explains_the_shape():
    models = {"ring": lambda s: 1e-4 + s / 1e8, "tree": lambda s: 3e-4 + s / 5e7}
    sizes = np.geomspace(1e3, 1e7, 5)
    measured = [models["tree"](s) + 5e-4 for s in sizes]  # tree, plus a per-call overhead
    fit = fit_collective("all_reduce", sizes, measured, lambda a, s: models[a](s), list(models))
    assert fit.algorithm == "tree"
    assert fit.overhead == pytest.approx(5e-4)
    assert max(abs(r) for r in fit.residuals) < 1e-9


def test_the_compute_profile_drops_each_ranks_warm_up_and_keeps_order():
    logs = pd.DataFrame(
        {
            "rank": [1, 0, 0, 1, 0, 1],
            "gradient": [1, 1, 0, 0, 2, 2],
            "compute": [0.2, 0.1, 9.0, 9.0, 0.3, 0.4],
            "pingpong": [np.nan] * 6,
        }
    )
    profile = compute_profile(logs)
    assert profile.to_dict("list") == {
        "rank": [0, 0, 1, 1],
        "gradient": [0, 1, 0, 1],
        "seconds": [0.1, 0.3, 0.2, 0.4],
    }
