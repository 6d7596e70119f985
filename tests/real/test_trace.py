"""A real run's timeline: rank 0's trace.json has every rank's track, named by role, and the
spans add up to what each rank measured."""

import json

import pytest

import real
from runs import TRACE_FILE
from runs.trace import span_totals, validate


def test_a_real_run_writes_one_track_per_rank_adding_up_to_its_rank_row(tmp_path):
    result = real.run("parameter_server", "quadratic", nproc=2, steps=3, out=tmp_path, timeout=60)
    doc = json.loads((tmp_path / TRACE_FILE).read_text(encoding="utf-8"))
    validate(doc)
    assert doc["otherData"]["clock"] == "wall"
    tracks = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"]
    assert tracks == ["rank 0 (server)", "rank 1 (worker)"]
    ranks = result.ranks.set_index("rank")
    assert ranks["role"].tolist() == ["server", "worker"]
    sums = span_totals(doc)
    for rank, row in ranks.iterrows():
        # The rows time waits with perf_counter, the spans with the shared wall clock.
        assert sums[int(rank)]["compute"] == pytest.approx(row["compute_time"], abs=5e-3)
        assert sums[int(rank)]["comm"] == pytest.approx(row["comm_time"], abs=5e-3)
        assert sums[int(rank)]["idle"] == 0.0  # a wall-clock wait is all comm
    names = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == 1}
    assert "compute_gradients" in names and any("send→0" in n for n in names)
