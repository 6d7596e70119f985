"""Real's gradients beside communication: the compute thread alone, then through both
backends (pending at the call, computed from the parameters as they were at the call)."""

import copy
import threading
import time

import pytest
import torch
from torch import nn

import real
import topologies
from real.compute import GradientThread
from sim.run import run as sim_run
from strategies import Strategy
from strategies.replica import Replica


def linear_work(replica):
    """The gradient of one fixed batch at ``replica``'s parameters."""
    x, y = torch.ones(4, 2), torch.zeros(4, 1)
    replica.grad.zero_()
    loss = nn.functional.mse_loss(replica.model(x), y)
    loss.backward()
    return replica.grad.clone(), 4, loss.item()


def test_a_gradient_is_computed_from_the_parameters_at_the_call_not_at_its_start():
    torch.manual_seed(0)
    replica = Replica(nn.Linear(2, 1))
    start = time.monotonic()
    thread = GradientThread(lambda: time.monotonic() - start, torch.device("cpu"))
    gate = threading.Event()

    def held(r):  # holds the thread until the program has changed its parameters
        gate.wait(5)
        return linear_work(r)

    expected = linear_work(Replica(copy.deepcopy(replica.model)))[0]
    handle = thread.submit(replica, held)
    assert not handle.done  # pending at the call, as in sim
    thread.start()
    replica.load(torch.zeros(replica.numel))  # while it computes
    gate.set()
    deadline = time.monotonic() + 5
    while not handle.done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert torch.equal(handle.value, expected)
    assert handle.finished_at >= handle.started_at
    assert [samples for _, samples in thread.take_finished()] == [4]
    assert thread.take_finished() == []


def test_gradients_run_one_at_a_time_in_call_order_and_their_spans_are_booked():
    replica = Replica(nn.Linear(2, 1))
    start = time.monotonic()
    thread = GradientThread(lambda: time.monotonic() - start, torch.device("cpu"))
    order = []

    def work(tag):
        def run(r):
            order.append(tag)
            time.sleep(0.02)
            return linear_work(r)

        return run

    handles = [thread.submit(replica, work(i)) for i in range(3)]
    thread.start()
    deadline = time.monotonic() + 5
    while not all(h.done for h in handles) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert order == [0, 1, 2]
    for before, after in zip(handles, handles[1:]):
        assert after.started_at >= before.finished_at
    busy = thread.busy(0.0, handles[-1].finished_at)
    assert sum(b - a for a, b in busy) == pytest.approx(
        handles[-1].finished_at - handles[0].started_at
    )
    assert thread.busy(0.0, handles[-1].finished_at) == []  # booked once


def test_a_gradient_waited_on_first_is_computed_on_the_waiting_thread_and_only_then():
    replica = Replica(nn.Linear(2, 1))
    thread = GradientThread(time.monotonic, torch.device("cpu"))
    threads = []

    def work(r):
        threads.append(threading.get_ident())
        return linear_work(r)

    first, second = thread.submit(replica, work), thread.submit(replica, work)
    assert not thread.run_here(second)  # not the next one: it would jump the queue
    assert thread.run_here(first) and first.done
    assert threads == [threading.get_ident()]
    assert not thread.run_here(first)  # already taken
    thread.start()
    deadline = time.monotonic() + 5
    while not second.done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert second.done and threads[1] != threading.get_ident()
    assert torch.equal(first.value, second.value)


def test_a_failing_gradient_fails_its_handle():
    thread = GradientThread(time.monotonic, torch.device("cpu"))

    def broken(r):
        raise ValueError("no batch")

    handle = thread.submit(Replica(nn.Linear(2, 1)), broken)
    thread.start()
    deadline = time.monotonic() + 5
    while not handle.done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert isinstance(handle.error, ValueError)


class LoadsWhileComputing(Strategy):
    """Changes its parameters between the call and the yield: the gradient must still be the
    one at the call's parameters, in both backends."""

    name = "loads_while_computing_test_only"
    global_model = "primary"

    def worker(self, w):
        while not w.done:
            pending = w.compute_gradients()
            w.log(ready_at_call=float(pending.done))
            w.load_parameters(w.parameters() * 0.5)
            grads = yield pending
            w.apply(grads)


@pytest.mark.parametrize("backend", ["sim", "real"])
def test_a_gradient_is_pending_at_the_call_and_sees_the_parameters_of_the_call(backend):
    reference = sim_run(LoadsWhileComputing(), "quadratic", topologies.star(1), steps=4)
    if backend == "sim":
        result = reference
    else:
        result = real.run(LoadsWhileComputing(), "quadratic", nproc=1, steps=4, timeout=20)
    logs = result.metrics[result.metrics["kind"] == "log"]
    assert set(logs["ready_at_call"].dropna()) == {0.0}  # real computed at the call before
    assert torch.equal(result.parameters, reference.parameters)
    final = result.metrics[result.metrics["kind"] == "eval"]["loss"].iloc[-1]
    assert final == reference.metrics[reference.metrics["kind"] == "eval"]["loss"].iloc[-1]


def test_a_slowed_rank_waits_factor_minus_one_times_its_measured_compute():
    # real.slowdowns: a gradient started while a factor is in force waits (factor - 1) x
    # what it took, inside the gradient's span (booked as compute, as sim's slowdown is).
    replica = Replica(nn.Linear(2, 1))
    start = time.monotonic()
    thread = GradientThread(lambda: time.monotonic() - start, torch.device("cpu"))
    paused: list[float] = []
    thread.slowdown = lambda at: 4.0 if at < 1000 else 1.0
    thread.pause = paused.append

    def work(r):
        time.sleep(0.02)
        return linear_work(r)

    handle = thread.submit(replica, work)
    assert thread.run_here(handle)
    assert len(paused) == 1 and paused[0] >= 3 * 0.02  # 3 x at least the 20 ms it took
    thread.slowdown = lambda at: 1.0  # not in force: no wait at all
    assert thread.run_here(thread.submit(replica, work)) and len(paused) == 1
