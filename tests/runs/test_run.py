"""The summary both backends write, for metrics with and without staleness."""

import math

import pandas as pd

from runs.run import summarize
from runs.schema import row


def _summary(metrics):
    return summarize(
        metrics, stop_reason="steps", steps=2, samples=64, nbytes=0.0, time=1.0, wall_time=1.0
    )


def test_metrics_without_staleness_summarize_to_nan_staleness():
    # A run whose rows have no staleness column (only logs and evaluations) has no
    # staleness to average: NaN, not an error from an empty stand-in.
    metrics = pd.DataFrame([row("eval", time=0, step=0, samples=0, nbytes=0, loss=2.0)])
    summary = _summary(metrics)
    assert math.isnan(summary["staleness_mean"]) and math.isnan(summary["staleness_max"])
    assert summary["final_loss"] == 2.0
    assert math.isnan(_summary(pd.DataFrame())["staleness_mean"])


def test_staleness_is_averaged_over_step_rows():
    rows = [
        row("step", time=t, step=t, samples=0, nbytes=0, staleness=s)
        for t, s in ((1, 0.0), (2, 2.0))
    ]
    summary = _summary(pd.DataFrame(rows))
    assert (summary["staleness_mean"], summary["staleness_max"]) == (1.0, 2.0)


def test_evaluations_of_a_return_summarize_without_a_final_loss():
    # A reinforcement-learning run evaluates a return, not a loss (issue 26).
    metrics = pd.DataFrame([row("eval", time=0, step=0, samples=0, nbytes=0, **{"return": 9.5})])
    summary = _summary(metrics)
    assert "final_loss" not in summary and summary["steps"] == 2
