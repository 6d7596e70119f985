"""The trace-event document: the format viewers open, the span limit, counters, gathering."""

import json
import math

import pytest

from runs.trace import (
    CATEGORIES,
    SPAN_BUDGET,
    Trace,
    span_limit,
    span_totals,
    validate,
)


def small_trace(**kwargs):
    trace = Trace(2, backend="sim", title="allreduce on quadratic", **kwargs)
    trace.role(0, "server")
    trace.role(1, "worker")
    trace.span(0, "idle", "recv←1", 0.0, 0.25)
    trace.span(0, "comm", "recv←1", 0.25, 0.5, {"bytes": 48})
    trace.span(1, "compute", "compute_gradients", 0.0, 0.2)
    trace.span(1, "comm", "send→0", 0.2, 0.5)
    trace.span(1, "idle", "nothing", 0.5, 0.5)  # empty: not recorded
    return trace


def test_the_document_is_a_chrome_trace_with_one_named_track_per_rank():
    doc = small_trace().document(seed=3)
    validate(doc)
    assert set(doc) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] == "ms"
    meta = {(e["name"], e["tid"]): e["args"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert meta[("process_name", 0)] == {"name": "sim: allreduce on quadratic"}
    assert meta[("thread_name", 0)] == {"name": "rank 0 (server)"}
    assert meta[("thread_name", 1)] == {"name": "rank 1 (worker)"}
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert [(e["tid"], e["cat"], e["name"], e["ts"], e["dur"]) for e in spans] == [
        (0, "idle", "recv←1", 0.0, 250000.0),
        (0, "comm", "recv←1", 250000.0, 250000.0),
        (1, "compute", "compute_gradients", 0.0, 200000.0),
        (1, "comm", "send→0", 200000.0, 300000.0),
    ]
    assert spans[1]["args"] == {"bytes": 48}
    assert all(e["pid"] == 1 for e in doc["traceEvents"])
    other = doc["otherData"]
    assert (other["backend"], other["clock"], other["seed"]) == ("sim", "simulated", 3)
    assert Trace(1, backend="real").document()["otherData"]["clock"] == "wall"


def test_written_json_round_trips_and_sums_per_category_match_the_totals(tmp_path):
    trace = small_trace()
    path = trace.write(tmp_path / "trace.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    validate(doc)
    assert doc == json.loads(json.dumps(trace.document()))
    sums = span_totals(doc)
    for rank, totals in trace.totals().items():
        for category in CATEGORIES:
            assert sums[rank][category] == pytest.approx(totals[category], abs=1e-9)


def test_names_are_made_once_per_distinct_name_and_only_for_kept_spans():
    calls = []

    def shorten(what):
        calls.append(what)
        return what.upper()

    trace = Trace(1, backend="sim", limit=2, names=shorten)
    for i in range(4):
        trace.span(0, "comm", "send" if i < 2 else "late", i, i + 1)
    names = [e["name"] for e in trace.document()["traceEvents"] if e["ph"] == "X"]
    assert names == ["SEND", "SEND"] and calls == ["send"]


def test_spans_beyond_the_limit_are_counted_but_dropped():
    trace = Trace(2, backend="sim", limit=3)
    for i in range(10):
        trace.span(0, "compute" if i % 2 else "comm", "op", float(i), i + 0.5)
    doc = trace.document()
    assert sum(e["ph"] == "X" and e["tid"] == 0 for e in doc["traceEvents"]) == 3
    rank0 = doc["otherData"]["ranks"][0]
    assert (rank0["spans"], rank0["dropped"]) == (3, 7)
    assert (rank0["compute"], rank0["comm"]) == (2.5, 2.5)  # all ten spans count
    assert trace.dropped == {0: 7, 1: 0}
    assert doc["otherData"]["span_limit"] == 3


def test_the_default_limit_keeps_a_long_runs_file_well_under_20_mb(tmp_path):
    ranks, per_rank = 4, 60_000  # a long run: more spans than the budget
    trace = Trace(ranks, backend="real")
    assert trace.limit == span_limit(ranks) == SPAN_BUDGET // ranks
    for rank in range(ranks):
        trace.role(rank, "worker")
        for i in range(per_rank):
            trace.span(rank, "comm", f"all_reduce[0-{ranks - 1}]", i * 1e-3, i * 1e-3 + 5e-4)
    size = trace.write(tmp_path / "trace.json").stat().st_size
    assert size < 20e6
    other = json.loads((tmp_path / "trace.json").read_text())["otherData"]
    assert sum(r["spans"] for r in other["ranks"]) == SPAN_BUDGET
    assert all(r["dropped"] == per_rank - SPAN_BUDGET // ranks for r in other["ranks"])
    assert other["ranks"][0]["comm"] == pytest.approx(per_rank * 5e-4)


def test_counters_skip_non_finite_values_and_loss_comes_from_eval_rows():
    trace = Trace(1, backend="sim")
    trace.counter("link utilisation", 0.5, {"max": 1.0, "mean": math.nan})
    trace.counter("nothing", 0.1, {"x": math.inf})
    trace.evals(
        [
            {"kind": "eval", "time": 1.0, "loss": 2.0},
            {"kind": "step", "time": 1.5, "staleness": 0.0},
            {"kind": "eval", "time": 0.0, "loss": 3.0},
        ]
    )
    doc = trace.document()
    validate(doc)
    counters = [(e["name"], e["ts"], e["args"]) for e in doc["traceEvents"] if e["ph"] == "C"]
    assert counters == [
        ("loss", 0.0, {"loss": 3.0}),
        ("link utilisation", 500000.0, {"max": 1.0}),
        ("loss", 1000000.0, {"loss": 2.0}),
    ]


def test_a_ranks_export_is_gathered_under_the_gatherers_limit():
    on_rank = Trace(2, backend="real", limit=10)
    for i in range(6):
        on_rank.span(1, "comm", "recv←0", float(i), i + 0.5)
    gathered = Trace(2, backend="real", limit=4)
    gathered.absorb(1, json.loads(json.dumps(on_rank.export(1))))
    assert gathered.dropped == {0: 0, 1: 2}
    assert gathered.totals()[1]["comm"] == 3.0
    validate(gathered.document())


@pytest.mark.parametrize(
    "event, message",
    [
        ({"ph": "X", "ts": 0, "pid": 1, "dur": 1, "cat": "comm"}, "has no 'tid'"),
        ({"ph": "X", "ts": 0, "pid": 1, "tid": 0, "dur": 1, "cat": "busy"}, "cat='busy'"),
        ({"ph": "B", "ts": 0, "pid": 1, "tid": 0}, "ph='B'"),
        ({"ph": "i", "ts": 0, "pid": 1, "tid": 0, "s": "x"}, "instant event with s='x'"),
        ({"ph": "C", "ts": 0, "pid": 1, "tid": 0, "args": {"x": math.nan}}, "non-finite"),
    ],
)
def test_validate_names_what_a_viewer_would_reject(event, message):
    with pytest.raises(ValueError, match=message):
        validate({"traceEvents": [event]})


def test_spans_of_a_track_may_nest_or_follow_but_not_partly_overlap():
    def span(ts, dur, tid=0):
        return {"ph": "X", "cat": "comm", "ts": ts, "dur": dur, "pid": 1, "tid": tid}

    validate({"traceEvents": [span(0, 10), span(2, 3), span(5, 5), span(10, 1)]})
    validate({"traceEvents": [span(0, 10), span(5, 10, tid=1)]})  # another track
    with pytest.raises(ValueError, match="starts inside traceEvents\\[0\\] and ends after it"):
        validate({"traceEvents": [span(0, 10), span(5, 10)]})


def test_bad_arguments_are_one_line_errors_naming_the_field():
    with pytest.raises(ValueError, match="backend='gpu' is unknown; use one of sim, real"):
        Trace(1, backend="gpu")
    with pytest.raises(ValueError, match="category='wait' is unknown"):
        Trace(1, backend="sim").span(0, "wait", "x", 0.0, 1.0)
    with pytest.raises(ValueError, match="ranks=0 must be at least 1"):
        span_limit(0)


def test_a_ranks_export_names_its_spans_as_text_from_the_handles_labels():
    """A rank hands in plain data (real/handin checks that names are strings): labels made
    from handles' fields are named when exported, once per distinct label."""
    from functools import partial

    from strategies.handles import Handle, all_of
    from strategies.operations import Operation, span_name

    trace = Trace(4, backend="real", names=partial(span_name, world_size=4))
    reduce = Handle(op=Operation("reduce", (0, 2), root=2))
    pair = all_of([Handle(op=Operation("send", peer=1, nbytes=8)), Handle(op=Operation("recv"))])
    trace.span(0, "comm", reduce.label, 0.0, 1.0)
    trace.span(0, "comm", pair.label, 1.0, 2.0)
    trace.span(0, "compute", "compute_gradients", 2.0, 3.0)
    names = [span[1] for span in trace.export(0)["spans"]]
    assert names == ["reduce[0,2] to 2", "all of [send→1; recv←any]", "compute_gradients"]
    gathered = Trace(4, backend="real", names=partial(span_name, world_size=4))
    gathered.absorb(0, trace.export(0))
    shown = [e["name"] for e in gathered.document()["traceEvents"] if e["ph"] == "X"]
    assert shown == names


def test_fault_rows_are_instant_events_on_their_ranks_track():
    trace = small_trace()
    trace.faults(
        [
            {"kind": "fault", "time": 0.3, "rank": 1, "event": "crash"},
            {"kind": "eval", "time": 0.3, "step": 1, "loss": 0.5},
            {"kind": "fault", "time": 0.1, "rank": -1, "event": "link_down"},
        ]
    )
    doc = trace.document()
    validate(doc)
    instants = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert [(e["name"], e["tid"], e["ts"], e["s"], e["cat"]) for e in instants] == [
        ("link_down", 0, 100_000.0, "p", "fault"),  # no rank: across the process
        ("crash", 1, 300_000.0, "t", "fault"),
    ]


def test_a_sim_runs_trace_shows_its_faults_and_a_run_without_none(tmp_path):
    import sim
    from strategies import registry

    crash = {"kind": "crash", "rank": 2, "step": 3, "restart_step": 6}
    result = sim.run(
        registry.get("allreduce", fault_tolerance="quorum"),
        "quadratic",
        "star:n=4",
        steps=10,
        eval_every=5,
        out=tmp_path / "faulty",
        faults=[crash],
    )
    doc = json.loads((tmp_path / "faulty" / "trace.json").read_text())
    validate(doc)
    rows = result.metrics[result.metrics["kind"] == "fault"]
    instants = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert sorted((e["name"], e["tid"], e["ts"]) for e in instants) == sorted(
        (event, int(rank), round(time * 1e6, 3))
        for event, rank, time in zip(rows["event"], rows["rank"], rows["time"])
    )
    assert {"crash", "restart", "rejoin"} <= {e["name"] for e in instants if e["tid"] == 2}

    sim.run("allreduce", "quadratic", "star:n=4", steps=4, out=tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "trace.json").read_text())
    assert not [e for e in plain["traceEvents"] if e["ph"] == "i"]
