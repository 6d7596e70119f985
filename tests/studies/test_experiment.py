"""Experiment files: validation errors name the field, overrides, sweeps, and both backends."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
import topologies
import workloads
from strategies import ParameterServer
from studies.experiment import (
    Experiment,
    ExperimentError,
    expand,
    load_experiment,
    run_experiment,
    sim_only_fields,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHORT = ["run.steps=4", "run.eval_every=2"]


def test_every_shipped_strategy_has_an_example_file():
    from strategies import registry

    named = {load_experiment(path).strategy.name for path in EXAMPLES.glob("*.toml")}
    assert set(registry.names()) <= named


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_the_overrides_an_example_suggests_in_its_header_are_valid(path):
    """A user copies these lines first; a stale field name there would be the first error."""
    import shlex

    commands = [
        line.lstrip("# ").strip()
        for line in path.read_text().splitlines()
        if line.startswith("#") and "commsim " in line
    ]
    assert commands, f"{path.name} shows no command to run it"
    for command in commands:
        words = shlex.split(command)
        overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
        load_experiment(path, overrides)


#: Datacenter-sized examples, at a size a test runs in a second or two (timing-only: their
#: clock does not depend on the size's numbers, only the time to simulate it does).
SMALLER = {
    "llama70b_16k_gpus": ["topology.nodes=2"],
    "gpt2xl_1024": ["topology.k=4"],
    # its crashes at learner steps 30, 60 and 80, brought inside the test's 4 steps
    "cartpole_impala_faults": [
        "faults.events[0].step=1",
        "faults.events[0].restart_step=3",
        "faults.events[1].step=2",
    ],
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_each_example_file_runs_a_few_steps(path, tmp_path):
    experiment = load_experiment(path, SHORT + SMALLER.get(path.stem, []))
    points = expand(experiment)[:1]  # a sweep file: its first point
    result = run_experiment(points[0], tmp_path / "run")
    assert result.summary["steps"] == 4
    if points[0].run.timing_only:  # no losses: a step time instead
        assert result.summary["step_time"] > 0
    else:
        # A reinforcement-learning workload evaluates a return instead of a loss.
        metric = "return" if "return" in result.evals else "loss"
        assert np.isfinite(result.evals[metric].iloc[-1])
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["experiment"]["strategy"]["name"] == points[0].strategy.name
    assert record["experiment_key"] == points[0].key()


def test_an_experiment_runs_what_the_same_sim_run_call_runs():
    """The file is a way of writing sim.run's arguments, nothing more: same metrics."""
    experiment = load_experiment(
        {
            "run": {"steps": 12, "eval_every": 4, "seed": 3},
            "topology": "star:n=3,bandwidth=100Mbps,latency=1ms",
            "workload": {"name": "logistic_regression", "batch_size": 16},
            "strategy": {"name": "parameter_server", "mode": "ssp", "staleness": 1},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.5},
            "compute": {"base": 0.003, "straggler": "lognormal", "sigma": 0.4, "slowdown": {1: 2}},
        }
    )
    direct = sim.run(
        ParameterServer(mode="ssp", staleness=1),
        workloads.get("logistic_regression", batch_size=16),
        topologies.star(3, bandwidth="100Mbps", latency="1ms"),
        steps=12,
        eval_every=4,
        seed=3,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.5},
        compute={
            "base": 0.003,
            "straggler": "lognormal",
            "options": {"sigma": 0.4},
            "slowdown": {1: 2.0},
        },
    )
    via_file = run_experiment(experiment)
    pd.testing.assert_frame_equal(via_file.metrics, direct.metrics)


def test_same_experiment_same_bits():
    experiment = load_experiment(EXAMPLES / "local_sgd.toml", SHORT)
    first, second = run_experiment(experiment), run_experiment(experiment)
    pd.testing.assert_frame_equal(first.metrics, second.metrics, check_exact=True)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"run": {"stepz": 3}}, "run.stepz: unknown field; did you mean 'steps'?"),
        ({"run": {"steps": 0}}, "run.steps: input should be greater than or equal to 1, got 0"),
        ({"topolgy": {}}, "topolgy: unknown field; did you mean 'topology'?"),
        (
            {"strategy": {"name": "parameter_server", "mode": "ssp", "staleness": -1}},
            "strategy.staleness: staleness=-1 must be an integer >= 0",
        ),
        (
            {"strategy": {"name": "parameter_server", "stalenes": 1}},
            "strategy.stalenes: parameter_server has no argument 'stalenes'; did you mean "
            "'staleness'?",
        ),
        (
            {"strategy": "paramter_server"},
            "strategy.name: unknown strategy 'paramter_server'; did you mean 'parameter_server'?",
        ),
        (
            {"strategy": {"name": "local_sgd", "period": 2.5}},
            "strategy.period: period=2.5 must be an integer >= 1 or 'adaptive'",
        ),
        (
            {"workload": {"name": "mlp_digits", "batchsize": 3}},
            "workload.batchsize: mlp_digits has no argument 'batchsize'; did you mean 'batch_size'?",
        ),
        ({"topology": "stra:n=4"}, "topology.kind: unknown topology 'stra'; did you mean 'star'?"),
        ({"topology": {"kind": "star"}}, "topology.n: star needs parameter 'n'"),
        (
            {"topology": {"kind": "star", "n": 4, "bandwidth": "1Gbs"}},
            "topology.bandwidth: bandwidth: bad bandwidth '1Gbs'",
        ),
        (
            {"optimizer": {"name": "adam", "lrr": 3}},
            "optimizer.lrr: optimizer 'adam' has no option 'lrr'; did you mean 'lr'?",
        ),
        (
            {"optimizer": {"name": "sgd", "lrr": 0.1}},
            "optimizer.lrr: optimizer 'sgd' has no option 'lrr'; did you mean 'lr'?",
        ),
        (
            {"topology": "star:n=4,bandwith=1Gbps"},
            "topology.bandwith: unknown parameter 'bandwith' for star; did you mean 'bandwidth'?",
        ),
        ({"topology": "star:n"}, "topology: bad item 'n' in 'star:n'; write name:key=value"),
        (
            {"optimizer": {"schedule": "cosin"}},
            "optimizer.schedule: lr_schedule name='cosin' is unknown",
        ),
        (
            {"compute": {"straggler": "lognormal", "sigam": 3}},
            "compute.sigam: options ['sigam'] do not apply to straggler='lognormal' "
            "(it takes ['sigma']); did you mean 'sigma'?",
        ),
        (
            {"compute": {"efficency": 0.5}},
            "compute.efficency: options ['efficency'] do not apply to straggler='constant' "
            "(it takes no options); did you mean 'efficiency'?",
        ),
        (
            {"compute": {"slowdown": {"3": -2}}},
            "compute.slowdown: slowdown={3: -2.0} must be a mapping of ranks to positive",
        ),
        (
            {"network": {"model": "packet"}},
            "network.model: model='packet' is unknown; use one of flow, analytic",
        ),
        (
            {"network": {"unfairness": -1}},
            "network.unfairness: unfairness=-1 must be a finite number >= 0",
        ),
        (
            {"network": {"unfairness": float("inf")}},
            "network.unfairness: unfairness=inf must be a finite number >= 0",
        ),
        (
            {"network": {"routing": "adaptive"}},
            "network.routing: routing='adaptive' is unknown; use one of ecmp, spray, single, dmodk",
        ),
        (
            {"sweep": {"grid": {"strategy.mod": [1]}}},
            "sweep point strategy.mod=1: strategy.mod: allreduce has no argument 'mod'",
        ),
        (
            {"sweep": {"grid": {"stratgy.mode": [1]}}},
            "sweep.grid: 'stratgy.mode' is not a section.field path; did you mean 'strategy'?",
        ),
        (
            {"sweep": {"zip": {"run.seed": [1], "run.steps": [1, 2]}}},
            "sweep.zip: lists must have one length; run.seed has 1, run.steps has 2",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field(data, message):
    with pytest.raises(ExperimentError) as caught:
        load_experiment(data)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_toml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\nsteps = 3\n")
    with pytest.raises(ExperimentError, match=r"bad.toml: not valid TOML"):
        load_experiment(path)
    with pytest.raises(ExperimentError, match=r"no such experiment file"):
        load_experiment(tmp_path / "missing.toml")


def test_overrides_parse_toml_values_and_reach_any_field():
    experiment = load_experiment(
        EXAMPLES / "parameter_server.toml",
        [
            "strategy.mode=ssp",
            "strategy.staleness=2",
            "run.max_time=0.5",
            "compute.sigma=0.1",
            "topology=ring:n=3",
        ],
    )
    assert experiment.strategy.options["mode"] == "ssp"
    assert experiment.strategy.options["staleness"] == 2
    assert experiment.run.max_time == 0.5
    assert experiment.compute.options == {"sigma": 0.1}
    assert experiment.topology.spec() == {"kind": "ring", "n": 3}
    with pytest.raises(ExperimentError, match=r"^--set 'steps=3': write section.field=value"):
        load_experiment({}, ["steps=3"])


def test_a_topology_file_is_found_next_to_the_experiment_file(tmp_path):
    topologies.save(topologies.ring(3), tmp_path / "net.json")
    (tmp_path / "exp.toml").write_text('topology = "net.json"\n[run]\nsteps = 2\n')
    experiment = load_experiment(tmp_path / "exp.toml")
    assert Path(experiment.topology.file) == tmp_path / "net.json"
    assert experiment.graph().number_of_nodes() == 3


def test_a_path_set_on_the_command_line_is_relative_to_where_it_was_typed(tmp_path, monkeypatch):
    (tmp_path / "exps").mkdir()
    (tmp_path / "exps" / "exp.toml").write_text('topology = "star:n=3"\n[run]\nsteps = 2\n')
    topologies.save(topologies.ring(3), tmp_path / "net.json")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "times.csv").write_text("seconds\n0.1\n")
    sets = ["topology=net.json", "compute.straggler=trace", "compute.path=times.csv"]
    experiment = load_experiment("exps/exp.toml", sets)
    assert Path(experiment.topology.file) == tmp_path / "net.json"
    assert experiment.compute.options["path"] == str(tmp_path / "times.csv")


def test_a_sweep_is_the_product_of_grid_zip_and_seeds():
    experiment = load_experiment(
        {
            "run": {"name": "bw"},
            "strategy": {"name": "parameter_server", "mode": "async"},
            "sweep": {
                "grid": {
                    "topology.bandwidth": ["100Mbps", "1Gbps"],
                    "strategy": [{"name": "allreduce"}, {"name": "local_sgd", "period": 4}],
                },
                "zip": {"run.steps": [4, 8], "run.eval_every": [2, 4]},
                "seeds": [0, 1],
            },
        }
    )
    points = expand(experiment)
    assert len(points) == 2 * 2 * 2 * 2
    assert len({p.key() for p in points}) == len(points)
    first = points[0]
    assert first.run.name == (
        "bw topology.bandwidth=100Mbps strategy=allreduce run.steps=4 run.eval_every=2 seed=0"
    )
    assert first.strategy.options == {}  # the base's mode=async does not leak into allreduce
    assert points[-1].strategy.options == {"period": 4}
    assert (points[-1].run.steps, points[-1].run.seed) == (8, 1)
    assert all(p.sweep is None for p in points)


def test_the_key_ignores_the_name_and_follows_everything_else():
    base = load_experiment({"run": {"name": "a"}})
    assert base.key() == load_experiment({"run": {"name": "b"}}).key()
    assert base.key() != load_experiment({"run": {"seed": 1}}).key()
    assert base.key() != load_experiment({}, ["strategy.algorithm=ring"]).key()
    assert base.key() == load_experiment(base.to_dict()).key()


def test_the_key_is_the_network_and_the_resolved_strategy_not_how_they_are_written(tmp_path):
    spec = "star:n=4,bandwidth=1Gbps"
    written = load_experiment({"topology": spec})
    same = ["star:n=4,bandwidth=1000Mbps", "star:n=4,bandwidth=1Gbps,latency=1us"]
    assert {load_experiment({"topology": s}).key() for s in same} == {written.key()}
    topologies.save(topologies.from_spec(spec), tmp_path / "net.json")
    from_file = load_experiment({"topology": {"file": str(tmp_path / "net.json")}})
    assert from_file.key() == written.key()
    # The file's contents count, not its name: a changed network is another run.
    topologies.save(topologies.from_spec("star:n=4,bandwidth=10Gbps"), tmp_path / "net.json")
    assert (
        load_experiment({"topology": {"file": str(tmp_path / "net.json")}}).key() != written.key()
    )
    # A strategy's default, given or not, is one run.
    local = load_experiment({"strategy": {"name": "local_sgd", "period": 4}})
    explicit = load_experiment({"strategy": {"name": "local_sgd", "period": 4, "warmup": 0}})
    assert local.key() == explicit.key()


def test_what_would_fail_at_run_time_fails_at_load_time():
    with pytest.raises(
        ExperimentError, match=r"^workload.hidden: hidden=-3 must be an integer >= 1"
    ):
        load_experiment({"workload": {"name": "mlp_digits", "hidden": -3}})
    with pytest.raises(
        ExperimentError, match=r"^compute.slowdown: rank 5 is not in this topology's ranks 0..3$"
    ):
        load_experiment({"topology": "star:n=4", "compute": {"slowdown": {5: 2.0}}})


def test_real_ignores_what_only_a_simulation_has_and_says_so():
    experiment = load_experiment(EXAMPLES / "allreduce.toml")
    assert sim_only_fields(experiment) == ["compute.base", "compute.sigma", "compute.straggler"]
    assert sim_only_fields(Experiment()) == []


def test_the_same_file_gives_the_same_numbers_on_real(tmp_path):
    """All-reduce SGD from one experiment file: gloo processes and the simulator agree."""
    experiment = load_experiment(
        {
            "run": {"steps": 6, "eval_every": 3},
            "topology": "ring:n=2",
            "workload": "quadratic",
            "strategy": "allreduce",
            "compute": {"straggler": "lognormal"},
        }
    )
    simulated = run_experiment(experiment)
    with pytest.warns(UserWarning, match=r"the real backend ignores compute.straggler"):
        real = run_experiment(experiment, tmp_path / "real", backend="real", timeout=60)
    assert list(real.evals["step"]) == list(simulated.evals["step"]) == [0, 3, 6]
    np.testing.assert_allclose(real.evals["loss"], simulated.evals["loss"], rtol=1e-6)
    record = json.loads((tmp_path / "real" / "run.json").read_text())
    assert (
        record["config"]["backend"] == "real-gloo" and record["experiment_key"] == experiment.key()
    )
    # The network is recorded as the simulation records it, so the runs plot side by side.
    assert record["config"]["topology"] == simulated.config["topology"]


def test_commsim_run_passes_backend_real_through(tmp_path):
    # `--backend` is a plain string option narrowed to the backend's literal for the run.
    from typer.testing import CliRunner

    from studies.cli import app

    out = tmp_path / "run"
    args = ["run", str(EXAMPLES / "allreduce.toml"), "--out", str(out), "--no-progress"]
    args += [f"--set={item}" for item in SHORT] + ["--set=topology.n=2", "--backend", "real"]
    done = CliRunner().invoke(app, args, terminal_width=120)
    assert done.exit_code == 0, done.output
    assert json.loads((out / "run.json").read_text())["config"]["backend"] == "real-gloo"


def test_commsim_run_writes_the_run_and_prints_the_summary(tmp_path):
    from typer.testing import CliRunner

    from studies.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["run", str(EXAMPLES / "allreduce.toml"), "--out", str(out), "--no-progress"]
    args += [f"--set={item}" for item in SHORT]
    done = runner.invoke(app, args, terminal_width=120)
    assert done.exit_code == 0, done.output
    for text in ["final loss", "simulated time (s)", "compute / comm / idle", str(out)]:
        assert text in done.output
    assert json.loads((out / "run.json").read_text())["summary"]["steps"] == 4

    bad = runner.invoke(app, [*args, "--set", "strategy.algoritm=ring"], terminal_width=200)
    assert bad.exit_code == 2
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert lines == [
        f"error: {EXAMPLES / 'allreduce.toml'}: strategy.algoritm: allreduce has no argument "
        "'algoritm'; did you mean 'algorithm'? (valid: algorithm, compression, fault_tolerance, "
        "min_replicas, bucket_mb, first_bucket_mb)"
    ]


#: A value no run can use, as a TOML file writes it, as the sim.run call that takes it, and
#: what both errors say. Each was accepted (lr nan ran to final_loss nan; bandwidth 1e-300 ran
#: for 1e302 simulated seconds; max_time 1e-300 "finished" at 0 steps) or failed deep inside
#: the run without naming the field (lr 1e308: "value cannot be converted ..."; seed 2**64:
#: "Overflow when unpacking long long").
BAD_VALUES = [
    ("optimizer", "lr", "nan", {"optimizer": {"name": "sgd", "lr": float("nan")}}, "lr=nan"),
    ("optimizer", "lr", "inf", {"optimizer": {"name": "sgd", "lr": float("inf")}}, "lr=inf"),
    ("optimizer", "lr", "1e308", {"optimizer": {"name": "sgd", "lr": 1e308}}, "lr=1e+308"),
    (
        "optimizer",
        "momentum",
        "nan",
        {"optimizer": {"name": "sgd", "momentum": float("nan")}},
        "momentum=nan",
    ),
    ("run", "seed", str(2**64), {"seed": 2**64}, "seed"),
    ("compute", "base", "1e300", {"compute": 1e300}, "base=1e+300"),
    ("compute", "server", "1e300", {"compute": {"server": 1e300}}, "server=1e+300"),
    (
        "topology",
        "bandwidth",
        "1e-300",
        {"topology": "ring:n=2,bandwidth=1e-300"},
        "bandwidth=1e-300",
    ),
    (
        "topology",
        "bandwidth",
        "1e300",
        {"topology": "ring:n=2,bandwidth=1e300"},
        "bandwidth=1e+300",
    ),
    ("topology", "latency", "1e9", {"topology": "ring:n=2,latency=1e9"}, "latency=1000000000.0"),
    ("run", "max_time", "1e-300", {"max_time": 1e-300}, "max_time"),
]


@pytest.mark.parametrize(
    "section, field, toml, api, named", BAD_VALUES, ids=[f"{c[1]}={c[2]}" for c in BAD_VALUES]
)
def test_a_value_no_run_can_use_is_refused_naming_its_field(
    section, field, toml, api, named, tmp_path
):
    base = {"workload": "quadratic", "topology": "ring:n=2", "steps": 2}
    call = {**base, **api}
    with pytest.raises(ValueError) as through_api:
        sim.run("allreduce", call.pop("workload"), call.pop("topology"), **call)
    assert named in str(through_api.value) and "\n" not in str(through_api.value)

    tables = {"run": ["steps = 2"], "topology": ['kind = "ring"', "n = 2"]}
    tables.setdefault(section, []).append(f"{field} = {toml}")
    lines = ['workload = "quadratic"']
    for name, body in tables.items():
        lines += [f"[{name}]", *body]
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(lines) + "\n")
    for source, overrides in (
        (path, ()),
        ({"workload": "quadratic", "topology": "ring:n=2"}, [f"{section}.{field}={toml}"]),
    ):
        with pytest.raises(ExperimentError) as through_file:
            load_experiment(source, overrides)
        assert str(through_file.value).startswith(f"{section}.{field}: "), through_file.value
        assert "\n" not in str(through_file.value)


def test_a_nan_anywhere_in_an_experiment_is_refused_naming_it():
    with pytest.raises(ExperimentError, match=r"^strategy.outer_lr: nan is not a value"):
        load_experiment({"strategy": {"name": "diloco", "outer_lr": float("nan")}})
    with pytest.raises(ExperimentError, match=r"^sweep.grid.optimizer.lr\[1\]: nan is not a value"):
        load_experiment({"sweep": {"grid": {"optimizer.lr": [0.1, float("nan")]}}})
    # Infinity stays each field's own business: a gossip lead may be unbounded.
    load_experiment({"strategy": {"name": "gossip", "mode": "async", "max_lead": float("inf")}})


def test_an_empty_experiment_is_refused_naming_what_is_missing(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing here yet\n")
    with pytest.raises(ExperimentError, match=r"empty.toml: the experiment is empty; .* strategy"):
        load_experiment(path)
    with pytest.raises(ExperimentError, match=r"^the experiment is empty"):
        load_experiment({})
    # What --set says is enough to run.
    assert load_experiment(path, ["strategy.name=local_sgd"]).strategy.name == "local_sgd"


@pytest.mark.parametrize("source, kind", [(None, "NoneType"), (123, "int"), ([1], "list")])
def test_an_experiment_of_the_wrong_type_is_one_line(source, kind):
    with pytest.raises(ExperimentError, match=rf"a dict of sections or an Experiment, not {kind}$"):
        load_experiment(source)


def test_the_seed_bound_is_the_one_runs_use():
    from strategies.roles import MAX_SEED
    from studies.experiment import schema

    assert schema.MAX_SEED == MAX_SEED


def test_a_section_may_be_a_spec_as_the_command_line_writes_it():
    exp = load_experiment(
        {"strategy": "local_sgd:period=8", "optimizer": "sgd:lr=0.5", "workload": "quadratic"},
        ["workload=mlp_digits:hidden=16"],
    )
    assert exp.strategy.options == {"period": 8} and exp.optimizer.options == {"lr": 0.5}
    assert (exp.workload.name, exp.workload.options) == ("mlp_digits", {"hidden": 16})
    with pytest.raises(ExperimentError, match=r"^strategy.period: period=0 must be"):
        load_experiment({"strategy": "local_sgd:period=0"})


def test_commsim_run_of_an_empty_file_or_a_nan_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from studies.cli import app

    path = tmp_path / "empty.toml"
    path.write_text("")
    runner = CliRunner()
    for extra, message in (
        ([], f"error: {path}: the experiment is empty; say what to run"),
        (["--set", "optimizer.lr=nan"], f"error: {path}: optimizer.lr: nan is not a value"),
    ):
        done = runner.invoke(app, ["run", str(path), *extra], terminal_width=400)
        assert done.exit_code == 2
        lines = [line for line in done.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(message), lines


def test_an_option_checked_only_at_run_time_is_named_by_its_field():
    """The error carries its option (OptionError.field): the path is exact, not read from
    the message (a regex once matched any word followed by '=')."""
    exp = load_experiment(
        {
            "strategy": {"name": "gossip", "mode": "async"},
            "topology": "ring:n=3",
            "workload": "quadratic",
            "run": {"steps": 2},
        }
    )
    with pytest.raises(
        ExperimentError, match=r"^strategy.graph: mode='async' needs a bipartite graph"
    ):
        run_experiment(exp)


def test_the_network_section_names_the_declared_network_options_with_their_defaults():
    from options.declare import option_fields
    from sim.network_options import network_options
    from studies.experiment.schema import NetworkSection

    declared = {
        name: info.get_default(call_default_factory=True)
        for name, info in option_fields(network_options).items()
    }
    section = NetworkSection().model_dump()
    assert section == declared


def test_network_options_written_two_ways_are_one_run_and_a_misspelt_one_is_named():
    base = {"topology": "star:n=4,bandwidth=1Gbps"}
    a = load_experiment({**base, "network": {"efficiency": 1, "collectives": "gloo"}})
    b = load_experiment({**base, "network": {"efficiency": 1.0, "collectives": {"rule": "gloo"}}})
    assert a.key() == b.key() != load_experiment(base).key()
    assert a.network.collectives == {"rule": "gloo"} and a.network.efficiency == 1.0
    with pytest.raises(ExperimentError, match="network.routng.*did you mean 'routing'"):
        load_experiment({**base, "network": {"routng": "spray"}})


def test_a_timing_only_experiment_runs_timing_only_and_keeps_the_keys_of_full_ones():
    plain = {"workload": "quadratic", "run": {"steps": 4}, "topology": "ring:n=2"}
    timed = {**plain, "run": {"steps": 4, "timing_only": True}}
    assert (
        load_experiment(plain).key()
        == load_experiment({**plain, "run": {"steps": 4, "timing_only": False}}).key()
    )
    assert load_experiment(timed).key() != load_experiment(plain).key()
    result = run_experiment(load_experiment(timed))
    assert result.config["timing_only"] is True and "eval" not in set(result.metrics["kind"])
    with pytest.raises(ExperimentError, match=r"^strategy: period='adaptive' sets its period"):
        load_experiment({**timed, "strategy": {"name": "local_sgd", "period": "adaptive"}})
    with pytest.raises(ExperimentError, match=r"^compute.server='measure' times real steps"):
        load_experiment({**timed, "compute": {"server": "measure"}})
