"""``target_loss`` and ``max_time`` on real: the run stops as it goes (:mod:`real.watch`), and
the replay stops where ``sim`` would, so ``*_to_target`` mean the same in both."""

import json

import pytest
from typer.testing import CliRunner

import real
import sim
import topologies
from studies.cli import app

#: Far more steps than the target needs: the run ends only if the watcher stops it.
MANY = 100_000


def test_a_target_loss_stops_the_ranks_early_at_the_evaluation_sim_stops_at():
    # quadratic, 2 ranks, all-reduce: the loss is 0.485 at step 6 and 0.387 at step 8.
    kwargs = {"eval_every": 2, "target_loss": 0.45}
    measured = real.run("allreduce", "quadratic", nproc=2, steps=MANY, timeout=60, **kwargs)
    simulated = sim.run("allreduce", "quadratic", topologies.star(2), steps=MANY, **kwargs)
    s, r = simulated.summary, measured.summary
    assert r["stop_reason"] == s["stop_reason"] == "target_loss"
    assert r["steps"] == s["steps"] == r["step_to_target"] == s["step_to_target"] == 8
    assert r["samples_to_target"] == s["samples_to_target"] == 8 * 2 * 32
    assert r["final_loss"] == pytest.approx(s["final_loss"], rel=1e-6)
    # The ranks stopped within an evaluation period or so, not after MANY steps.
    assert r["samples"] + r["discarded_samples"] < 1000 * 2 * 32
    assert measured.config["target_loss"] == 0.45


def test_max_time_stops_the_run_after_that_many_wall_seconds():
    measured = real.run("allreduce", "quadratic", nproc=2, steps=MANY, max_time=1.0, timeout=60)
    summary = measured.summary
    assert summary["stop_reason"] == "max_time"
    assert 0 < summary["steps"] < MANY and summary["time"] == 1.0
    rows = measured.metrics[measured.metrics["kind"] != "rank"]  # (a rank row: its end)
    assert (rows["time"] <= 1.0).all()  # events after it were dropped
    assert measured.evals["step"].iloc[-1] == summary["steps"]


def test_bad_stops_are_one_line_naming_the_argument():
    with pytest.raises(ValueError, match=r"^max_time=-1 must be a positive"):
        real.run("allreduce", "quadratic", nproc=2, steps=2, max_time=-1)
    with pytest.raises(ValueError, match=r"^target_loss='low' must be a number"):
        real.run("allreduce", "quadratic", nproc=2, steps=2, target_loss="low")


def test_commsim_real_takes_target_loss(tmp_path):
    out = tmp_path / "run"
    args = ["real", "--nproc", "2", "--workload", "quadratic", "--steps", str(MANY)]
    args += ["--eval-every", "2", "--target-loss", "0.45", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["stop_reason"] == "target_loss"
    assert record["summary"]["steps"] == 8


def test_an_experiment_files_target_loss_is_run_on_real_without_a_warning(recwarn):
    from studies.experiment import load_experiment, run_experiment

    exp = load_experiment(
        {
            "workload": "quadratic",
            "topology": "star:n=2",
            "run": {"steps": MANY, "eval_every": 2, "target_loss": 0.45},
        }
    )
    result = run_experiment(exp, backend="real")
    assert result.summary["stop_reason"] == "target_loss" and result.summary["steps"] == 8
    assert not [w for w in recwarn if "ignores" in str(w.message)]


# Under torchrun, rank 0 watches the target loss too: asserted in tests/real/test_launchers.py
# (test_torchrun_several_processes_per_node_run_a_server_strategy_to_its_target), whose
# torchrun start it shares.


def test_a_target_return_stops_the_ranks_where_sim_stops():
    # return_quadratic is quadratic evaluated by -loss: the return is -0.485 at step 6 and
    # -0.387 at step 8, as the loss of the test above.
    from tests import return_workloads  # noqa: F401  (registers return_quadratic)

    kwargs = {"eval_every": 2, "target_return": -0.45}
    measured = real.run("allreduce", "return_quadratic", nproc=2, steps=MANY, timeout=60, **kwargs)
    simulated = sim.run("allreduce", "return_quadratic", topologies.star(2), steps=MANY, **kwargs)
    s, r = simulated.summary, measured.summary
    assert r["stop_reason"] == s["stop_reason"] == "target_return"
    assert r["steps"] == s["steps"] == r["step_to_target"] == s["step_to_target"] == 8
    assert r["final_return"] == pytest.approx(s["final_return"], rel=1e-6)
    assert r["metric"] == "return" and "final_loss" not in r
    assert r["samples"] + r["discarded_samples"] < 1000 * 2 * 32  # stopped as it went
    assert measured.config["target_return"] == -0.45 and "target_loss" not in measured.config


def test_commsim_real_refuses_the_target_the_workload_lacks_in_one_line(tmp_path):
    # Refused before any rank starts: no processes.
    args = ["real", "--nproc", "2", "--workload", "quadratic", "--steps", "2"]
    args += ["--target-return", "195", "--no-progress", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: target_return=195.0: workload 'quadratic' is evaluated by its held-out loss "
        "(lower is better), not a return; give target_loss instead"
    ]
