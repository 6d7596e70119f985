"""Calibration against the simulator itself: the probe run in ``sim`` must give back the
simulator's own parameters, and what calibration writes must load as an experiment."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import sim
import topologies
from studies.calibration import CalibrationProbe, fit_probe, write
from studies.cli import app
from studies.experiment import load_experiment, run_experiment


@pytest.fixture(scope="module")
def probed():
    """A probe run on a 3-host star whose links lose 5% to headers and take 1 ms each."""
    truth = topologies.star(3, bandwidth="100Mbps", latency="1ms")
    for _, _, data in truth.edges(data=True):
        data["efficiency"] = 0.95
    probe = CalibrationProbe(max_size=2**20, points=4, repeats=1)
    result = sim.run(probe, "mlp_digits", truth, steps=6, eval_every=6, compute=0.01)
    return truth, result


def test_the_fit_gives_back_the_simulators_latency_bandwidth_and_efficiency(probed):
    truth, result = probed
    nominal = topologies.star(3, bandwidth="100Mbps", latency="1us")  # as shaped, no overheads
    c = fit_probe(result.logs, nominal=nominal, world_size=3, source="sim")
    assert c.latency == pytest.approx(1e-3, rel=1e-3)
    assert c.efficiency == pytest.approx(0.95, rel=1e-3)  # headers: a few bytes of 1 MB
    assert c.bandwidth == pytest.approx(0.95 * 100e6 / 8, rel=1e-3)
    assert all(fit.max_residual < 1e-3 for fit in c.links.values())
    for fit in c.collectives.values():  # the simulator's own choice, to the microsecond
        assert fit.algorithm == "auto"
        assert max(abs(r) for r in fit.residuals) < 1e-6
    assert c.compute["median"] == pytest.approx(0.01)
    assert set(c.profile["rank"]) == {0, 1, 2}
    # Max-min sharing ends a fan-out's flows together: no unfairness to fit.
    assert c.unfairness.measured == pytest.approx(1.0) and c.unfairness.unfairness == 0.0


@pytest.fixture(scope="module")
def unfair():
    """A probe run on a 4-host star whose concurrent flows share links unevenly."""
    truth = topologies.star(4, bandwidth="100Mbps", latency="1ms")
    probe = CalibrationProbe(max_size=2**20, points=2, repeats=5)
    return sim.run(
        probe,
        "mlp_digits",
        truth,
        steps=3,
        eval_every=3,
        compute=0.01,
        network={"unfairness": 0.6},
    )


def test_the_fit_gives_back_the_simulators_unfairness_and_writes_it(unfair, tmp_path):
    nominal = topologies.star(4, bandwidth="100Mbps", latency="1us")
    c = fit_probe(unfair.logs, nominal=nominal, world_size=4, source="sim")
    fit = c.unfairness
    assert fit.repeats == 15
    # 15 fan-outs of 3 flows: the mean evenness is an estimate, and so is the unfairness.
    assert 0.35 < fit.unfairness < 0.85  # seeds 0-7 fit 0.38-0.62
    assert fit.predicted == pytest.approx(fit.measured, abs=0.01)
    assert fit.curve[0.0] == pytest.approx(1.0) and fit.measured < 0.95
    write(c, tmp_path)
    assert "unfairness of concurrent flows" in (tmp_path / "report.md").read_text()
    exp = load_experiment(tmp_path / "calibrated.toml", ["strategy.name=parameter_server"])
    assert exp.network.unfairness == pytest.approx(fit.unfairness, abs=1e-3)


def test_a_written_calibration_loads_as_an_experiment_and_predicts_the_truth(probed, tmp_path):
    truth, result = probed
    nominal = topologies.star(3, bandwidth="100Mbps", latency="1us")
    c = fit_probe(result.logs, nominal=nominal, world_size=3, source="sim", server_alone=0.002)
    c.extra = {"workload": "mlp_digits:hidden=64"}
    write(c, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "topology.json",
        "compute.csv",
        "calibrated.toml",
        "calibration.json",
        "report.md",
        "calibration.png",
    }
    report = (tmp_path / "report.md").read_text()
    assert "efficiency (payload / wire bytes): 0.9500" in report
    exp = load_experiment(tmp_path / "calibrated.toml", ["strategy.name=allreduce", "run.steps=4"])
    assert exp.compute.server == pytest.approx(0.002)
    assert (exp.workload.name, exp.workload.options) == ("mlp_digits", {"hidden": 64})
    predicted = run_experiment(exp)
    actual = sim.run("allreduce", "mlp_digits", truth, steps=4, compute=0.01)
    assert predicted.summary["time"] == pytest.approx(actual.summary["time"], rel=1e-3)


def test_calibrate_on_local_processes_writes_the_directory(tmp_path):
    out = tmp_path / "cal"
    result = CliRunner().invoke(
        app,
        [
            *("calibrate", "--nproc", "2", "--out", str(out), "--steps", "3"),
            *("--max-size", "16777216", "--points", "3", "--repeats", "2", "--no-progress"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "# Calibration: 2 local processes (loopback)" in result.output
    graph = topologies.load(out / "topology.json")
    assert len(topologies.hosts(graph)) == 2
    assert (out / "compute.csv").read_text().startswith("rank,gradient,seconds")


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "give one of --nproc N"),
        (["--nproc", "1"], "at least 2 ranks"),
        (["--nproc", "2", "--steps", "1"], "at least 2 worker steps"),
        (["--nproc", "2", "--points", "1"], "points >= 2"),
    ],
)
def test_bad_calibrate_options_are_one_line_errors(tmp_path, args, needle):
    result = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path), *args])
    assert result.exit_code == 1
    assert needle in result.output and "Traceback" not in result.output


def test_the_probe_is_named_only_for_command_lines():
    # It measures, it does not train: not in the catalogue until a rank imports its name.
    import subprocess
    import sys

    code = (
        "import strategies, studies.calibration as c; assert 'calibration_probe' not in "
        "strategies.names(); import studies.calibration.named; "
        "assert 'calibration_probe' in strategies.names()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.usefixtures("testbed_rights")
def test_calibrating_a_testbed_fits_its_shaped_rate_and_tcps_overhead(tmp_path, monkeypatch):
    from studies.calibration import calibrate

    monkeypatch.setenv("COMMSIM_TESTBED_STATE", str(tmp_path / "state"))
    c = calibrate(
        "mlp_digits",
        tmp_path / "cal",
        testbed="star:n=2,bandwidth=50Mbps",
        steps=3,
        min_size=4096,
        max_size=2**20,
        points=3,
        repeats=1,
        progress=False,
    )
    # tbf charges 1514 wire bytes per 1448-byte TCP segment, and ACKs: ~0.95 of the rate.
    assert 0.85 < c.efficiency <= 0.99
    assert c.bandwidth < 50e6 / 8
    graph = topologies.load(tmp_path / "cal" / "topology.json")
    assert {d["efficiency"] for *_, d in graph.edges(data=True)} == {c.efficiency}
    # The probe's testbed recorded itself in this state directory, and was removed.
    assert not any((tmp_path / "state").glob("*")), list((tmp_path / "state").glob("*"))


@pytest.mark.parametrize(
    "summary, record, needle",
    [
        ("[1, 2]", "{}", "calibration.json is not a calibration's (a list, not an object)"),
        ("{nope", "{}", "calibration.json is not a calibration's (Expecting property name"),
        ('{"world_size": 2}', "{}", "calibration.json lacks 'source'"),
        (
            '{"world_size": 2, "source": "x", "server_step": 0, "compute": [1]}',
            "{}",
            "calibration.json is not a calibration's ('compute' or 'testbed' of the wrong type)",
        ),
        (
            '{"world_size": 2, "source": "x", "server_step": 0}',
            '{"config": [1]}',
            "run.json: the record's 'config' is a list, not an object",
        ),
        (
            '{"world_size": 2, "source": "x", "server_step": 0}',
            "{}",
            "probe lacks the probe's measurements",
        ),
    ],
)
def test_refit_of_a_directory_that_is_not_a_calibrations_is_one_line(
    tmp_path, summary, record, needle
):
    """A list for calibration.json was an AttributeError from inside refit."""
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "run.json").write_text(record)
    (tmp_path / "calibration.json").write_text(summary)
    result = CliRunner().invoke(app, ["calibrate", "--refit", "--out", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
