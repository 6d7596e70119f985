"""A simulated run's timeline: spans that add up to the rank rows, roles, determinism."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import topologies
from runs import TRACE_FILE
from runs.trace import CATEGORIES, Trace, span_totals, validate
from sim import run
from sim.ops import wait_spans
from sim.runtime import SimRuntime
from strategies.handles import Handle

ROWS = {"compute": "compute_time", "comm": "comm_time", "idle": "idle_time"}


def check_against_rank_rows(result, doc):
    """The independent check: the spans on each track, summed by category, are the rank
    row's compute, communication and idle time."""
    validate(doc)
    sums = span_totals(doc)
    ranks = result.ranks.set_index("rank")
    assert sorted(sums) == sorted(int(r) for r in ranks.index)
    for rank, row in ranks.iterrows():
        for category, column in ROWS.items():
            # Rounding to nanoseconds in the file: at most half a nanosecond per span.
            assert sums[int(rank)][category] == pytest.approx(row[column], abs=1e-6), (
                rank,
                category,
            )
            assert result.trace.totals()[int(rank)][category] == pytest.approx(
                row[column], rel=1e-9, abs=1e-12
            )


@pytest.mark.parametrize(
    "strategy, options",
    [
        # stragglers: the fast ranks wait (idle) for the slow one to join each all-reduce
        ("allreduce", {"compute": {"base": 0.01, "slowdown": {0: 3.0}}}),
        # servers and workers; waits on several sends and receives at once
        ("parameter_server", {}),
        # mixing with neighbours through wait_all of sends and receives
        ("gossip", {"compute": {"base": 0.01, "straggler": "lognormal"}}),
    ],
)
def test_spans_add_up_to_the_rank_rows_in_every_category(tmp_path, strategy, options):
    result = run(strategy, "quadratic", topologies.star(4), steps=12, out=tmp_path, **options)
    doc = json.loads((tmp_path / TRACE_FILE).read_text(encoding="utf-8"))
    check_against_rank_rows(result, doc)
    assert doc["otherData"]["clock"] == "simulated"
    assert all(r["dropped"] == 0 for r in doc["otherData"]["ranks"])
    names = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert "compute_gradients" in names


def test_stragglers_show_as_idle_before_the_collective_and_ops_are_named_by_group():
    result = run(
        "allreduce",
        "quadratic",
        topologies.star(3),
        steps=4,
        compute={"base": 0.01, "slowdown": {2: 2.0}},
    )
    doc = result.trace.document()
    fast = [(e["cat"], e["name"]) for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == 0]
    assert fast[:3] == [
        ("compute", "compute_gradients"),
        ("idle", "all_reduce[0-2]"),  # rank 2 is late
        ("comm", "all_reduce[0-2]"),
    ]
    assert span_totals(doc)[2]["idle"] == 0.0


def test_rank_rows_and_tracks_say_each_ranks_role():
    result = run("parameter_server", "quadratic", topologies.star(3), steps=3)
    assert result.ranks["role"].tolist() == ["server", "worker", "worker"]
    tracks = [
        e["args"]["name"]
        for e in result.trace.document()["traceEvents"]
        if e["name"] == "thread_name"
    ]
    assert tracks == ["rank 0 (server)", "rank 1 (worker)", "rank 2 (worker)"]
    sends = {
        e["name"]
        for e in result.trace.document()["traceEvents"]
        if e["ph"] == "X" and e["tid"] == 1
    }
    assert any(name.startswith("all of [send→0") for name in sends)


def test_the_same_config_and_seed_write_the_same_trace(tmp_path):
    for name in ("a", "b"):
        run(
            "gossip",
            "quadratic",
            topologies.ring(4),
            steps=6,
            seed=3,
            compute={"base": 0.01, "straggler": "lognormal"},
            out=tmp_path / name,
        )
    first = (tmp_path / "a" / TRACE_FILE).read_bytes()
    assert first == (tmp_path / "b" / TRACE_FILE).read_bytes()


def test_a_run_stopped_mid_wait_still_adds_up():
    # max_time stops ranks inside a computation and inside an all-reduce.
    result = run(
        "allreduce",
        "quadratic",
        topologies.star(3),
        steps=100,
        compute={"base": 0.01, "slowdown": {1: 1.5}},
        max_time=0.055,
    )
    assert result.summary["stop_reason"] == "max_time"
    check_against_rank_rows(result, result.trace.document())


def test_wait_spans_cover_the_wait_and_agree_with_busy_time():
    from sim.ops import busy_time

    a, b, c = Handle("compute"), Handle("comm"), Handle("comm")
    a.resolve(at=2.0, started_at=1.0)
    b.resolve(at=3.0, started_at=1.5)
    c.resolve(at=6.0, started_at=5.0)
    both = Handle()
    both.children = (a, b, c)
    pieces = wait_spans(both, 0.5, 5.5)
    assert pieces[0][1] == 0.5 and pieces[-1][2] == 5.5
    assert all(p[2] == q[1] for p, q in zip(pieces, pieces[1:]))  # sequential, no gaps
    sums = {c: sum(e - s for k, s, e in pieces if k == c) for c in CATEGORIES}
    assert sums["compute"] == busy_time(both, 0.5, 5.5, ("compute",))
    assert sums["comm"] == busy_time(both, 0.5, 5.5, ("compute", "comm")) - sums["compute"]
    assert [k for k, _, _ in pieces] == ["idle", "compute", "comm", "idle", "comm"]


times = st.floats(0.0, 10.0, allow_nan=False)
leaf = st.tuples(st.sampled_from(["compute", "comm", "idle"]), times, times, st.booleans())


@given(times, times, st.lists(leaf, min_size=1, max_size=4))
def test_the_spans_of_any_wait_are_its_books_laid_out_in_time(a, b, leaves):
    start, end = min(a, b), max(a, b)
    handles = []
    for kind, c, d, started in leaves:
        h = Handle(kind)
        if started:
            h.resolve(None, at=max(c, d), started_at=min(c, d))
        handles.append(h)
    op = handles[0]
    if len(handles) > 1:
        op = Handle()
        op.children = tuple(handles)
    books = [0.0, 0.0, 0.0]
    SimRuntime._account(books, op, start, end)
    trace = Trace(1, backend="sim")
    SimRuntime._spans(trace, 0, op, start, end)
    doc = trace.document()
    validate(doc)
    spans = trace.export(0)["spans"]
    assert all(p[3] == q[2] for p, q in zip(spans, spans[1:]))  # one after the other
    if spans:
        assert (spans[0][2], spans[-1][3]) == (start, end)
    totals = trace.totals()[0]
    for category, booked in zip(CATEGORIES, books):
        assert totals[category] == pytest.approx(booked, abs=1e-9)


def test_overlapped_bucket_all_reduces_have_a_second_track_adding_up_to_the_overlap():
    from runs.trace import overlapped_track
    from strategies import AllReduceSGD

    result = run(
        AllReduceSGD(bucket_mb=0.004, first_bucket_mb=0.004),
        "mlp_digits",
        topologies.star(2),
        steps=3,
        compute=0.03,
    )
    doc = result.trace.document()
    check_against_rank_rows(result, doc)  # the ranks' own tracks are as they were
    overlapped = span_totals(doc, overlapped=True)
    ranks = result.ranks.set_index("rank")
    assert sorted(overlapped) == [0, 1]
    for rank, row in ranks.iterrows():
        assert row["overlap_time"] > 0
        assert overlapped[int(rank)]["comm"] == pytest.approx(row["overlap_time"], abs=1e-6)
        assert overlapped[int(rank)]["compute"] == overlapped[int(rank)]["idle"] == 0.0
        spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
        side = [e for e in spans if e["tid"] == overlapped_track(int(rank), 2)]
        own = [e for e in spans if e["tid"] == int(rank) and e["cat"] == "compute"]
        # Named as the rank's other communication, each inside one of its compute spans.
        assert {e["name"] for e in side} == {"all_reduce[0,1]"}
        for e in side:
            assert any(
                c["ts"] - 0.002 <= e["ts"] and e["ts"] + e["dur"] <= c["ts"] + c["dur"] + 0.002
                for c in own
            )
    tracks = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"]
    assert tracks == [
        "rank 0 (worker)",
        "rank 0 (worker) overlapped comm",
        "rank 1 (worker)",
        "rank 1 (worker) overlapped comm",
    ]


def test_a_run_without_overlapped_communication_has_no_second_track():
    result = run("allreduce", "mlp_digits", topologies.star(2), steps=3, compute=0.03)
    doc = result.trace.document()
    assert {e["tid"] for e in doc["traceEvents"]} == {0, 1}
    assert span_totals(doc, overlapped=True) == {}
    assert (result.ranks["overlap_time"] == 0).all()
