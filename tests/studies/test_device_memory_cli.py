"""``[compute] memory`` in an experiment file and ``--set compute.memory=...``: a worker that
does not fit the compute model's device refused in one line, or timed and its peak memory
shown in the summary table and recorded in ``run.json``."""

import json

import pytest
from typer.testing import CliRunner

from studies.cli import app

EXPERIMENT = """
[run]
name = "big"
steps = 1
timing_only = true

[topology]
kind = "star"
n = 2

[workload]
name = "llama3_70b"

[strategy]
name = "allreduce"

[optimizer]
name = "adam"

[compute]
base = "flops"
device = "H100"
{extra}
"""


def _run(tmp_path, extra, *args):
    path = tmp_path / "big.toml"
    path.write_text(EXPERIMENT.format(extra=extra))
    out = tmp_path / "out"
    done = CliRunner().invoke(
        app, ["run", str(path), "--no-progress", "--out", str(out), *args], env={"COLUMNS": "300"}
    )
    return done, out


def test_a_worker_that_does_not_fit_is_refused_in_one_line_naming_the_option(tmp_path):
    done, out = _run(tmp_path, "")
    assert done.exit_code != 0
    lines = [line for line in done.output.splitlines() if "llama3_70b needs" in line]
    assert len(lines) == 1, done.output
    assert "the H100 has 80 GB" in lines[0]
    assert "compute.memory='report'" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("how", ["file", "set"])
def test_report_from_the_file_or_set_times_it_and_shows_peak_memory(tmp_path, how):
    if how == "file":
        done, out = _run(tmp_path, 'memory = "report"')
    else:
        done, out = _run(tmp_path, "", "--set", "compute.memory=report")
    assert done.exit_code == 0, done.output
    assert "peak memory per worker (GB)" in done.output
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["compute"]["memory"] == "report"
    assert record["experiment"]["compute"]["memory"] == "report"
    # Mixed-precision Adam (16 bytes a parameter) of 70.55 B parameters, plus activations.
    assert record["summary"]["peak_memory_gb"] == pytest.approx(2037.96, abs=0.01)
    assert record["summary"]["device_memory_gb"] == 80.0


def test_a_misspelt_memory_policy_is_one_line_at_its_field(tmp_path):
    done, out = _run(tmp_path, 'memory = "reprot"')
    assert done.exit_code != 0
    assert "compute.memory: input should be 'check' or 'report'" in done.output, done.output
    assert not out.exists()


def test_zero_from_the_file_shards_the_recorded_estimate(tmp_path):
    done, out = _run(tmp_path, 'memory = "report"', "--set", "compute.zero=2")
    assert done.exit_code == 0, done.output
    record = json.loads((out / "run.json").read_text())
    assert record["experiment"]["compute"]["zero"] == 2
    summary = record["summary"]
    # Over the 2 workers: Adam's 8 bytes a parameter of state, then 4 of master weights and
    # 2 of gradients, halved; the bf16 parameters (2 bytes) whole.
    assert summary["memory_optimizer_gb"] == pytest.approx(564.43 / 2, abs=0.01)
    assert summary["memory_master_gb"] == pytest.approx(282.21 / 2, abs=0.01)
    assert summary["memory_gradients_gb"] == pytest.approx(141.11 / 2, abs=0.01)
    assert summary["memory_parameters_gb"] == pytest.approx(141.11, abs=0.01)
