"""Overlapped communication cut into named pieces, against a plain reference: a grid of
instants, each one's communication and compute looked up directly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.overlap import Overlap

interval = st.tuples(st.integers(0, 40), st.integers(1, 10)).map(lambda t: (t[0], t[0] + t[1]))


@given(st.lists(interval, max_size=6), st.lists(interval, max_size=6))
def test_pieces_are_sequential_named_and_add_up_to_the_overlap(computes, comms):
    o = Overlap(labelled=True)
    for a, b in computes:
        o.computing(0, float(a), float(b))
    for k, (a, b) in enumerate(comms):
        o.communicating(0, float(a), float(b), f"op{k}")
    pieces = o.pieces(0)
    assert sum(b - a for _, a, b in pieces) == pytest.approx(o.seconds(0))
    assert all(a < b for _, a, b in pieces)
    assert all(p[2] <= q[1] for p, q in zip(pieces, pieces[1:]))  # sequential
    # The reference: at each half-integer instant, overlapped exactly when some compute and
    # some communication cover it, and named by the earliest started (first booked) of them.
    for t in (x + 0.5 for x in range(60)):
        covering = [k for k, (a, b) in enumerate(comms) if a <= t < b]
        computing = any(a <= t < b for a, b in computes)
        named = [label for label, a, b in pieces if a <= t < b]
        if computing and covering:
            first = min(covering, key=lambda k: (comms[k][0], k))
            assert named == [f"op{first}"]
        else:
            assert named == []


def test_without_labels_the_pieces_are_unnamed_and_the_seconds_the_same():
    o = Overlap()
    o.computing(1, 0.0, 2.0)
    o.communicating(1, 1.0, 3.0, "ignored")
    assert o.pieces(1) == [(None, 1.0, 2.0)] and o.seconds(1) == 1.0
    assert o.pieces(0) == []


@given(st.lists(interval, max_size=8), st.lists(interval, max_size=8))
def test_seconds_are_the_unit_cells_both_cover(computes, comms):
    # Integer ends: the overlap is exactly the number of unit cells [t, t + 1) that some
    # computation and some communication both cover (the merge's result, counted plainly).
    o = Overlap()
    for a, b in computes:
        o.computing(0, float(a), float(b))
    for a, b in comms:
        o.communicating(0, float(a), float(b))
    cells = sum(
        any(a <= t < b for a, b in computes) and any(a <= t < b for a, b in comms)
        for t in range(60)
    )
    assert o.seconds(0) == float(cells)
