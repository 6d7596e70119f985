"""Sweeps: one run directory per key, an index, resume after a kill, failures recorded,
the same metrics from every executor, and one-line errors."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from studies.cli.sweep import sweep_command
from studies.executors import ExecutorError, LocalExecutor, make_executor
from studies.experiment import ExperimentError, load_experiment
from studies.sweep import INDEX_FILE, load_sweep, plan, run_sweep

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: Four small runs: two strategies (one with an argument) x two seeds.
SWEEP = {
    "run": {"name": "lr", "steps": 6, "eval_every": 3},
    "workload": {"name": "logistic_regression", "batch_size": 16},
    "topology": "star:n=3,bandwidth=100Mbps",
    "compute": {"straggler": "lognormal", "sigma": 0.3},
    "sweep": {
        "grid": {"strategy": [{"name": "allreduce"}, {"name": "local_sgd", "period": 2}]},
        "seeds": [0, 1],
    },
}
#: A run that fails once running (a server leaves no worker) beside one that finishes.
FAILING = {
    "run": {"name": "ps", "steps": 3, "eval_every": 3},
    "workload": "quadratic",
    "topology": "ring:n=2",
    "sweep": {
        "grid": {"strategy": [{"name": "allreduce"}, {"name": "parameter_server", "servers": 2}]}
    },
}


def toml(data, path):
    """Write a (two-level) experiment dict as TOML."""
    lines = []
    for section, fields in data.items():
        if isinstance(fields, str):
            lines.insert(0, f"{section} = {json.dumps(fields)}")
            continue
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _value(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)


def cli(args, **kwargs):
    app = typer.Typer()
    app.command()(sweep_command)
    env = {"COLUMNS": "200"}  # rich's width: one table row a line
    return CliRunner().invoke(app, [str(a) for a in args], env=env, **kwargs)


def one_line(output):
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def record(run_dir):
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def pool():
    """Two spawned worker processes, started once for the module."""
    with LocalExecutor(2) as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_address():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield "dask://" + cluster.scheduler_address.removeprefix("tcp://")


# --------------------------------------------------------------------------------------------
# Layout and index


def test_a_sweep_writes_a_run_directory_per_key_and_an_index(tmp_path):
    result = run_sweep(SWEEP, tmp_path)
    points = plan(load_experiment(SWEEP), tmp_path)
    assert result.ok and len(result.runs) == 4
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(p.key for p in points)
    for run in result.runs:
        assert run.directory == tmp_path / "runs" / run.key
        assert record(run.directory)["status"] == "finished"
        assert record(run.directory)["experiment_key"] == run.key
        assert (run.directory / "metrics.parquet").is_file()

    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index["counts"] == {
        "pending": 0,
        "running": 0,
        "finished": 4,
        "failed": 0,
        "interrupted": 0,
    }
    first = index["runs"][0]
    assert first["name"] == "lr strategy=allreduce seed=0"
    assert first["values"] == {"strategy": {"name": "allreduce"}, "run.seed": 0}
    assert first["status"] == "finished" and first["error"] is None
    assert first["dir"] == f"runs/{first['key']}"
    assert first["summary"]["steps"] == 6

    table = result.table()
    assert list(table["strategy"]) == ["allreduce"] * 2 + ["local_sgd(period=2)"] * 2
    assert list(table["run.seed"]) == [0, 1, 0, 1]
    assert table.groupby("strategy")["final_loss"].mean().notna().all()
    loaded = result.load()
    assert set(loaded["name"]) == {run.name for run in result.runs}
    assert load_sweep(tmp_path).runs == result.runs


def test_two_points_that_are_one_run_are_an_error(tmp_path):
    with pytest.raises(ExperimentError, match=r"sweep: points .* are the same run .*remove"):
        run_sweep({"sweep": {"seeds": [0, 0]}}, tmp_path)


# --------------------------------------------------------------------------------------------
# Failures and resuming


def test_a_failed_run_is_recorded_the_sweep_goes_on_and_a_rerun_retries_it(tmp_path):
    file = toml(FAILING, tmp_path / "ps.toml")
    out = tmp_path / "out"
    done = cli([file, "--out", out, "--no-progress"])
    assert done.exit_code == 1, done.output
    assert "1 of 2 runs failed" in done.output
    result = load_sweep(out)
    ok, bad = result.runs
    assert ok.status == "finished" and bad.status == "failed"
    # The field is named, as it is when a file's value is refused at load time.
    named = "strategy.servers: servers=2 leaves no worker among 2 ranks"
    assert bad.error == f"ExperimentError: {named}; use servers < world size"
    assert record(bad.directory)["status"] == "failed"
    assert named in record(bad.directory)["error"]
    assert record(bad.directory)["experiment_key"] == bad.key

    # Run again: the failed run runs again, the finished one is kept as it is.
    stamps = {run.key: (run.directory / "run.json").stat().st_mtime_ns for run in result.runs}
    time.sleep(0.01)
    again = cli([file, "--out", out, "--no-progress"])
    assert again.exit_code == 1
    mtimes = {run.key: (run.directory / "run.json").stat().st_mtime_ns for run in result.runs}
    assert mtimes[ok.key] == stamps[ok.key]
    assert mtimes[bad.key] != stamps[bad.key]
    assert [run.reused for run in load_sweep(out).runs] == [True, False]


def test_a_killed_sweep_resumes_without_rerunning_finished_runs(tmp_path):
    experiment = {
        "run": {"name": "kill", "steps": 300, "eval_every": 100},
        "workload": "logistic_regression",
        "topology": "star:n=4,bandwidth=10Gbps",
        "sweep": {"grid": {"optimizer.lr": [0.01, 0.02, 0.03, 0.04]}, "seeds": [0, 1]},
    }
    file = toml(experiment, tmp_path / "kill.toml")
    out = tmp_path / "out"
    keys = [run.key for run in plan(load_experiment(file), out)]
    code = (
        "import typer; from studies.cli.sweep import sweep_command; "
        "app = typer.Typer(); app.command()(sweep_command); app()"
    )
    log = (tmp_path / "log.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", code, file, "--out", out, "--no-progress"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed whole
    )

    def finished():
        found = []
        for key in keys:
            try:
                if record(out / "runs" / key)["status"] == "finished":
                    found.append(key)
            except (OSError, ValueError):
                pass
        return found

    deadline = time.monotonic() + 60
    while len(finished()) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    before = finished()
    assert 2 <= len(before) < len(keys), (tmp_path / "log.txt").read_text()
    stamps = {
        key: (
            record(out / "runs" / key)["written"],
            (out / "runs" / key / "run.json").stat().st_mtime_ns,
            (out / "runs" / key / "metrics.parquet").stat().st_mtime_ns,
        )
        for key in before
    }

    done = cli([file, "--out", out, "--no-progress"])
    assert done.exit_code == 0, done.output
    assert f"({len(before)} kept from before)" in done.output
    result = load_sweep(out)
    assert [run.key for run in result.runs] == keys
    assert all(run.status == "finished" for run in result.runs)
    assert {run.key for run in result.runs if run.reused} == set(before)
    for key, stamp in stamps.items():
        assert stamp == (
            record(out / "runs" / key)["written"],
            (out / "runs" / key / "run.json").stat().st_mtime_ns,
            (out / "runs" / key / "metrics.parquet").stat().st_mtime_ns,
        )


# --------------------------------------------------------------------------------------------
# Executors


def test_metrics_are_bit_identical_whichever_executor_runs_them(tmp_path, pool, dask_address):
    serial = run_sweep(SWEEP, tmp_path / "serial")
    parallel = run_sweep(SWEEP, tmp_path / "pool", executor=pool)
    dask = run_sweep(SWEEP, tmp_path / "dask", executor=dask_address)
    for result in (serial, parallel, dask):
        assert result.ok, [run.error for run in result.runs]
    for run, *others in zip(serial.runs, parallel.runs, dask.runs):
        expected = pd.read_parquet(run.directory / "metrics.parquet")
        assert len(expected) > 0
        for other in others:
            assert other.key == run.key and not other.reused
            pd.testing.assert_frame_equal(
                pd.read_parquet(other.directory / "metrics.parquet"), expected, check_exact=True
            )


def test_a_failure_in_a_worker_process_is_recorded_too(tmp_path, pool):
    result = run_sweep(FAILING, tmp_path, executor=pool)
    assert [run.status for run in result.runs] == ["finished", "failed"]
    assert "servers=2 leaves no worker" in record(result.runs[1].directory)["error"]


def test_jobs_choose_this_process_or_worker_processes():
    assert type(make_executor("local")).__name__ == "InProcessExecutor"
    with make_executor("local", jobs=3) as executor:  # no process starts before a submit
        assert isinstance(executor, LocalExecutor) and executor.slots == 3


def test_dask_without_distributed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ExecutorError, match=r"pip install 'commsim\[dask\]'"):
        make_executor("dask://127.0.0.1:8786")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--jobs", "0"], "error: jobs=0: give the number of runs to make at once, 1 or more"),
        (
            ["--executor", "threads"],
            "error: executor 'threads': use 'local' or 'dask://HOST:PORT' "
            "(e.g. dask://127.0.0.1:8786)",
        ),
        (
            ["--executor", "dask://nohost"],
            "error: executor 'dask://nohost': give the scheduler's address as dask://HOST:PORT "
            "(e.g. dask://127.0.0.1:8786)",
        ),
        (
            ["--set", "run.stps=3"],
            "error: {file}: run.stps: unknown field; did you mean 'steps'? "
            "(valid: name, seed, steps, eval_every, max_time, target_loss, target_return, "
            "accumulate, timing_only)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    file = toml(FAILING, tmp_path / "ps.toml")
    done = cli([file, "--out", tmp_path / "out", *args])
    assert done.exit_code == 2
    assert one_line(done.output) == message.format(file=file)
    assert not (tmp_path / "out").exists()  # nothing written before the input is checked


def test_an_unreachable_dask_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    import dask

    file = toml(FAILING, tmp_path / "ps.toml")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        done = cli([file, "--out", tmp_path / "out", "--executor", "dask://127.0.0.1:9"])
    assert done.exit_code == 2
    line = one_line(done.output)
    assert line.startswith("error: executor 'dask://127.0.0.1:9': no Dask scheduler answered at")
    assert line.endswith("start one (`dask scheduler`) or check HOST:PORT")


def test_dask_without_distributed_is_one_line_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    file = toml(FAILING, tmp_path / "ps.toml")
    done = cli([file, "--out", tmp_path / "out", "--executor", "dask://127.0.0.1:8786"])
    assert done.exit_code == 2
    assert one_line(done.output) == (
        "error: executor 'dask://127.0.0.1:8786': Dask is not installed; "
        "pip install 'commsim[dask]'"
    )


# --------------------------------------------------------------------------------------------
# What a person sees


def test_the_progress_bar_counts_runs_done_running_and_failed(tmp_path):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150, color_system=None)
    run_sweep(FAILING, tmp_path, progress=True, console=console)
    text = screen.getvalue()
    assert "2/2" in text and "0 running, 1 failed" in text
    assert "1 running, 0 failed" in text  # the first run, while it ran
    assert (
        "failed ps strategy=parameter_server(servers=2): ExperimentError: strategy.servers: "
        "servers=2" in text
    )


def test_the_command_ends_with_a_table_of_runs_and_the_figures(tmp_path):
    file = toml(SWEEP, tmp_path / "lr.toml")
    out = tmp_path / "out"
    done = cli([file, "--out", out, "--no-progress", "--set", "run.target_loss=0.69"])
    assert done.exit_code == 0, done.output
    for text in ["strategy", "seed", "loss", "to target (s)", "local_sgd(period=2)"]:
        assert text in done.output
    rows = [line.split() for line in done.output.splitlines() if "finished" in line]
    assert [row[:2] for row in rows] == [
        ["allreduce", "0"],
        ["allreduce", "1"],
        ["local_sgd(period=2)", "0"],
        ["local_sgd(period=2)", "1"],
    ]
    assert f"4 runs in {out / 'runs'}, indexed in {out / INDEX_FILE}" in done.output
    # The strategy is a line, the seed an error bar: no time-to-target axis is left to draw.
    written = sorted(path.name for path in (out / "figures").iterdir())
    assert written == ["breakdown.png", "loss-vs-bytes.png", "loss-vs-time.png", "pareto.png"]
    assert "figures in" in done.output and "loss-vs-time.png" in done.output
    again = cli([file, "--out", out, "--no-progress", "--no-figures"])
    assert again.exit_code == 0 and "figures in" not in again.output


def test_the_bandwidth_example_is_a_sweep_of_eighteen_runs():
    experiment = load_experiment(EXAMPLES / "sweep_bandwidth.toml")
    runs = plan(experiment, "unused")
    assert len(runs) == 18
    assert {run.values["topology.bandwidth"] for run in runs} == {"100Mbps", "1Gbps", "10Gbps"}
    assert experiment.run.target_loss is not None


def test_a_missing_file_is_named_once(tmp_path):
    missing = tmp_path / "nowhere.toml"
    done = cli([missing, "--out", tmp_path / "out"])
    assert done.exit_code == 2
    assert one_line(done.output) == f"error: {missing}: no such experiment file; give a .toml file"


@pytest.mark.parametrize(
    ("main_file", "hinted"),
    [
        ("/home/me/my_study.py", True),  # python my_study.py: its top level runs in each worker
        ("/venv/bin/commsim", False),  # the console script: guarded
        ("/venv/lib/pytest/__main__.py", False),  # python -m ...: guarded
        (None, False),  # a notebook or an interpreter
    ],
)
def test_a_lost_worker_of_a_script_says_how_to_guard_it(monkeypatch, main_file, hinted):
    """Spawned workers import the main script: a run_sweep(jobs=2) at its top level runs again
    in each and kills it. The lost runs' error says so, instead of a bare BrokenProcessPool."""
    import types
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from studies.sweep import SweepRun, _outcome

    main = types.ModuleType("__main__")
    if main_file is not None:
        main.__file__ = main_file
    monkeypatch.setitem(sys.modules, "__main__", main)
    lost: Future = Future()
    lost.set_exception(BrokenProcessPool("A process in the process pool was terminated"))
    run = SweepRun(key="k", name="n", values={}, directory=Path("unused"))
    _outcome(run, lost)
    assert run.status == "failed"
    assert run.error.startswith("RuntimeError: the worker running it was lost (BrokenProcessPool")
    guard = 'put that under `if __name__ == "__main__":` (or use jobs=1)'
    assert (
        f"importing my_study.py: if it calls run_sweep at its top level, {guard}" in run.error
    ) is hinted
    assert (guard in run.error) is hinted


@pytest.mark.parametrize(
    "index, reason",
    [("[1, 2]", "list indices must be integers"), ("{}", "no 'runs'"), ("{not", "Expecting")],
)
def test_an_index_that_is_not_a_sweeps_is_one_line(tmp_path, index, reason):
    (tmp_path / INDEX_FILE).write_text(index)
    with pytest.raises(ValueError, match=r"sweep.json is not a sweep's index \(") as caught:
        load_sweep(tmp_path)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------------------------
# Found by a newcomer study (issue 22)

#: A script as the README writes it: run_sweep(jobs=2) at its top level, no __main__ guard,
#: and a strategy of its own, registered in the script.
PLAIN_SCRIPT = """
import json, sys
import strategies, studies
from strategies import AllReduceSGD

@strategies.register
class ScriptAllReduce(AllReduceSGD):
    name = "script_allreduce"

sweep = studies.run_sweep(
    {"run": {"name": "plain", "steps": 4, "eval_every": 2}, "workload": "quadratic",
     "topology": "ring:n=2", "strategy": "script_allreduce", "sweep": {"seeds": [0, 1]}},
    sys.argv[1],
    jobs=2,
)
print(json.dumps([[run.status, run.error] for run in sweep.runs]))
"""


def test_a_sweep_with_jobs_runs_from_a_script_without_a_main_guard(tmp_path):
    """Spawned workers import the script again, run its run_sweep again and die: every run
    failed. Forked workers import nothing, and know the script's own strategy."""
    script = tmp_path / "my_study.py"
    script.write_text(PLAIN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [["finished", None], ["finished", None]]
    for run in load_sweep(tmp_path / "out").runs:
        assert record(run.directory)["config"]["strategy"]["name"] == "script_allreduce"


#: Every point fails once running: a server leaves no worker on two ranks.
ALL_FAILING = {
    "run": {"name": "ps", "steps": 3, "eval_every": 3},
    "workload": "quadratic",
    "topology": "ring:n=2",
    "strategy": {"name": "parameter_server", "servers": 2},
    "sweep": {"seeds": [0, 1]},
}


def test_a_sweep_whose_runs_all_failed_raises_with_the_first_failure(tmp_path):
    from studies.sweep import SweepError

    with pytest.raises(SweepError) as raised:
        run_sweep(ALL_FAILING, tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("all 2 runs of sweep 'ps' failed; the first, 'ps seed=0': ")
    assert "ExperimentError: strategy.servers: servers=2 leaves no worker" in message
    # Still recorded as a sweep with failures is.
    assert [run.status for run in load_sweep(tmp_path).runs] == ["failed", "failed"]
    assert [run.status for run in raised.value.result.runs] == ["failed", "failed"]
    # One run finished (now or before): the others' failures do not raise.
    mixed = run_sweep(FAILING, tmp_path / "mixed")
    assert [run.status for run in mixed.runs] == ["finished", "failed"]


def test_the_command_says_in_one_line_that_every_run_failed(tmp_path):
    file = toml(ALL_FAILING, tmp_path / "ps.toml")
    done = cli([file, "--out", tmp_path / "out", "--no-progress"])
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert "error: all 2 runs of sweep 'ps' failed; the first, 'ps seed=0': " in done.output


def test_an_interrupted_run_is_interrupted_in_run_json_and_sweep_json_and_resumes(
    tmp_path, monkeypatch
):
    """Ctrl-C in the second run: its run.json said "interrupted" (RunWriter) while sweep.json
    said "pending". Both say "interrupted" now, and the sweep run again finishes it."""
    from runs.writer import RunWriter

    flush = RunWriter.flush
    calls = {"runs": 0}
    started = RunWriter.__init__

    def init(self, *args, **kwargs):
        calls["runs"] += 1
        started(self, *args, **kwargs)

    def interrupting(self, rows, force=False):
        if calls["runs"] == 2:
            raise KeyboardInterrupt
        flush(self, rows, force)

    monkeypatch.setattr(RunWriter, "__init__", init)
    monkeypatch.setattr(RunWriter, "flush", interrupting)
    experiment = {**SWEEP, "sweep": {"seeds": [0, 1, 2]}}
    with pytest.raises(KeyboardInterrupt):
        run_sweep(experiment, tmp_path)
    index = load_sweep(tmp_path)
    assert [run.status for run in index.runs] == ["finished", "interrupted", "pending"]
    second = index.runs[1]
    assert record(second.directory)["status"] == "interrupted"
    assert second.error == record(second.directory)["error"]
    counts = json.loads((tmp_path / INDEX_FILE).read_text())["counts"]
    assert counts["interrupted"] == 1 and counts["pending"] == 1

    monkeypatch.setattr(RunWriter, "flush", flush)
    again = run_sweep(experiment, tmp_path)
    assert [run.status for run in again.runs] == ["finished"] * 3
    assert [run.reused for run in again.runs] == [True, False, False]


def test_a_stopped_worker_leaves_its_run_interrupted_in_both_records(tmp_path):
    """A worker stopped by the sweep's interrupt cannot write: its run.json, left "running",
    is made to say "interrupted", as sweep.json does."""
    from studies.executors import mark_interrupted
    from studies.sweep import SweepRun, _stopped

    experiment = load_experiment({key: value for key, value in SWEEP.items() if key != "sweep"})
    directory = tmp_path / "runs" / "k"
    from runs import RunWriter

    RunWriter(directory, config={"backend": "sim"})  # what a worker stopped mid-run leaves
    run = SweepRun("k", "n", {}, directory, status="running", experiment=experiment)
    _stopped(run, KeyboardInterrupt())
    assert run.status == "interrupted" == record(directory)["status"]
    assert run.error == record(directory)["error"] == "KeyboardInterrupt: the sweep was interrupted"
    assert record(directory)["config"] == {"backend": "sim"}
    # One that ended as the interrupt came keeps how it ended; one that wrote nothing gets one.
    assert (
        mark_interrupted(directory, experiment, "KeyboardInterrupt: x")["status"] == "interrupted"
    )
    nothing = tmp_path / "runs" / "none"
    assert mark_interrupted(nothing, experiment, "KeyboardInterrupt: x")["status"] == "interrupted"
    assert record(nothing)["experiment_key"] == experiment.key()


def test_ctrl_c_while_the_figures_are_drawn_is_said_in_one_line(tmp_path, monkeypatch):
    import studies.cli.sweep as command

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_draw_figures", interrupted)
    file = toml({**FAILING, "sweep": {"seeds": [0]}}, tmp_path / "one.toml")
    done = cli([file, "--out", tmp_path / "out", "--no-progress"])
    assert done.exit_code == 130, done.output
    said = [line for line in done.output.splitlines() if "interrupted" in line]
    assert said == [
        f"interrupted while drawing the figures: every run is kept in {tmp_path / 'out'}; run "
        "the same command again to draw them"
    ]


def test_spawned_workers_of_an_unguarded_script_end_in_one_error_naming_the_guard(tmp_path):
    """Where workers are spawned (macOS, Windows, a process that has used CUDA), such a
    script cannot work: the sweep raises once, naming the first run and the guard."""
    script = tmp_path / "spawned_study.py"
    script.write_text(
        "import studies\n"
        "from studies.executors import LocalExecutor\n"
        "studies.run_sweep({'run': {'name': 's', 'steps': 2}, 'workload': 'quadratic',\n"
        "    'topology': 'ring:n=2', 'sweep': {'seeds': [0, 1]}}, 'out',\n"
        "    executor=LocalExecutor(2, method='spawn'))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 1
    # The traceback's last line; the spawned pool's resource tracker may warn after it, at
    # the interpreter's exit (leaked semaphores of the workers it stopped).
    errors = [ln for ln in done.stderr.strip().splitlines() if ln.startswith("studies.sweep.")]
    assert errors, done.stderr
    last = errors[-1]
    assert last.startswith("studies.sweep.SweepError: all 2 runs of sweep 's' failed; the first")
    assert (
        'if it calls run_sweep at its top level, put that under `if __name__ == "__main__":`'
        in last
    )


def test_ctrl_c_of_a_sweep_with_worker_processes_leaves_both_records_interrupted(tmp_path):
    """The stopped workers' runs said "running" in run.json and "pending" in sweep.json (a
    rerun resumes them: see the in-process test above)."""
    experiment = {
        "run": {"name": "intr", "steps": 2000, "eval_every": 1000},
        "workload": "logistic_regression",
        "topology": "star:n=4,bandwidth=10Gbps",
        "sweep": {"seeds": [0, 1, 2, 3]},
    }
    file = toml(experiment, tmp_path / "intr.toml")
    out = tmp_path / "out"
    code = (
        "import typer; from studies.cli.sweep import sweep_command; "
        "app = typer.Typer(); app.command()(sweep_command); app()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, file, "--out", out, "--jobs", "2", "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A background shell ignores SIGINT in what it starts: give the sweep Ctrl-C back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def statuses():
        found = []
        for path in out.glob("runs/*/run.json"):
            try:
                found.append(json.loads(path.read_text())["status"])
            except (OSError, ValueError):
                pass
        return found

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        now = statuses()
        if "finished" in now and "running" in now:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    index = load_sweep(out)
    stopped = [run for run in index.runs if run.status == "interrupted"]
    assert stopped, [run.status for run in index.runs]
    for run in index.runs:
        if (run.directory / "run.json").is_file():
            assert record(run.directory)["status"] == run.status
        else:
            assert run.status == "pending"
