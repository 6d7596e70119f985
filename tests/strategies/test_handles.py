"""The one handle type: resolution, failures, and composition, against plain expectations."""

import threading

import pytest

from strategies.handles import Handle, all_of, any_of, done


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
