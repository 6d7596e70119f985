"""The run directory is written as the run goes and keeps what was measured, however it ends."""

import json

import pandas as pd

from runs import RunWriter


def test_an_interrupt_is_recorded_as_one_and_keeps_the_rows_on_disk(tmp_path):
    writer = RunWriter(tmp_path, {"backend": "sim"})
    rows = [{"kind": "eval", "step": 0, "loss": 1.0}, {"kind": "eval", "step": 5, "loss": 0.5}]
    writer.flush(rows, force=True)
    # A real launcher hands the writer no rows as it goes: an interrupt reaching the writer
    # then must not replace the rows on disk with none.
    writer._rows = []
    with_interrupt = KeyboardInterrupt("interrupted by SIGTERM")
    writer.fail([], with_interrupt)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["error"] == "KeyboardInterrupt: interrupted by SIGTERM"
    assert list(pd.read_parquet(tmp_path / "metrics.parquet")["step"]) == [0, 5]


def test_a_failure_is_recorded_as_failed(tmp_path):
    writer = RunWriter(tmp_path, {"backend": "sim"})
    writer.fail([{"kind": "eval", "step": 0, "loss": 1.0}], RuntimeError("boom"))
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom"
