"""A run's metric and target (``runs.metric``) in the summary and the ledger, on hand-made
rows whose answers are read off by eye."""

import math

import pandas as pd
import pytest
import torch

from runs import summarize
from runs.metric import LOSS, Metric, Target, metric_of
from strategies.events import Settled, Stepped
from strategies.ledger import Ledger

RETURN = Metric("return", maximize=True)
COUNTS = {"stop_reason": "steps", "steps": 3, "samples": 96, "nbytes": 10.0, "time": 3.0}


def _evals(column, values):
    return pd.DataFrame(
        {
            "kind": "eval",
            "time": [0.0, 1.0, 2.0, 3.0][: len(values)],
            "step": range(len(values)),
            "samples": [0.0, 32.0, 64.0, 96.0][: len(values)],
            "bytes": [0.0, 4.0, 8.0, 10.0][: len(values)],
            column: values,
        }
    )


def test_a_return_summary_has_its_final_and_best_return_and_reaches_the_target_upwards():
    metrics = _evals("return", [1.0, 5.0, 3.0, 6.0]).assign(loss=math.nan)
    summary = summarize(metrics, **COUNTS, wall_time=0.1, metric=RETURN, target=Target(RETURN, 4.0))
    assert summary["metric"] == "return" and summary["maximize"] is True
    assert summary["final_return"] == 6.0 and summary["best_return"] == 6.0
    assert summary["target_return"] == 4.0
    # 5.0 at t=1 is the first at or above 4 (the loss rule would have taken 1.0 at t=0).
    assert (summary["time_to_target"], summary["bytes_to_target"]) == (1.0, 4.0)
    assert "final_loss" not in summary and "target_loss" not in summary


def test_a_loss_summary_has_exactly_the_keys_it_had():
    metrics = _evals("loss", [3.0, 1.0, 0.5])
    by_value = summarize(metrics, **COUNTS, wall_time=0.1, target_loss=1.0)
    by_target = summarize(metrics, **COUNTS, wall_time=0.1, target=Target(LOSS, 1.0))
    assert by_value == by_target
    assert list(by_value) == [
        "stop_reason",
        "steps",
        "samples",
        "bytes",
        "time",
        "steps_per_s",
        "samples_per_s",
        "staleness_mean",
        "staleness_max",
        "wall_time",
        "final_loss",
        "target_loss",
        "time_to_target",
        "step_to_target",
        "samples_to_target",
        "bytes_to_target",
    ]
    assert by_value["time_to_target"] == 1.0


def test_the_ledger_stops_on_a_return_at_or_above_the_target():
    returns = iter([1.0, 2.0, 4.0, 5.0])
    ledger = Ledger(
        [0],
        "one",
        steps=10,
        eval_every=1,
        evaluate=lambda p: {"return": next(returns)},
        target=Target(RETURN, 3.5),
        metric=RETURN,
    )
    ledger.start({0: torch.zeros(1)})
    for k in range(1, 4):  # each step's state is settled as the next is about to be applied
        ledger.record(Stepped(float(k), 0, 0, torch.zeros(1)))
        ledger.record(Settled(k + 0.5, 0, torch.zeros(1)))
    ledger.finish("finished")
    assert ledger.stop_reason == "target_return"
    assert ledger.target_reached["step"] == 2
    evals = [r for r in ledger.rows if r["kind"] == "eval"]
    assert [r["return"] for r in evals] == [1.0, 2.0, 4.0]
    assert all(math.isnan(r["loss"]) for r in evals)  # the schema's column, unmeasured


def test_a_workload_of_your_own_is_a_loss_workload_unless_it_declares_otherwise():
    class Mine:
        name = "mine"

    assert metric_of(Mine()) == LOSS
    Mine.metric, Mine.maximize = "return", "yes"
    with pytest.raises(ValueError, match=r"^workload 'mine' declares metric='return', "):
        metric_of(Mine())
