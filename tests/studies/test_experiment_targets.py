"""``run.target_return`` in experiment files: checked against the workload's metric at load,
said at its field, and run to its stop by ``commsim run``."""

import json
import textwrap

import pytest
from typer.testing import CliRunner

from studies.cli import app
from studies.experiment import ExperimentError, load_experiment, run_experiment
from tests import return_workloads  # noqa: F401  (registers return_quadratic)


@pytest.mark.parametrize(
    ("workload", "run", "message"),
    [
        (
            "return_quadratic",
            {"target_loss": 0.5},
            r"^run\.target_loss: target_loss=0\.5: workload 'return_quadratic' is evaluated by "
            r"its mean return \(higher is better\), not a loss; give target_return instead$",
        ),
        (
            "quadratic",
            {"target_return": 195},
            r"^run\.target_return: target_return=195\.0: workload 'quadratic' is evaluated by its "
            r"held-out loss \(lower is better\), not a return; give target_loss instead$",
        ),
        (
            "return_quadratic",
            {"target_loss": 0.5, "target_return": 195},
            r"^run\.target_loss: target_loss and target_return are both given",
        ),
        (
            "return_quadratic",
            {"target_return": 1.0, "timing_only": True},
            r"^run\.target_return: target_return needs returns; timing_only computes none",
        ),
    ],
)
def test_a_target_the_workloads_metric_is_not_is_refused_at_its_field(workload, run, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment({"workload": workload, "topology": "ring:n=2", "run": run})


def test_an_experiment_without_target_return_keeps_its_key():
    # The key main computed for this experiment, before run.target_return existed: results
    # swept before it are reused, not run again.
    exp = load_experiment(
        {"workload": "quadratic", "topology": "ring:n=2", "run": {"steps": 10, "target_loss": 0.5}}
    )
    assert "target_return" not in exp.to_dict()["run"]
    assert exp.key() == "69b4c6ff9a70"


def test_run_experiment_stops_on_target_return():
    exp = load_experiment(
        {
            "workload": "return_quadratic",
            "topology": "ring:n=4",
            "run": {"steps": 200, "eval_every": 1, "target_return": -0.2},
        }
    )
    summary = run_experiment(exp).summary
    assert summary["stop_reason"] == "target_return"
    assert summary["target_return"] == -0.2 and summary["final_return"] >= -0.2
    assert summary["step_to_target"] == summary["steps"] < 200


def test_commsim_run_takes_a_files_target_return(tmp_path):
    file = tmp_path / "rl.toml"
    file.write_text(
        textwrap.dedent(
            """
            [run]
            name = "returns"
            steps = 200
            eval_every = 1
            target_return = -0.2

            [workload]
            name = "return_quadratic"

            [topology]
            kind = "ring"
            n = 4
            """
        )
    )
    out = tmp_path / "run"
    args = ["run", str(file), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--import", "tests.return_workloads"])
    assert result.exit_code == 0, result.output
    assert "final return" in result.output and "final loss" not in result.output
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["stop_reason"] == "target_return"
    assert record["config"]["target_return"] == -0.2


def test_commsim_sweep_tabulates_the_final_return(tmp_path):
    file = tmp_path / "rl.toml"
    file.write_text(
        textwrap.dedent(
            """
            [run]
            name = "returns"
            steps = 20
            eval_every = 5
            target_return = -0.2

            [workload]
            name = "return_quadratic"

            [topology]
            kind = "ring"
            n = 2

            [sweep]
            seeds = [0, 1]
            """
        )
    )
    args = ["sweep", str(file), "--out", str(tmp_path / "out"), "--no-progress", "--no-figures"]
    done = CliRunner().invoke(app, [*args, "--import", "tests.return_workloads"])
    assert done.exit_code == 0, done.output
    header = next(line for line in done.output.splitlines() if "status" in line)
    assert header.split()[-4:] == ["return", "to", "target", "(s)"]
    record = json.loads(next((tmp_path / "out" / "runs").glob("*/run.json")).read_text())
    final = f"{record['summary']['final_return']:.4g}"
    assert any(final in line for line in done.output.splitlines() if "finished" in line)
