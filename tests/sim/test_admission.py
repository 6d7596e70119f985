"""When a rank's call may start: after every rank made its groups, after its own work."""

from __future__ import annotations

import pytest

from sim.admission import Admission
from strategies.comm import CommError, Group
from strategies.handles import Handle, done
from strategies.operations import Operation

BARRIER = Operation("barrier")


def test_a_call_with_nothing_before_it_starts_at_once_as_itself():
    gate = Admission(2)
    inner = done("now")
    assert gate.admit(0, BARRIER, None, lambda: inner) is inner


def test_held_calls_start_in_program_order_after_the_work_and_take_its_times():
    gate, work, started = Admission(1), Handle("compute"), []

    def start(name: str) -> Handle[str]:
        started.append(name)
        inner: Handle[str] = Handle("comm")
        inner.resolve(name, at=5.0, started_at=4.0)
        return inner

    first = gate.admit(0, BARRIER, work, lambda: start("first"))
    # Nothing runs now, but a later call must still wait behind the held one.
    second = gate.admit(0, BARRIER, None, lambda: start("second"))
    assert started == [] and first.after is work and not second.done
    work.resolve(None, at=3.0)
    assert started == ["first", "second"]
    assert (first.value, first.started_at, first.finished_at) == ("first", 4.0, 5.0)
    assert first.children[0] is work and second.value == "second"


def test_a_failed_held_call_fails_its_proxy():
    gate, work = Admission(1), Handle("compute")
    inner: Handle[None] = Handle("comm")
    proxy = gate.admit(0, BARRIER, work, lambda: inner)
    work.resolve(None, at=1.0)
    inner.fail(CommError("boom"), at=2.0)
    assert isinstance(proxy.error, CommError) and proxy.finished_at == 2.0


def test_groups_made_in_another_order_are_refused_naming_both():
    gate = Admission(2)
    gate.new_group(0, Group((0, 1)))
    with pytest.raises(CommError, match=r"rank 1 created group #0 over \(1,\) .* is \(0, 1\)"):
        gate.new_group(1, Group((1,)))


def test_a_rank_that_skipped_a_group_is_named():
    gate = Admission(2)
    gate.new_group(0, Group((0, 1)))
    with pytest.raises(CommError, match="rank 1 created 0 of the 1 groups"):
        gate.check_groups()
