"""The one receive-matching engine, against a plain reference: gloo's rule in a few lines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.matching import Matcher


def reference(events: list[tuple[str, int | None, str]]) -> list[tuple[str, str | None]]:
    """Each event's match, by scanning plain lists: a message goes to the first receive
    posted for its sender, else the first from any rank; a receive takes the earliest
    waiting message it accepts."""
    recvs: list[tuple[int | None, str]] = []
    sends: list[tuple[int, str]] = []
    out: list[tuple[str, str | None]] = []
    for kind, rank, name in events:
        if kind == "send":
            assert rank is not None
            hit = [r for r in recvs if r[0] == rank] or [r for r in recvs if r[0] is None]
            if hit:
                recvs.remove(hit[0])
                out.append((name, hit[0][1]))
            else:
                sends.append((rank, name))
                out.append((name, None))
        else:
            took = [s for s in sends if rank is None or s[0] == rank]
            if took:
                sends.remove(took[0])
                out.append((name, took[0][1]))
            else:
                recvs.append((rank, name))
                out.append((name, None))
    return out


def engine(events: list[tuple[str, int | None, str]]) -> list[tuple[str, str | None]]:
    m: Matcher[str, str] = Matcher()
    out: list[tuple[str, str | None]] = []
    for kind, rank, name in events:
        if kind == "send":
            assert rank is not None
            out.append((name, m.offer(rank, name)))
        else:
            out.append((name, m.post(rank, name)))
    return out


@st.composite
def posts(draw: Any) -> list[tuple[str, int | None, str]]:
    """Sends from ranks 1-3 and receives from one of them or from any (None), interleaved."""
    kinds = draw(
        st.lists(
            st.tuples(st.sampled_from(["send", "recv"]), st.sampled_from([1, 2, 3, None])),
            max_size=40,
        )
    )
    return [
        ("send", rank or 1, f"s{i}") if kind == "send" else ("recv", rank, f"r{i}")
        for i, (kind, rank) in enumerate(kinds)
    ]


@settings(max_examples=300, deadline=None)
@given(posts())
def test_the_engine_matches_as_the_plain_reference_does(events):
    assert engine(events) == reference(events)


@settings(max_examples=200, deadline=None)
@given(posts())
def test_one_senders_messages_are_matched_in_the_order_sent(events):
    sent: dict[int, list[str]] = {}
    source = {name: rank for kind, rank, name in events if kind == "recv"}
    for kind, rank, name in events:
        if kind == "send":
            assert rank is not None
            sent.setdefault(rank, []).append(name)
    matched = {name: other for name, other in engine(events) if other is not None}
    partner = {**matched, **{v: k for k, v in matched.items()}}
    for rank, names in sent.items():
        # The receives for this sender (numbered in the order posted) got its messages in
        # the order sent. (A receive for the sender goes before an earlier one from any rank.)
        got = [int(partner[n][1:]) for n in names if n in partner and source[partner[n]] == rank]
        assert got == sorted(got)


def test_a_message_takes_the_receive_for_its_sender_before_an_earlier_one_from_any_rank():
    m: Matcher[str, str] = Matcher()
    m.post(None, "any")
    m.post(2, "for 2")
    assert m.offer(2, "x") == "for 2"
    assert m.offer(1, "y") == "any"
    assert len(m) == 0


def test_a_receive_from_any_rank_takes_whoever_came_first():
    m: Matcher[str, str] = Matcher()
    assert m.offer(3, "from 3") is None
    assert m.offer(1, "from 1") is None
    assert m.post(1, "r") == "from 1"  # a receive for 1 skips 3's earlier message
    assert m.post(None, "r") == "from 3"


def test_claim_and_hold_split_offer_for_a_backend_that_keeps_the_message_itself():
    m: Matcher[str, str] = Matcher()
    assert m.claim(1) is None  # nothing posted: nothing changes
    assert list(m.messages()) == []
    m.hold(1, "kept")
    assert not m.wants(1) and not m.awaits(1)
    assert m.post(2, "for 2") is None
    assert m.wants(2) and m.awaits(2) and not m.wants(1)
    assert m.post(None, "any") == "kept"  # the held message, not a waiting receive
    assert m.post(None, "any again") is None
    assert m.wants(1) and not m.awaits(1)
    assert list(m.receives()) == ["for 2", "any again"]
    assert m.claim(1) == "any again"
    assert m.claim(2) == "for 2" and len(m) == 0


@pytest.mark.parametrize("seed", range(3))
def test_seeded_sequences_agree_with_the_reference_too(seed):
    """A plain seeded check beside hypothesis: long sequences, many senders."""
    import random

    rng = random.Random(seed)
    events: list[tuple[str, int | None, str]] = []
    for i in range(2000):
        if rng.random() < 0.5:
            events.append(("send", rng.randrange(8), f"s{i}"))
        else:
            events.append(("recv", rng.choice([None, *range(8)]), f"r{i}"))
    assert engine(events) == reference(events)
