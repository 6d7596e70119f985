"""The one handle type: resolution, failures, and composition, against plain expectations."""

import threading
from typing import get_args

import pytest
import torch

from strategies.comm import Communicator
from strategies.handles import Handle, Kind, all_of, any_of, done
from strategies.operations import Operation, span_name


def test_a_handle_resolves_once_and_runs_callbacks_in_order():
    h, seen = Handle("comm", "recv from rank 1"), []
    h.add_callback(lambda x: seen.append(("first", x.value)))
    h.add_callback(lambda x: seen.append(("second", x.value)))
    assert not h.done
    with pytest.raises(RuntimeError, match="recv from rank 1 has not finished; yield it"):
        _ = h.value
    h.resolve(5, at=2.0, started_at=1.0)
    assert seen == [("first", 5), ("second", 5)]
    assert (h.started_at, h.finished_at) == (1.0, 2.0)
    h.add_callback(lambda x: seen.append(("late", x.value)))  # runs at once
    assert seen[-1] == ("late", 5)
    with pytest.raises(RuntimeError, match="finished twice"):
        h.resolve(6)


def test_a_failed_handle_raises_its_error_and_passes_it_through_then():
    h = Handle()
    doubled = h.then(lambda v: 2 * v)
    h.fail(KeyError("gone"), at=1.0)
    assert h.failed and doubled.failed
    with pytest.raises(KeyError, match="gone"):
        _ = doubled.value


def test_an_error_raised_by_then_fails_the_new_handle():
    h = Handle()
    checked = h.then(lambda v: 1 / v)
    h.resolve(0)
    assert isinstance(checked.error, ZeroDivisionError)


def test_all_of_keeps_the_order_given_and_spans_its_children():
    a, b = Handle(), Handle()
    both = all_of([a, b])
    b.resolve("b", at=3.0, started_at=2.0)
    assert not both.done
    a.resolve("a", at=1.0, started_at=0.5)
    assert both.value == ["a", "b"]
    assert (both.started_at, both.finished_at) == (0.5, 3.0)
    assert all_of([]).value == []


def test_all_of_fails_with_the_first_failure_and_ignores_later_news():
    a, b = Handle(), Handle()
    both = all_of([a, b])
    a.fail(ValueError("a broke"))
    b.resolve(1)
    assert isinstance(both.error, ValueError)


def test_any_of_finishes_with_the_first_and_leaves_the_others_running():
    a, b = Handle(), Handle()
    first = any_of([a, b])
    b.resolve("late one wins", at=1.0)
    a.resolve("a")
    assert first.value == (1, "late one wins")
    assert a.value == "a"
    with pytest.raises(ValueError, match="at least one handle"):
        any_of([])


def test_handles_resolved_from_other_threads_run_each_callback_once():
    handles = [Handle() for _ in range(200)]
    together = all_of(handles)
    threads = [threading.Thread(target=h.resolve, args=(i,)) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together.value == list(range(200))


def test_done_is_already_finished():
    assert done(3).value == 3 and done().done


def test_any_of_does_not_keep_its_result_alive_through_the_losers():
    import gc
    import weakref

    class Payload:
        pass

    winner, loser = Handle(), Handle()  # the loser: a timeout's timer, pending for an hour
    first = any_of([winner, loser])
    payload = Payload()
    alive = weakref.ref(payload)
    winner.resolve(payload)
    assert first.value[1] is payload
    del first, payload
    winner = None
    gc.collect()
    assert alive() is None, "the pending loser's callback still holds the result"


# -- what a handle is: fields, descriptions and span names built from them ------------------


class _Recording:
    """A transport that returns a handle for each call, as a backend does (``op=what``)."""

    def new_group(self, rank, group):
        pass

    def collective(self, rank, kind, tensor, group, op, root, algorithm, what):
        return Handle("comm", op=what)

    def send(self, rank, tensors, header, dst, what):
        return Handle("comm", op=what)

    def recv(self, rank, buffers, src, what):
        return Handle("comm", op=what)


def _comm(rank=1, world=4):
    return Communicator(rank, world, _Recording())


def test_the_communicator_fills_each_handles_fields_and_its_description_comes_from_them():
    comm = _comm()
    pair = comm.new_group([1, 3])
    cases = [
        (comm.all_reduce(torch.ones(2)), ("all_reduce", None, None, None, None), "all_reduce"),
        (
            comm.broadcast(torch.ones(2), src=3, group=pair),
            ("broadcast", (1, 3), None, 3, None),
            "broadcast on group (1, 3) (src=3)",
        ),
        (
            comm.reduce(torch.ones(2), dst=1, group=pair),
            ("reduce", (1, 3), None, 1, None),
            "reduce on group (1, 3) (dst=1)",
        ),
        (
            comm.send([torch.ones(3), torch.ones(1)], 2),
            ("send", None, 2, None, 16),
            "send to rank 2 (16 B)",
        ),
        (comm.recv(torch.ones(1), src=0), ("recv", None, 0, None, None), "recv from rank 0"),
        (comm.recv(torch.ones(1)), ("recv", None, None, None, None), "recv from any rank"),
    ]
    for handle, fields, text in cases:
        assert (handle.operation, handle.group, handle.peer, handle.root, handle.nbytes) == fields
        assert handle.describe() == text == handle.what
        assert repr(handle) == f"<Handle {text} (pending)>"


def test_span_names_come_from_the_fields_and_several_handles_say_how_many_more():
    comm = _comm(rank=0)
    sends = [comm.send(torch.ones(1), dst) for dst in (1, 2, 3)]
    several = all_of([*sends, comm.recv(torch.ones(1), src=1)])
    assert span_name(several.label, 4) == "all of [send→1; send→2; send→3 and 1 more]"
    assert several.describe() == (
        "all of [send to rank 1 (4 B); send to rank 2 (4 B); send to rank 3 (4 B) and 1 more]"
    )
    # The old parser read the description back and lost "and 1 more" of a long list.
    assert span_name(comm.reduce_scatter(torch.ones(4)).label, 4) == "reduce_scatter[0-3]"
    assert span_name(Handle("compute", "compute_gradients").label, 4) == "compute_gradients"


def test_a_chained_handle_is_described_by_its_source_and_carries_its_fields():
    comm = _comm()
    sent = comm.send(torch.ones(2), 3)
    decoded = sent.then(lambda v: v)
    assert (decoded.operation, decoded.peer, decoded.nbytes) == ("send", 3, 8)
    assert decoded.describe() == "send to rank 3 (8 B)" and decoded.label == sent.label
    # like=: a handle built from others (a timeout's race) described as the one it stands for
    raced = any_of([sent, Handle("idle", "sleep 1 s")]).then(lambda v: v, like=sent)
    assert raced.describe() == "send to rank 3 (8 B)" and raced.peer == 3
    named = sent.then(lambda v: v, what="decode")
    assert named.describe() == "decode" and named.operation is None


def test_the_simulators_notes_are_fields_and_the_description_names_them():
    op = Operation("all_reduce", (0, 1))
    assert (
        Handle(op=op, seq=2).describe()
        == "all_reduce on group (0, 1) (collective #2 of this group)"
    )
    work = Handle("compute", "compute 1 s")
    held = Handle(op=Operation("recv", peer=1), held=0, after=work)
    assert held.describe() == "recv from rank 1 (held until every rank creates group #0)"
    assert (
        Handle(op=op, after=work).describe()
        == "all_reduce on group (0, 1) (after the rank's own compute 1 s)"
    )
    assert Handle(op=op, seq=2).label == op  # a trace's name leaves the notes out


def test_a_handles_kind_is_one_of_three():
    assert set(get_args(Kind)) == {"compute", "comm", "idle"}
