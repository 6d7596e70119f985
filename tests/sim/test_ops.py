"""Time accounting: the recorded interval of a handle and the union of intervals under a wait_all."""

from fractions import Fraction

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.ops import busy_time
from strategies.handles import Handle


def op_with(env, start, stop):
    op = Handle()
    op.resolve(None, at=stop, started_at=start)
    return op


def parent_of(env, *children):
    parent = Handle()
    parent.children = tuple(children)
    return parent


def union_length(intervals, since, until):
    """Covered length of ``[since, until]``, by elementary segments between all endpoints.

    Independent of ``busy_time``'s sort-and-sweep: every segment between consecutive endpoints
    is either wholly covered by some interval or wholly uncovered, so testing its midpoint is
    exact. Inputs are Fractions, so the reference has no rounding.
    """
    points = sorted({since, until} | {p for a, b in intervals for p in (a, b) if since < p < until})
    total = Fraction(0)
    for left, right in zip(points, points[1:]):
        mid = (left + right) / 2
        if any(a <= mid <= b for a, b in intervals):
            total += right - left
    return total


def test_resolve_records_the_interval_and_value():
    op = Handle()
    assert (op.kind, op.started_at, op.finished_at, op.children) == ("comm", None, None, ())
    op.resolve("payload", at=2.5, started_at=1.0)
    assert (op.value, op.started_at, op.finished_at) == ("payload", 1.0, 2.5)


def test_resolve_without_a_start_is_an_instant_at_its_time():
    op = Handle("compute")
    op.resolve(7, at=3.0)
    assert (op.kind, op.value, op.started_at, op.finished_at) == ("compute", 7, 3.0, 3.0)
    assert busy_time(op, 0.0, 10.0) == 0.0


def test_a_single_op_is_clipped_to_the_window():
    env = simpy.Environment()
    op = op_with(env, 1.0, 4.0)
    assert busy_time(op, 0.0, 10.0) == 3.0
    assert busy_time(op, 2.0, 3.0) == 1.0
    assert busy_time(op, 2.0, 10.0) == 2.0
    assert busy_time(op, 5.0, 6.0) == 0.0  # after the op
    assert busy_time(op, 0.0, 0.5) == 0.0  # before the op


def test_overlap_is_counted_once_and_gaps_not_at_all():
    env = simpy.Environment()
    parent = parent_of(
        env,
        op_with(env, 0.0, 2.0),
        op_with(env, 1.0, 3.0),  # overlaps the first
        op_with(env, 1.5, 2.5),  # inside the union so far
        op_with(env, 5.0, 6.0),  # after a gap of 2
    )
    assert busy_time(parent, 0.0, 10.0) == 4.0
    assert busy_time(parent, 2.5, 5.5) == 1.0


def test_nested_handles_count_their_leaves_and_skip_unfinished_ones():
    env = simpy.Environment()
    inner = parent_of(env, op_with(env, 0.0, 1.0), op_with(env, 4.0, 5.0))
    unfinished = Handle()  # never finished: no interval
    outer = parent_of(env, inner, op_with(env, 0.5, 2.0), unfinished)
    assert busy_time(outer, 0.0, 10.0) == 3.0


def test_the_parent_interval_is_ignored_when_it_has_children():
    env = simpy.Environment()
    parent = parent_of(env, op_with(env, 1.0, 2.0))
    parent.resolve(None, at=10.0, started_at=0.0)  # what a wait_all records
    assert busy_time(parent, 0.0, 10.0) == 1.0


# Intervals on a grid of quarters: float arithmetic on them is exact, so equality is fair.
quarters = st.integers(0, 80).map(lambda k: Fraction(k, 4))
intervals = st.lists(st.tuples(quarters, quarters).map(sorted).map(tuple), min_size=0, max_size=8)


@settings(max_examples=150, deadline=None)
@given(intervals=intervals, window=st.tuples(quarters, quarters).map(sorted), nest=st.booleans())
def test_busy_time_is_the_length_of_the_union(intervals, window, nest):
    env = simpy.Environment()
    since, until = window
    leaves = [op_with(env, float(a), float(b)) for a, b in intervals]
    if nest and len(leaves) > 2:  # the same leaves under a two-level tree of wait_alls
        leaves = [parent_of(env, *leaves[:2]), parent_of(env, *leaves[2:])]
    root = parent_of(env, *leaves)
    expected = union_length(intervals, since, until)
    assert busy_time(root, float(since), float(until)) == pytest.approx(float(expected), abs=1e-12)
