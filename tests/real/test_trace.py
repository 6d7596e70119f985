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
    # A wall-clock rank's communication runs from its call, so a server that receives while
    # it steps overlaps some: that is its second track, adding up to its row's overlap.
    assert [t for t in tracks if not t.endswith(" overlapped comm")] == [
        "rank 0 (server)",
        "rank 1 (worker)",
    ]
    overlapped = span_totals(doc, overlapped=True)
    for rank, row in result.ranks.set_index("rank").iterrows():
        got = overlapped.get(int(rank), {"comm": 0.0})["comm"]
        assert got == pytest.approx(row["overlap_time"], abs=1e-6)
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


def test_a_real_run_with_buckets_draws_its_overlapped_all_reduces_on_a_second_track(tmp_path):
    from runs.trace import overlapped_track
    from strategies import AllReduceSGD

    strategy = AllReduceSGD(bucket_mb=0.004, first_bucket_mb=0.004)
    result = real.run(strategy, "mlp_digits", nproc=2, steps=3, out=tmp_path, timeout=60)
    doc = json.loads((tmp_path / TRACE_FILE).read_text(encoding="utf-8"))
    validate(doc)
    sums, overlapped = span_totals(doc), span_totals(doc, overlapped=True)
    ranks = result.ranks.set_index("rank")
    assert sorted(sums) == [0, 1]  # the ranks' own tracks keep adding up to their rows
    for rank, row in ranks.iterrows():
        assert sums[int(rank)]["comm"] == pytest.approx(row["comm_time"], abs=5e-3)
        # Cut from the same intervals as the row's overlap_time (rounded to nanoseconds).
        got = overlapped.get(int(rank), {"comm": 0.0})["comm"]
        assert got == pytest.approx(row["overlap_time"], abs=1e-6)
    assert (ranks["overlap_time"] > 0).any()
    side = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] >= 2]
    assert side and {e["name"] for e in side} == {"all_reduce[0,1]"}
    assert {e["tid"] for e in side} <= {overlapped_track(0, 2), overlapped_track(1, 2)}
