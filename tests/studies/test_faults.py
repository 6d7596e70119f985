"""Faults on the studies side: ``commsim run --faults``, an experiment's ``[faults]`` section and
sweeps over it, the ``faults`` plot kind, fault markers on loss curves, fault rows loaded."""

import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

import sim
import sim.network
import topologies
import workloads
from faults import FaultSchedule
from strategies import registry
from studies.experiment import ExperimentError, expand, load_experiment, run_experiment
from studies.load import load
from studies.plot import KINDS, loss_vs_time
from studies.plot import faults as faults_plot

matplotlib.use("Agg")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CRASH = {"kind": "crash", "rank": 2, "step": 3, "restart_step": 6}


def _quorum():
    return registry.get("allreduce", fault_tolerance="quorum")


def _experiment(**faults):
    return {
        "workload": "quadratic",
        "topology": "star:n=4",
        "strategy": {"name": "allreduce", "fault_tolerance": "quorum"},
        "run": {"steps": 12, "eval_every": 4},
        "faults": {"events": [dict(CRASH)], **faults},
    }


def _cli(*args):
    from typer.testing import CliRunner

    from studies.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def _lines(output):
    return [line for line in output.splitlines() if line.strip()]


# -- commsim run --faults ------------------------------------------------------------------------


def test_commsim_run_takes_a_fault_file_and_records_it(tmp_path):
    out = tmp_path / "run"
    done = _cli(
        "run",
        EXAMPLES / "allreduce.toml",
        "--faults",
        EXAMPLES / "fault_files" / "crash_restart.toml",
        "--out",
        out,
        "--no-progress",
        "--set=workload.name=quadratic",
        "--set=strategy.fault_tolerance=quorum",
        "--set=run.steps=70",
        "--set=run.eval_every=10",
    )
    assert done.exit_code == 0, done.output
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished"
    table = " ".join(done.output.split())
    for label, key in (("failures", "failures"), ("lost steps", "lost_steps")):
        assert f"│ {label} │ {record['summary'][key]:,} │" in table, done.output
    assert "goodput (committed samples/s)" in table
    # As the file says it (crash_restart.toml), in seconds: what the backend ran.
    assert record["config"]["faults"]["events"] == [
        {"kind": "crash", "rank": 2, "step": 40, "restart_step": 60}
    ]
    assert record["config"]["faults"]["detect"] == 1.0
    assert (record["summary"]["failures"], record["summary"]["restarts"]) == (1, 1)


def test_a_fault_file_a_strategy_does_not_survive_ends_the_run_in_one_line(tmp_path):
    out = tmp_path / "run"
    done = _cli(
        "run",
        EXAMPLES / "allreduce.toml",
        "--faults",
        EXAMPLES / "fault_files" / "crash_restart.toml",
        "--out",
        out,
        "--no-progress",
        "--set=workload.name=quadratic",
        "--set=run.steps=70",
    )
    assert done.exit_code == 1
    text = " ".join(done.output.split())  # rich wraps the line at the terminal's width
    assert text.count("error:") == 1, done.output
    assert "rank 2 crashed" in text and "fault_tolerance='quorum' survives it" in text
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_a_bad_fault_file_is_one_line_naming_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[events]]\nkind = "crash"\nrank = 7\nat = "1s"\n')
    done = _cli("run", EXAMPLES / "allreduce.toml", "--faults", bad, "--out", tmp_path / "run")
    assert done.exit_code == 2
    assert _lines(done.output) == [
        f"error: --faults {bad}: faults.events[0].rank: rank 7 is not in the run's ranks 0..3"
    ]
    assert not (tmp_path / "run").exists()
    missing = _cli("run", EXAMPLES / "allreduce.toml", "--faults", tmp_path / "none.toml")
    assert missing.exit_code == 2 and len(_lines(missing.output)) == 1
    assert "no such file" in missing.output


def test_real_runs_refuse_faults_they_cannot_apply_in_one_line(tmp_path):
    # A local real run has no links to fail (a testbed has: commsim real --testbed).
    link = tmp_path / "link.toml"
    link.write_text('[[events]]\nkind = "link_down"\nlink = ["s0", "1"]\nat = "1s"\nuntil = "2s"\n')
    done = _cli(
        "run",
        EXAMPLES / "allreduce.toml",
        "--faults",
        link,
        "--backend",
        "real",
        "--out",
        tmp_path / "run",
    )
    assert done.exit_code == 2
    (line,) = _lines(done.output)
    assert line.startswith("error: faults.events[0]"), line
    assert "link" in line
    assert not (tmp_path / "run").exists()  # refused before anything started
    data = _experiment()
    data["faults"]["recovery"] = "restart"
    data["faults"]["checkpoint_every"] = 5
    data["strategy"] = {"name": "parameter_server", "mode": "async"}  # steps that never line up
    with pytest.raises(ExperimentError, match="faults.recovery: 'restart' on the real backend"):
        run_experiment(load_experiment(data), backend="real")


# -- the [faults] section ------------------------------------------------------------------------


def test_an_experiment_runs_its_faults_as_sim_run_does():
    via_file = run_experiment(load_experiment(_experiment(detect="0.5s")))
    direct = sim.run(
        _quorum(),
        "quadratic",
        "star:n=4",
        steps=12,
        eval_every=4,
        faults={"events": [CRASH], "detect": 0.5},
    )
    pd.testing.assert_frame_equal(via_file.metrics, direct.metrics)
    assert via_file.config["faults"] == direct.config["faults"]
    assert via_file.summary["failures"] == 1


def test_an_experiments_key_counts_its_faults_as_the_run_records_them():
    written = load_experiment(_experiment(detect="500ms"))
    assert written.key() == load_experiment(_experiment(detect=0.5)).key()
    assert written.key() != load_experiment(_experiment(detect="1s")).key()
    data = _experiment()
    data.pop("faults")
    assert written.key() != load_experiment(data).key()


def test_an_experiment_without_faults_is_keyed_and_run_as_before():
    data = _experiment()
    data.pop("faults")
    experiment = load_experiment(data)
    assert "faults" not in experiment.to_dict()
    assert "faults" not in run_experiment(experiment).config


@pytest.mark.parametrize(
    "section,expected",
    [
        (
            {"events": [dict(CRASH), {"kind": "crash", "rank": 9, "at": 1}]},
            "faults.events[1].rank: rank 9 is not in the run's ranks 0..3",
        ),
        (
            {"events": [{"kind": "crash", "rank": 1, "at": 2, "until": 1}]},
            "faults.events[0].until: unknown key for a crash",
        ),
        (
            {"events": [{"kind": "link_down", "link": ["s0", "h9"], "at": 1}]},
            "faults.events[0].link:",
        ),
        ({"events": [dict(CRASH)], "detect": "soon"}, "faults.detect: bad time 'soon'"),
        ({"event": []}, "faults.event: unknown field; did you mean 'events'?"),
    ],
)
def test_a_bad_faults_section_is_one_line_with_its_path(section, expected):
    data = _experiment()
    data["faults"] = section
    with pytest.raises(ExperimentError) as error:
        load_experiment(data)
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_a_bad_faults_section_in_a_file_is_one_line_of_commsim_run(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        '[topology]\nkind = "star"\nn = 4\n[workload]\nname = "quadratic"\n'
        '[[faults.events]]\nkind = "crash"\nrank = 1\nstep = 500\n'
    )
    done = _cli("run", path, "--out", tmp_path / "run")
    assert done.exit_code == 2
    (line,) = _lines(done.output)
    assert line.startswith(f"error: {path}: faults.events[0].step: "), line


def test_a_sweep_varies_an_event_by_its_index():
    data = _experiment()
    data["faults"]["events"].append({"kind": "crash", "mtbf": "1s", "restart": "0.1s"})
    data["sweep"] = {"grid": {"faults.events[1].mtbf": ["0.5s", "2s"]}}
    points = expand(load_experiment(data))
    assert [p.faults.events[1]["mtbf"] for p in points] == ["0.5s", "2s"]
    assert [p.faults.events[0] for p in points] == [CRASH, CRASH]  # the others as written
    assert points[0].run.name == "experiment faults.events[1].mtbf=0.5s"
    assert points[0].key() != points[1].key()
    # On the command line, a sweep's dotted field is quoted, as TOML writes it.
    rates = load_experiment(data, ['sweep.grid."faults.events[1].mtbf"=["3s", "4s", "5s"]'])
    assert [p.faults.events[1]["mtbf"] for p in expand(rates)] == ["3s", "4s", "5s"]
    data["sweep"] = {"grid": {"faults.events[2].mtbf": ["1s"]}}
    with pytest.raises(ExperimentError, match=r"faults.events has 2 entries \(0..1\)"):
        load_experiment(data)
    with pytest.raises(ExperimentError, match=r"faults.events\[0\].rank: rank 9 is not"):
        load_experiment(_experiment(), ["faults.events[0].rank=9"])


# -- example fault files -------------------------------------------------------------------------

#: Each fault file with a run it fits (a quorum strategy; link faults on a fat tree), short.
FAULT_FILES = {
    "crash_restart": ("star:n=4", 70, {"crash", "restart", "rejoin"}),
    "mtbf": ("star:n=4", 30, {"crash", "restart"}),
    "link_down": ("fat_tree:k=4", 30, {"link_down", "link_up", "link_slow"}),
    "restart_from_checkpoint": ("star:n=4", 40, {"crash", "restart"}),
}


def test_every_fault_file_is_tested():
    assert {p.stem for p in (EXAMPLES / "fault_files").glob("*.toml")} == set(FAULT_FILES)


def test_each_example_fault_file_fits_the_topology_it_is_for():
    for name, (topology, steps, _) in FAULT_FILES.items():
        graph = topologies.from_spec(topology)
        schedule = FaultSchedule.parse(
            EXAMPLES / "fault_files" / f"{name}.toml",
            world_size=len(topologies.hosts(graph)),
            links=[(str(u), str(v)) for u, v in graph.edges],
            steps=steps,
        )
        assert schedule, name


@pytest.mark.parametrize("name", sorted(FAULT_FILES))
def test_each_example_fault_file_runs(name):
    topology, steps, events = FAULT_FILES[name]
    result = sim.run(
        _quorum(),
        workloads.get("quadratic", batch_size=8),
        topology,
        steps=steps,
        eval_every=10,
        faults=EXAMPLES / "fault_files" / f"{name}.toml",
        seed=1,
    )
    assert result.summary["steps"] == steps
    happened = set(result.metrics.loc[result.metrics["kind"] == "fault", "event"])
    assert events <= happened, happened


# -- loading, plotting ---------------------------------------------------------------------------


def _crash_run(out, **options):
    return sim.run(
        _quorum(), "quadratic", "star:n=4", steps=12, eval_every=4, out=out, faults=[CRASH]
    )


def test_load_keeps_fault_rows_and_the_schedule_as_columns(tmp_path):
    result = _crash_run(tmp_path / "run")
    df = load(tmp_path)
    rows = df[df["kind"] == "fault"]
    expected = result.metrics[result.metrics["kind"] == "fault"]
    assert list(rows["event"]) == list(expected["event"]) and "crash" in list(rows["event"])
    assert list(rows["time"]) == list(expected["time"])
    assert (df["faults.events[0].rank"] == 2).all()
    assert (df["faults.events[0].restart_step"] == 6).all()


def test_loss_vs_time_marks_each_fault_at_its_time(tmp_path):
    result = _crash_run(tmp_path / "faulty")
    ax = loss_vs_time(load(tmp_path)).axes[0]
    faults = result.metrics[result.metrics["kind"] == "fault"]
    drawn = sorted(x for c in ax.collections for x, _ in c.get_offsets())
    assert drawn == pytest.approx(sorted(faults["time"]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for event in set(faults["event"]):
        assert f"fault: {event}" in labels


def test_loss_vs_time_of_runs_without_faults_has_no_markers(tmp_path):
    sim.run("allreduce", "quadratic", "star:n=4", steps=8, eval_every=4, out=tmp_path / "r")
    ax = loss_vs_time(load(tmp_path)).axes[0]
    assert not ax.collections
    assert not any("fault" in t.get_text() for t in ax.get_legend().get_texts())


def test_the_faults_plot_draws_a_tiny_mtbf_sweep_and_marks_failed_runs(tmp_path):
    data = {
        "workload": "quadratic",
        "topology": "star:n=4",
        "run": {"steps": 30, "eval_every": 5, "target_loss": 0.5},
        "faults": {
            "detect": "0.02s",
            "events": [{"kind": "crash", "mtbf": "0.2s", "restart": "0.05s"}],
        },
        "sweep": {
            "grid": {
                "faults.events[0].mtbf": ["0.2s", "0.4s"],
                "strategy": [{"name": "allreduce", "fault_tolerance": "quorum"}, "allreduce"],
            }
        },
    }
    statuses = {}
    for i, point in enumerate(expand(load_experiment(data))):
        try:
            run_experiment(point, tmp_path / f"run{i}")
        except Exception:  # noqa: BLE001 - a run without a policy ends at its first crash
            pass
        record = json.loads((tmp_path / f"run{i}" / "run.json").read_text())
        statuses[
            (point.strategy.options.get("fault_tolerance"), point.faults.events[0]["mtbf"])
        ] = (
            record["status"],
            record["summary"].get("time_to_target"),
        )
    assert {s for (policy, _), (s, _) in statuses.items() if policy is None} == {"failed"}
    survived = {mtbf: t for (policy, mtbf), (s, t) in statuses.items() if policy == "quorum"}
    assert all(t is not None for t in survived.values()), statuses

    assert KINDS["faults"] is faults_plot
    figure = faults_plot(load(tmp_path))
    time_ax, goodput_ax = figure.axes[:2]
    (quorum,) = [line for line in time_ax.lines if "quorum" in line.get_label()]
    # The MTBFs in seconds, and the time to target each run's summary recorded.
    assert list(quorum.get_xdata()) == [0.2, 0.4]
    assert list(quorum.get_ydata()) == pytest.approx([survived["0.2s"], survived["0.4s"]])
    assert sorted(t.get_text() for t in time_ax.texts) == ["failed 1/1", "failed 1/1"]
    assert sorted(t.get_text() for t in goodput_ax.texts) == ["failed 1/1", "failed 1/1"]
    legend = [t.get_text() for t in time_ax.get_legend().get_texts()]
    assert "failed" in legend and "allreduce (failed)" in legend, legend
    figure.savefig(tmp_path / "faults.png")

    out = tmp_path / "cli.png"
    done = _cli("plot", tmp_path, "--kind", "faults", "--out", out)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"wrote {out} (faults, 4 runs)"
    assert out.stat().st_size > 5_000


def test_the_faults_plot_says_what_it_needs_in_one_line(tmp_path):
    sim.run(
        "allreduce",
        "quadratic",
        "star:n=4",
        steps=4,
        eval_every=2,
        out=tmp_path / "r",
        target_loss=1.0,
    )
    with pytest.raises(ValueError, match="no run has random crashes"):
        faults_plot(load(tmp_path))
    done = _cli("plot", tmp_path, "--kind", "faults", "--out", tmp_path / "f.png")
    assert done.exit_code == 2 and "no run has random crashes" in done.output


def test_series_name_the_recovery_policy_and_ignore_what_auto_resolved() -> None:
    import pandas as pd

    from studies.plot.series import series

    rows = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d"],
            "kind": "eval",
            "backend": "sim",
            "strategy.name": ["allreduce", "allreduce", "parameter_server", "parameter_server"],
            "faults.recovery": ["restart", None, None, None],
            # a failed run has no 'auto': it must not make a series of its own
            "auto.rule": ["commsim", "commsim", "commsim", None],
            "faults.events[0].mtbf": [1.0, 1.0, 1.0, 2.0],
            "time": 0.0,
            "step": 0,
            "samples": 0,
            "bytes": 0,
            "loss": 1.0,
        }
    )
    labels = sorted(s.label for s in series(rows, across=["faults.events[0].mtbf"]))
    assert labels == ["allreduce", "allreduce + recovery=restart", "parameter_server"]
