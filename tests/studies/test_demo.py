import pandas as pd
from typer.testing import CliRunner

from runs import RunResult
from studies.cli import app
from studies.demo import DemoStudy, run_demo, slug


def test_demo_writes_runs_summary_and_figure(tmp_path):
    study = DemoStudy(workers=3, budget=0.05, eval_every=5)
    results, table = run_demo(tmp_path, study)
    assert list(table.index) == list(study.strategies())
    families = {type(s).__name__ for s in study.strategies().values()}
    assert len(study.strategies()) >= 6 and len(families) >= 6
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    assert pd.read_csv(tmp_path / "summary.csv", index_col=0).shape == table.shape
    for label, result in results.items():
        assert result.summary["stop_reason"] == "max_time"
        assert result.summary["steps"] > 0
        assert result.evals["loss"].iloc[-1] < result.evals["loss"].iloc[0]
        assert result.summary["time"] == 0.05
        loaded = RunResult.load(tmp_path / slug(label))
        assert loaded.summary["steps"] == result.summary["steps"]


def test_demo_cli_runs_and_prints_a_table(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--budget", "0.02", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "PS async" in result.output and (out / "comparison.png").is_file()


def test_demo_cli_rejects_a_bad_bandwidth_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--bandwidth", "fast"])
    assert result.exit_code == 2
    assert "--bandwidth" in result.output and "Traceback" not in result.output


def test_demo_cli_reports_an_unwritable_output_directory_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["demo", "--out", str(blocker / "demo"), "--budget", "0.01"])
    assert result.exit_code == 2
    assert "--out" in result.output and "Traceback" not in result.output
