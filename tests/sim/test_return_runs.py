"""A workload evaluated by a return (higher is better) end to end in ``sim``: its rows, the
``target_return`` stop, the summary, the run directory, and the one-line refusals.

The return workload is ``quadratic`` reporting ``return = -loss`` (``tests.return_workloads``),
so every figure of a return run is checked against the loss run of the same seed: the same
training, the metric negated.
"""

import math

import pytest

import sim
import topologies
import workloads
from runs import RunResult
from tests.return_workloads import ReturnQuadratic, return_quadratic

RING = topologies.ring(4)


def test_a_return_run_records_its_return_with_a_nan_loss_and_summarises_it():
    returns = sim.run("allreduce", "return_quadratic", RING, steps=30, eval_every=5)
    losses = sim.run("allreduce", "quadratic", RING, steps=30, eval_every=5)
    evals = returns.evals
    assert list(evals["return"]) == [-v for v in losses.evals["loss"]]
    assert evals["loss"].isna().all()  # the schema's column, unmeasured
    assert (evals["episode_length"] == 10.0).all()
    summary = returns.summary
    assert summary["metric"] == "return" and summary["maximize"] is True
    assert summary["final_return"] == -losses.summary["final_loss"]
    assert summary["best_return"] == max(evals["return"])
    assert "final_loss" not in summary
    # What does not depend on the metric is the loss run's.
    for key in ("steps", "samples", "bytes", "time", "stop_reason"):
        assert summary[key] == losses.summary[key]


def test_a_loss_runs_summary_has_no_metric_keys():
    summary = sim.run("allreduce", "quadratic", RING, steps=4, eval_every=2).summary
    assert "final_loss" in summary
    assert not {"metric", "maximize", "best_loss", "final_return"} & set(summary)


def test_target_return_stops_where_the_same_target_loss_stops_the_loss_run():
    free = sim.run("allreduce", "return_quadratic", RING, steps=200, eval_every=1)
    level = float(free.evals["return"].iloc[25])
    hit = sim.run(
        "allreduce", "return_quadratic", RING, steps=200, eval_every=1, target_return=level
    )
    twin = sim.run("allreduce", "quadratic", RING, steps=200, eval_every=1, target_loss=-level)
    s, t = hit.summary, twin.summary
    assert s["stop_reason"] == "target_return" and t["stop_reason"] == "target_loss"
    assert s["target_return"] == level
    # The first evaluation at or above the target, read off the run that did not stop.
    first = free.evals[free.evals["return"] >= level].iloc[0]
    assert s["step_to_target"] == first["step"] <= 25
    assert s["time_to_target"] == first["time"]
    assert s["bytes_to_target"] == first["bytes"]
    assert s["samples_to_target"] == first["samples"]
    for key in ("step_to_target", "time_to_target", "bytes_to_target", "steps", "time"):
        assert s[key] == t[key]
    assert hit.config["target_return"] == level and hit.config["target_loss"] is None


def test_a_target_return_never_reached_runs_to_the_end_and_says_so():
    result = sim.run(
        "allreduce", "return_quadratic", RING, steps=6, eval_every=2, target_return=1e9
    )
    assert result.summary["stop_reason"] == "steps"
    assert result.summary["time_to_target"] is None
    assert result.summary["target_return"] == 1e9


def test_the_run_directory_of_a_return_run_reads_back(tmp_path):
    from studies.load import load

    result = sim.run(
        "allreduce",
        "return_quadratic",
        RING,
        steps=6,
        eval_every=2,
        target_return=-0.5,
        out=tmp_path / "run",
    )
    back = RunResult.load(tmp_path / "run")
    assert back.summary["metric"] == "return"
    assert list(back.evals["return"]) == list(result.evals["return"])
    table = load(tmp_path / "run")
    assert set(table["summary.metric"]) == {"return"}
    assert table.loc[table["kind"] == "eval", "loss"].isna().all()


@pytest.mark.parametrize(
    ("workload", "stops", "message"),
    [
        (
            "return_quadratic",
            {"target_loss": 0.5},
            r"^target_loss=0\.5: workload 'return_quadratic' is evaluated by its mean return "
            r"\(higher is better\), not a loss; give target_return instead$",
        ),
        (
            "quadratic",
            {"target_return": 195},
            r"^target_return=195: workload 'quadratic' is evaluated by its held-out loss "
            r"\(lower is better\), not a return; give target_loss instead$",
        ),
        (
            "return_quadratic",
            {"target_loss": 0.5, "target_return": 195},
            r"^target_loss and target_return are both given; a run has one target: keep "
            r"target_return",
        ),
        ("return_quadratic", {"target_return": "high"}, r"^target_return='high' must be a number"),
        ("return_quadratic", {"target_return": math.nan}, r"^target_return=nan must be a number"),
    ],
)
def test_a_target_that_is_not_the_workloads_metric_is_one_line(workload, stops, message):
    with pytest.raises(ValueError, match=message) as caught:
        sim.run("allreduce", workload, RING, steps=2, **stops)
    assert "\n" not in str(caught.value)


def test_timing_only_refuses_a_target_return():
    with pytest.raises(ValueError, match=r"^target_return needs returns; timing_only"):
        sim.run("allreduce", "return_quadratic", RING, steps=2, target_return=1, timing_only=True)


def test_a_workload_whose_evaluation_lacks_its_metric_is_one_line():
    class Forgetful(ReturnQuadratic):
        def evaluate(self, model):
            return {"reward": 1.0}

    workload = return_quadratic()
    workload.__class__ = Forgetful
    with pytest.raises(ValueError, match=r"declares metric='return' but its evaluate\(\)"):
        sim.run("allreduce", workload, RING, steps=2)


def test_the_return_workload_is_registered_by_importing_its_module():
    assert isinstance(workloads.get("return_quadratic"), ReturnQuadratic)
