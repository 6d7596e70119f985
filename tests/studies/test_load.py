import json
import re
import shutil

import pandas as pd
import pytest

from studies.load import LoadError, find_runs, from_results, load, load_runs

RUNS = 16 + 4 + 1 + 1  # sim study, scaling, short, real (see conftest)


def test_load_finds_every_run_at_any_depth_with_all_its_rows(runs_root, study):
    assert study["run"].nunique() == RUNS
    for run, rows in study.groupby("run"):
        metrics = pd.read_parquet(f"{run}/metrics.parquet")
        assert len(rows) == len(metrics)
        assert list(rows["kind"]) == list(metrics["kind"])
        assert list(rows["loss"].dropna()) == list(metrics["loss"].dropna())


def test_config_is_flattened_into_dotted_columns_as_nested_in_run_json(runs_root, study):
    run = runs_root / "sim" / "ps_async" / "bw=100Mbps" / "seed=1"
    rows = study[study["run"] == str(run)]
    config = json.loads((run / "run.json").read_text())["config"]
    first = rows.iloc[0]
    assert first["strategy.name"] == config["strategy"]["name"] == "parameter_server"
    assert first["strategy.mode"] == "async"
    assert first["topology.bandwidth"] == config["topology"]["bandwidth"] == 12.5e6
    assert first["workload.name"] == "mlp_digits"
    assert first["seed"] == 1 and first["backend"] == "sim"
    assert (rows["strategy.mode"] == "async").all()  # every row of the run carries it


def test_summary_status_name_and_backends_sit_side_by_side(runs_root, study):
    assert set(study["backend"]) == {"sim", "real-gloo"}
    real = study[study["backend"] == "real-gloo"]
    assert real["run"].iloc[0] == str(runs_root / "real" / "allreduce")
    assert real["name"].iloc[0] == "allreduce"
    assert set(study["status"]) == {"finished"}
    assert study["error"].isna().all()
    run = runs_root / "sim" / "allreduce" / "bw=1Gbps" / "seed=0"
    summary = json.loads((run / "run.json").read_text())["summary"]
    rows = study[study["run"] == str(run)]
    assert rows["summary.time_to_target"].iloc[0] == summary["time_to_target"]
    assert rows["summary.target_loss"].iloc[0] == 2.1
    assert (rows["summary.steps"] == summary["steps"]).all()


def test_globs_run_json_files_and_several_paths_are_accepted_without_repeats(runs_root):
    assert len(find_runs(f"{runs_root}/sim/*/bw=1Gbps/*")) == 8
    assert len(find_runs(f"{runs_root}/**/seed=0")) == 8 + 2
    single = runs_root / "real" / "allreduce"
    assert find_runs(single / "run.json") == [single]
    assert len(find_runs([runs_root / "scaling", f"{runs_root}/scaling/*/n=2/*"])) == 4
    # A glob over a results folder also matches figures and tables: they are skipped.
    (runs_root / "summary.csv").write_text("x\n")
    assert len(find_runs(f"{runs_root}/*")) == RUNS


def test_errors_are_one_line_and_name_the_path(runs_root, tmp_path):
    with pytest.raises(LoadError, match=r"^nothing matched '.*/nope-\*'$"):
        load(f"{tmp_path}/nope-*")
    with pytest.raises(LoadError, match="is not a run directory and holds none"):
        load(tmp_path)
    with pytest.raises(LoadError, match="does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LoadError, match="notes.txt' is a file, not a run directory"):
        load(tmp_path / "notes.txt")
    with pytest.raises(LoadError, match="no run directory matched"):
        load(f"{tmp_path}/*.txt")


def test_an_experiment_record_is_flattened_and_names_the_run(runs_root, tmp_path):
    run = shutil.copytree(runs_root / "short" / "local_sgd", tmp_path / "exp")
    record = json.loads((run / "run.json").read_text())
    record["experiment"] = {
        "run": {"name": "sweep seed=0", "steps": 8},
        "topology": "star:n=4,bandwidth=1Gbps",
    }
    (run / "run.json").write_text(json.dumps(record))
    df = load(run)
    assert df["name"].iloc[0] == "sweep seed=0"
    assert df["experiment.run.steps"].iloc[0] == 8
    assert df["experiment.topology"].iloc[0] == "star:n=4,bandwidth=1Gbps"
    assert df["topology.bandwidth"].iloc[0] == 1.25e8  # the config's resolved value stays
    assert load_runs(run)[0].name == "sweep seed=0"


def test_a_failed_run_without_rows_is_kept_and_a_clashing_key_is_renamed(tmp_path):
    run = tmp_path / "failed"
    run.mkdir()
    record = {"status": "failed", "config": {"time": 3, "strategy": {"name": "x"}}, "error": "E: x"}
    (run / "run.json").write_text(json.dumps(record))
    df = load(tmp_path)
    assert len(df) == 1 and pd.isna(df["kind"].iloc[0])
    assert (df["status"].iloc[0], df["error"].iloc[0]) == ("failed", "E: x")
    assert df["config.time"].iloc[0] == 3 and pd.isna(df["time"].iloc[0])


def test_a_broken_run_json_is_reported_in_one_line(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(LoadError, match=r"run.json: cannot read the run record"):
        load(tmp_path)


def test_from_results_gives_the_same_columns_as_load(runs_root):
    from runs import RunResult

    run = runs_root / "sim" / "local_sgd" / "bw=1Gbps" / "seed=0"
    loaded = load(run)
    memory = from_results({str(run): RunResult.load(run)})
    assert set(memory.columns) == set(loaded.columns)
    pd.testing.assert_frame_equal(
        memory[loaded.columns].drop(columns=["name", "status"]),
        loaded.drop(columns=["name", "status"]),
    )


def test_studies_load_stays_the_function_whatever_imports_its_module_first():
    """Importing a submodule binds its name on the package: a lazily imported ``load`` became
    the module ``studies.load`` once a sweep (or anything) imported it."""
    import subprocess
    import sys

    code = (
        "import studies, studies.sweep, studies.load\n"
        "assert callable(studies.load), studies.load\n"
        "assert callable(studies.load)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "paths, message",
    [
        (123, r"^paths=123: name run directories"),
        (None, r"^paths=None: name run directories"),
        (["a", 1], r"^1 in paths: name run directories"),
    ],
)
def test_paths_of_the_wrong_type_are_one_line(paths, message):
    with pytest.raises(LoadError, match=message):
        load(paths)


def _corrupt(run, what):
    """Break one file of a copied run directory the way a crash or a hand edit would."""
    record = json.loads((run / "run.json").read_text())
    if what == "config list":
        (run / "run.json").write_text(json.dumps({**record, "config": [1, 2]}))
    elif what == "record list":
        (run / "run.json").write_text("[1, 2]")
    elif what == "record broken":
        (run / "run.json").write_text("{not json")
    elif what == "metrics broken":
        (run / "metrics.parquet").write_bytes(b"junk")
    elif what == "loss text":
        metrics = pd.read_parquet(run / "metrics.parquet")
        metrics["loss"] = metrics["loss"].astype(str)
        metrics.loc[metrics.index[0], "loss"] = "abc"
        metrics.to_parquet(run / "metrics.parquet")


CORRUPTIONS = {
    "config list": "run.json: the record's 'config' is a list, not an object",
    "record list": "run.json: a run record is a JSON object, not list",
    "record broken": "run.json: cannot read the run record",
    "metrics broken": "metrics.parquet: cannot read the metrics",
    "loss text": "metrics.parquet: column 'loss' holds 'abc', not a number",
}


@pytest.mark.parametrize("what", CORRUPTIONS)
def test_a_corrupt_run_is_skipped_with_a_warning_naming_it(runs_root, tmp_path, what):
    """One corrupt run made load (and commsim plot) fail, or load text as losses."""
    from typer.testing import CliRunner

    from studies.cli import app

    good = shutil.copytree(runs_root / "short" / "local_sgd", tmp_path / "runs" / "good")
    bad = shutil.copytree(good, tmp_path / "runs" / "bad")
    _corrupt(bad, what)
    with pytest.warns(UserWarning, match="skipped a run that cannot be read") as caught:
        df = load(tmp_path / "runs")
    assert set(df["run"]) == {str(good)}
    (message,) = [str(w.message) for w in caught]
    assert str(bad) in message and CORRUPTIONS[what] in message and "\n" not in message
    # Alone, it is an error naming it.
    with pytest.raises(LoadError, match=re.escape(CORRUPTIONS[what])):
        load(bad)
    plotted = CliRunner().invoke(
        app, ["plot", str(tmp_path / "runs"), "-o", str(tmp_path / "p.png")]
    )
    assert plotted.exit_code == 0, plotted.output
    assert f"warning: {message}" in plotted.output and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("what", ["config list", "record list", "loss text"])
def test_run_result_load_refuses_what_is_not_a_run(runs_root, tmp_path, what):
    from runs import RunResult

    bad = shutil.copytree(runs_root / "short" / "local_sgd", tmp_path / "bad")
    _corrupt(bad, what)
    with pytest.raises(ValueError, match=re.escape(CORRUPTIONS[what])):
        RunResult.load(bad)


def test_run_result_load_names_an_unreadable_compute_file(runs_root, tmp_path):
    from runs import RunResult

    bad = shutil.copytree(runs_root / "short" / "local_sgd", tmp_path / "bad")
    (bad / "compute.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"compute.csv: cannot read the compute times: 'utf-8'"):
        RunResult.load(bad)
