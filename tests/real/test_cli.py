"""``commsim real``: local processes from the command line, the sim.run knobs, the run
directory, and a one-line error with the fix for every bad input."""

import json
import socket

import pandas as pd
import pytest
from typer.testing import CliRunner

import sim
import topologies
from studies.cli import app

RUN = ["--workload", "quadratic", "--steps", "4", "--eval-every", "2", "--no-progress"]


def test_local_processes_write_the_run_directory_with_the_simulators_numbers(tmp_path):
    out = tmp_path / "run"
    args = ["real", "--nproc", "2", "--strategy", "local_sgd:period=2"]
    args += ["--optimizer", "sgd:lr=0.05,momentum=0.5", *RUN, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "final loss" in result.output and str(out) in result.output.replace("\n", "")
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["strategy"]["period"] == 2
    assert record["config"]["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": 0.5}
    metrics = pd.read_parquet(out / "metrics.parquet")
    from strategies import LocalSGD

    simulated = sim.run(
        LocalSGD(period=2),
        "quadratic",
        topologies.star(2),
        steps=4,
        eval_every=2,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.5},
    )
    real_losses = list(metrics[metrics["kind"] == "eval"]["loss"])
    assert real_losses == pytest.approx(list(simulated.evals["loss"]), rel=1e-5)


@pytest.fixture()
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "args,env,message",
    [
        (["--nproc", "0"], {}, "--nproc 0: must be at least 1"),
        (["--backend", "nccl"], {}, "backend nccl needs a CUDA GPU per process"),
        (["--backend", "mpi"], {}, "backend 'mpi' is unknown; use one of auto, gloo, nccl"),
        (["--strategy", "local_sgd:period"], {}, "--strategy: bad item 'period'"),
        (["--strategy", "allredce"], {}, "allredce"),
        # A typo in a name or an option is answered with the closest one (issue 22).
        (["--strategy", "local_sg"], {}, "'local_sg' is unknown; did you mean 'local_sgd'?"),
        (
            ["--strategy", "local_sgd:perod=3"],
            {},
            "local_sgd has no argument 'perod'; did you mean 'period'?",
        ),
        (["--workload", "mlp_digit"], {}, "'mlp_digit'; did you mean 'mlp_digits'?"),
        (["--strategy", "local_sgd:period=0"], {}, "period=0"),
        (["--workload", "mnist_huge"], {}, "mnist_huge"),
        (["--optimizer", "sgd:lr=-1"], {}, "lr"),
        (["--import", "no_such_module_here"], {}, "--import no_such_module_here"),
        (["--timeout", "0"], {}, "timeout=0.0 must be a positive"),
        (
            ["--nproc", "2"],
            {"RANK": "0", "WORLD_SIZE": "4"},
            "--nproc 2 but the launcher (torchrun) started 4 ranks",
        ),
        (["--port", "80"], {"RANK": "0", "WORLD_SIZE": "1"}, "--port is for local runs"),
        (["--strategy", "x"], {"RANK": "5", "WORLD_SIZE": "4"}, "rank 5 is outside a world"),
    ],
)
def test_bad_input_is_one_line_naming_the_option_and_the_fix(tmp_path, args, env, message):
    result = CliRunner().invoke(app, ["real", *RUN, *args, "--out", str(tmp_path)], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_a_port_in_use_is_one_line_with_the_fix(tmp_path, busy_port):
    result = CliRunner().invoke(
        app, ["real", "--nproc", "2", "--port", str(busy_port), *RUN, "--out", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert f"port {busy_port} is in use on this host; choose a free one" in result.output
    assert result.output.count("\n") == 1


def test_python_dash_m_real_has_help():
    result = CliRunner().invoke(app, ["real", "--help"])
    assert result.exit_code == 0
    for option in ("--nproc", "--backend", "--strategy", "--portable", "--import"):
        assert option in result.output


def test_two_runs_without_out_get_a_directory_each(tmp_path, monkeypatch):
    """Both went to results/real, the second overwriting the first without a word."""
    monkeypatch.chdir(tmp_path)
    args = ["real", "--nproc", "2", "--strategy", "allreduce", *RUN]
    outputs = [CliRunner().invoke(app, [*args, "--seed", str(seed)]) for seed in (0, 1)]
    for done in outputs:
        assert done.exit_code == 0, done.output
    first, second = tmp_path / "results" / "real", tmp_path / "results" / "real-2"
    assert "run written to results/real\n" in outputs[0].output.replace("\n\n", "\n")
    assert "run written to results/real-2" in outputs[1].output
    seeds = [json.loads((d / "run.json").read_text())["config"]["seed"] for d in (first, second)]
    assert seeds == [0, 1]


def test_bad_input_without_out_leaves_no_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["real", *RUN, "--strategy", "allredce"])
    assert done.exit_code == 2
    assert not (tmp_path / "results").exists()


def test_the_run_records_and_says_where_it_ran(tmp_path):
    """run.json had no placement, and the summary named no network but the topology's."""
    args = ["real", "--nproc", "2", "--strategy", "allreduce", *RUN, "--out", str(tmp_path)]
    done = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert done.exit_code == 0, done.output
    placement = json.loads((tmp_path / "run.json").read_text())["config"]["placement"]
    assert placement == {
        "nodes": 1,
        "processes_per_node": 2,
        "launcher": "local",
        "links": "loopback",
    }
    assert "ran on 1 node x 2 processes (local launcher) over loopback" in done.output


def test_a_launched_run_records_its_launchers_placement():
    from real.placement import Placement, placement_record

    env = {"RANK": "0", "WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "MASTER_ADDR": "n0"}
    placement = Placement.from_env(env)
    assert placement_record(16, placement.local_world_size, placement.launcher) == {
        "nodes": 2,
        "processes_per_node": 8,
        "launcher": "torchrun",
        "links": "the cluster's network",
    }
    testbed = placement_record(3, 1, "testbed")
    assert (testbed["nodes"], testbed["links"]) == (3, "the testbed's emulated links")


def test_faults_from_a_file_kill_a_rank_and_the_quorum_run_goes_on(tmp_path):
    schedule = tmp_path / "faults.json"
    schedule.write_text(json.dumps({"events": [{"kind": "crash", "rank": 2, "step": 2}]}))
    args = ["real", "--nproc", "3", "--strategy", "allreduce:fault_tolerance=quorum", *RUN]
    result = CliRunner().invoke(
        app, [*args, "--faults", str(schedule), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["config"]["faults"]["events"] == [{"kind": "crash", "rank": 2, "step": 2}]
    assert record["summary"]["failures"] == 1 and record["summary"]["steps"] == 4


def test_a_fault_real_cannot_apply_is_one_line(tmp_path):
    schedule = tmp_path / "faults.json"
    schedule.write_text(json.dumps([{"kind": "link_down", "link": ["s0", "h1"], "at": 1}]))
    args = ["real", "--nproc", "2", "--strategy", "allreduce", *RUN, "--faults", str(schedule)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "needs a backend with links" in result.output and result.output.count("\n") == 1
