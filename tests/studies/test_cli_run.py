"""``commsim run`` and ``commsim sweep`` with a user's own strategy (``--import``), and a
mistyped strategy option answered with the closest name."""

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from studies.cli import app

#: A user's module: a strategy of its own, registered under a name an experiment file uses.
MODULE = """
import strategies
from strategies import LocalSGD


@strategies.register
class MyLocalSGD(LocalSGD):
    name = "{name}"
"""

EXPERIMENT = """
[run]
name = "mine"
steps = 4
eval_every = 2

[topology]
kind = "ring"
n = 2

[workload]
name = "quadratic"

[strategy]
name = "{name}"
period = 2
"""


@pytest.fixture()
def user_strategy(tmp_path, monkeypatch, request):
    """A module in the working directory that registers a strategy; gone after the test."""
    from strategies import registry

    name = f"mine_{request.node.name.split('[')[0][-12:]}"
    module = f"user_strategies_{name}"
    (tmp_path / f"{module}.py").write_text(MODULE.format(name=name))
    (tmp_path / "mine.toml").write_text(EXPERIMENT.format(name=name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name, module
    registry._REGISTRY.pop(name, None)
    sys.modules.pop(module, None)


def test_run_imports_the_module_that_registers_the_files_strategy(tmp_path, user_strategy):
    name, module = user_strategy
    args = ["run", "mine.toml", "--out", "out", "--no-progress"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert f"strategy.name: unknown strategy {name!r}" in refused.output
    done = CliRunner().invoke(app, [*args, "--import", module])
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "out" / "run.json").read_text())["config"]
    assert config["strategy"]["name"] == name and config["strategy"]["period"] == 2


def test_sweep_imports_the_module_that_registers_the_files_strategy(tmp_path, user_strategy):
    name, module = user_strategy
    with open("mine.toml", "a") as file:
        file.write("\n[sweep]\nseeds = [0, 1]\n")
    args = ["sweep", "mine.toml", "--out", "out", "--no-progress", "--no-figures"]
    done = CliRunner().invoke(app, [*args, "--import", module], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    index = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [run["status"] for run in index["runs"]] == ["finished", "finished"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_module_that_cannot_be_imported_is_one_line(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_text("[run]\nsteps = 2\n")
    args = [command, "x.toml", "--out", "out", "--import", "no_such_module_here"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert done.output.strip() == (
        "error: --import no_such_module_here: No module named 'no_such_module_here'; give a "
        "module importable from here (the current directory is on the path)"
    )


@pytest.mark.parametrize(
    "where",
    [
        textwrap.dedent("""
        [strategy]
        name = "local_sgd"
        perod = 3
        """),
        "",  # the same typo in --set strategy=...
    ],
)
def test_a_mistyped_strategy_option_suggests_the_parameter(tmp_path, where):
    file = tmp_path / "typo.toml"
    file.write_text("[run]\nsteps = 2\n" + where)
    args = ["run", str(file), "--out", str(tmp_path / "out")]
    if not where:
        args += ["--set", "strategy=local_sgd:perod=3"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "strategy.perod: local_sgd has no argument 'perod'; did you mean 'period'?" in (
        done.output.replace("\n", "")
    )


def test_two_runs_without_out_get_a_directory_each(tmp_path, monkeypatch):
    """Both went to results/<run.name>, the second overwriting the first without a word."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quad.toml").write_text(
        '[run]\nname = "quad"\nsteps = 2\n[workload]\nname = "quadratic"\n'
        '[topology]\nkind = "ring"\nn = 2\n'
    )
    outputs = [
        CliRunner().invoke(app, ["run", "quad.toml", "--no-progress", "--set", f"run.seed={seed}"])
        for seed in (0, 1)
    ]
    for done in outputs:
        assert done.exit_code == 0, done.output
    assert "run written to results/quad\n" in outputs[0].output
    assert "run written to results/quad-2\n" in outputs[1].output
    seeds = [
        json.loads((tmp_path / "results" / name / "run.json").read_text())["config"]["seed"]
        for name in ("quad", "quad-2")
    ]
    assert seeds == [0, 1]


def test_a_real_run_says_it_runs_over_loopback_not_the_topologys_links(tmp_path):
    file = tmp_path / "bw.toml"
    file.write_text(
        '[run]\nname = "bw"\nsteps = 2\n[workload]\nname = "quadratic"\n'
        '[topology]\nkind = "star"\nn = 2\nbandwidth = "100Mbps"\n'
    )
    args = ["run", str(file), "--backend", "real", "--no-progress", "--out", str(tmp_path / "o")]
    done = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert done.exit_code == 0, done.output
    header = done.output.splitlines()[0]
    assert header == (
        "bw: allreduce on 2 local processes over loopback (not the topology's links: those are "
        "simulated only), 2 steps (real)"
    )
    placement = json.loads((tmp_path / "o" / "run.json").read_text())["config"]["placement"]
    assert placement["links"] == "loopback"


TIMED = """
[run]
name = "timed"
steps = 4
eval_every = 2
{extra}

[topology]
kind = "star"
n = 4

[workload]
name = "mlp_digits"

[strategy]
name = "diloco"
period = 2
"""


def test_run_timing_only_flag_writes_a_run_without_losses_with_its_step_time(tmp_path):
    (tmp_path / "timed.toml").write_text(TIMED.format(extra=""))
    args = ["run", str(tmp_path / "timed.toml"), "--no-progress", "--timing-only"]
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "step time (s)" in done.output
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["config"]["timing_only"] is True
    assert record["experiment"]["run"]["timing_only"] is True
    assert "final_loss" not in record["summary"] and record["summary"]["step_time"] > 0


def test_run_timing_only_in_the_file_and_what_it_refuses_in_one_line(tmp_path):
    path = tmp_path / "timed.toml"
    path.write_text(TIMED.format(extra="timing_only = true"))
    done = CliRunner().invoke(
        app, ["run", str(path), "--no-progress", "--out", str(tmp_path / "a")]
    )
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["config"]["timing_only"] is True
    refused = {
        ("--set", "run.target_loss=0.5"): "run.target_loss: target_loss needs losses; "
        "timing_only computes none; drop one",
        ("--set", "compute.base=measure"): "compute.base='measure' times real steps",
        ("--backend", "real"): "only a simulation times a run without computing it",
    }
    for extra, message in refused.items():
        out = CliRunner().invoke(
            app,
            ["run", str(path), "--no-progress", "--out", str(tmp_path / "b"), *extra],
            env={"COLUMNS": "300"},
        )
        assert out.exit_code != 0 and message in out.output, out.output
        assert not (tmp_path / "b").exists()


def test_a_run_refused_at_its_start_leaves_no_empty_default_directory(tmp_path, monkeypatch):
    # A timing-only RL run is refused by sim.run itself, after `commsim run` made its
    # default results/<name> directory: the empty directory goes with the refusal.
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rl.toml"
    path.write_text(
        '[run]\nname = "rl"\nsteps = 2\ntiming_only = true\n[topology]\nkind = "star"\nn = 2\n'
        '[workload]\nname = "cartpole"\n[strategy]\nname = "allreduce"\n'
    )
    out = CliRunner().invoke(app, ["run", str(path), "--no-progress"], env={"COLUMNS": "300"})
    assert out.exit_code == 1
    assert "acts in environments with its policy's actions" in out.output
    assert "(see " not in out.output
    assert not (tmp_path / "results" / "rl").exists()
