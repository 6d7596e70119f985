"""The strategy contract on real processes: the same errors as sim, failures at the yield,
strategies defined in ``__main__``, and real causes instead of signals."""

import subprocess
import sys
import textwrap

import pytest
import torch

import real
import topologies
from sim.run import SimulationError
from sim.run import run as sim_run
from strategies import CommTimeout, Strategy
from strategies.comm import CommError
from studies.conformance import check


def one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


class SendThenReceiveRing(Strategy):
    """Finding 3: the natural-looking blocking ring exchange."""

    name = "send_then_receive_ring_test_only"

    def worker(self, w):
        right, left = (w.rank + 1) % w.world_size, (w.rank - 1) % w.world_size
        while not w.done:
            yield w.comm.send(w.parameters(), dst=right)
            yield w.comm.recv(torch.empty(w.numel), src=left)


def test_a_blocking_ring_exchange_deadlocks_on_both_backends_and_each_names_the_wait():
    with pytest.raises(SimulationError, match="rank 0 waits on send to rank 1"):
        sim_run(SendThenReceiveRing(), "quadratic", topologies.star(3), steps=2)
    with pytest.raises(RuntimeError) as err:
        real.run(SendThenReceiveRing(), "quadratic", nproc=3, steps=2, timeout=3)
    message = one_line(err)
    # Whichever rank gives up first names its own wait, not another rank's.
    rank = int(message.split()[1])
    assert f"rank {rank} failed: CommTimeout: rank {rank} waited 3 s on send to rank " in message
    assert f"rank {(rank + 1) % 3}" in message


class OutsideItsGroup(Strategy):
    """Finding 6: a collective on a group the rank is not in."""

    name = "outside_its_group_test_only"

    def worker(self, w):
        pair = w.comm.new_group([1, 2])
        yield w.comm.all_reduce(torch.ones(1), group=pair)


def test_a_collective_outside_its_group_is_the_same_commerror_on_both_backends():
    expected = "rank 0 called all_reduce on a group it is not in: (1, 2)"
    with pytest.raises(CommError) as err:
        sim_run(OutsideItsGroup(), "quadratic", topologies.star(3), steps=1)
    assert one_line(err) == expected
    with pytest.raises(RuntimeError) as err:
        real.run(OutsideItsGroup(), "quadratic", nproc=3, steps=1, timeout=20)
    assert one_line(err).startswith(f"rank 0 failed: CommError: {expected} (at test_contract.py:")


class GivesUpThenWaits(Strategy):
    """Finding 7: a timeout reaches the program at its yield in both backends."""

    name = "gives_up_then_waits_test_only"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            yield w.sleep(1.0)
            yield w.comm.send(torch.ones(2), dst=1, header={"n": 7})
            return
        pending = w.comm.recv(torch.empty(2), src=0)
        try:
            yield w.timeout(pending, 0.3)
        except CommTimeout:
            w.log(timed_out_at=w.now)
        _, (value,), header = yield pending
        w.log(received_at=w.now, value=float(value.sum()), n=header["n"])


def test_a_timeout_is_caught_by_the_program_on_both_backends():
    simulated = sim_run(GivesUpThenWaits(), "quadratic", topologies.star(2), steps=1)
    measured = real.run(GivesUpThenWaits(), "quadratic", nproc=2, steps=1, timeout=20)
    for result in (simulated, measured):
        logs = result.logs.set_index("rank")
        assert 0.3 <= logs["timed_out_at"].dropna().iloc[0] < 1.0
        received = logs.dropna(subset=["received_at"]).iloc[0]
        assert received["received_at"] >= 1.0
        assert (received["value"], received["n"]) == (2.0, 7.0)


class ForgetsTheYield(Strategy):
    name = "forgets_yield_real_test_only"

    def worker(self, w):
        grads = yield w.compute_gradients()
        w.apply(w.comm.all_reduce(grads, op="mean"))


def test_a_forgotten_yield_on_real_says_so_in_one_line():
    with pytest.raises(RuntimeError) as err:
        real.run(ForgetsTheYield(), "quadratic", nproc=2, steps=2, timeout=20)
    assert "failed: TypeError: w.apply(grads) got a handle" in one_line(err)


class MismatchedSizes(Strategy):
    """Finding 8: ranks all-reduce tensors of different sizes."""

    name = "mismatched_sizes_test_only"

    def worker(self, w):
        yield w.comm.all_reduce(torch.ones(3 + 100 * w.rank))


def test_a_size_mismatch_names_the_cause_on_both_backends():
    with pytest.raises(CommError, match="rank 1 passed a .*every rank must pass the same shape"):
        sim_run(MismatchedSizes(), "quadratic", topologies.star(2), steps=1)
    with pytest.raises(RuntimeError) as err:
        real.run(MismatchedSizes(), "quadratic", nproc=2, steps=1, timeout=20)
    message = one_line(err)
    # gloo's own words, not "terminated with signal SIGABRT"
    assert "failed:" in message and "size" in message.lower(), message


def test_a_strategy_defined_in_an_unguarded_script_runs_on_real(tmp_path):
    # Finding 8: a class in __main__ (a script, or a notebook cell) travels by value.
    script = tmp_path / "my_study.py"
    script.write_text(
        textwrap.dedent(
            """
            import real
            from strategies import Strategy

            class Mine(Strategy):
                name = "mine_from_main"

                def worker(self, w):
                    while not w.done:
                        grads = yield w.compute_gradients()
                        grads = yield w.comm.all_reduce(grads, op="mean")
                        w.apply(grads)

            result = real.run(Mine(), "quadratic", nproc=2, steps=3, timeout=30)
            print("steps", result.summary["steps"])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "steps 3" in done.stdout


class ReducesToRoot(Strategy):
    """Each worker applies what reduce leaves in its buffer: the root the mean, the others
    their own gradient (gloo would leave partial sums there; the contract says unchanged)."""

    name = "reduces_to_root_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.reduce(grads, dst=0, op="mean")
            w.apply(grads)


def test_reduce_leaves_the_other_ranks_tensors_unchanged_on_both_backends():
    check(ReducesToRoot(), "quadratic", world_size=3, steps=4).raise_for_differences()


class TwoApplies(Strategy):
    """Yields an old, finished handle between two steps: real must not stamp the second
    step before the first."""

    name = "two_applies_test_only"
    global_model = "primary"

    def worker(self, w):
        previous = None
        while not w.done:
            handle = w.compute_gradients()
            grads = yield handle
            w.apply(grads)
            if previous is not None:
                yield previous
                w.apply(grads)
            previous = handle


class LoadsAfterItsStep(Strategy):
    """An owner loads parameters after its step while a slower owner has not got there: the
    global model at that step is the states right after the step, in both backends."""

    name = "loads_after_its_step_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            if w.rank == 1:
                yield w.sleep(0.05)
            w.apply(grads)
            if w.rank == 0:
                w.load_parameters(torch.zeros(w.numel))
            yield w.comm.barrier()


class EndsUnevenly(Strategy):
    """Programs end by themselves before `steps`, the owners at different step counts."""

    name = "ends_unevenly_test_only"

    def worker(self, w):
        for _ in range(3 if w.rank == 0 else 5):
            grads = yield w.compute_gradients()
            w.apply(grads)


class AnyThenSpecific(Strategy):
    """A receive from any rank posted before one from rank 1: the first message from rank 1
    goes to the specific receive, as gloo matches (sim used to give it to the first posted)."""

    name = "any_then_specific_test_only"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            first = w.comm.recv(torch.zeros(1), src=None)
            second = w.comm.recv(torch.zeros(1), src=1)
            got_any, got_specific = yield w.comm.wait_all([first, second])
            w.log(any_got=got_any.header["n"], specific_got=got_specific.header["n"])
        else:
            yield w.sleep(1.0)  # rank 0 posts both receives first, even on a loaded machine
            one = w.comm.send(torch.ones(1), 0, header={"n": 1})
            two = w.comm.send(torch.ones(1), 0, header={"n": 2})
            yield w.comm.wait_all([one, two])


@pytest.mark.parametrize(
    "strategy,world_size,steps,eval_every",
    [
        (TwoApplies(), 1, 6, 1),
        (LoadsAfterItsStep(), 2, 3, 1),
        (EndsUnevenly(), 2, 10, 10),
    ],
    ids=["old-handle", "load-after-step", "ends-unevenly"],
)
def test_review_cases_conform(strategy, world_size, steps, eval_every):
    report = check(strategy, "quadratic", world_size=world_size, steps=steps, eval_every=eval_every)
    report.raise_for_differences()
    assert report.real.parameters is not None


def test_a_receive_for_the_sender_is_matched_before_a_receive_from_any_rank():
    simulated = sim_run(AnyThenSpecific(), "quadratic", topologies.star(2), steps=1)
    measured = real.run(AnyThenSpecific(), "quadratic", nproc=2, steps=1, timeout=20)
    for result in (simulated, measured):
        row = result.logs.iloc[0]
        assert (row["any_got"], row["specific_got"]) == (2.0, 1.0)


class SleepsLongerThanTheTimeout(Strategy):
    name = "sleeps_long_test_only"
    global_model = "primary"

    def worker(self, w):
        yield w.sleep(2.5)  # the per-operation timeout bounds waits on peers, not sleeps
        grads = yield w.compute_gradients()
        w.apply(grads)


def test_a_sleep_may_outlast_the_timeout_for_operations():
    result = real.run(SleepsLongerThanTheTimeout(), "quadratic", nproc=2, steps=1, timeout=1.5)
    assert result.summary["steps"] == 1


class WaitsInFinally(Strategy):
    name = "waits_in_finally_real_test_only"

    def worker(self, w):
        try:
            while not w.done:
                grads = yield w.compute_gradients()
                grads = yield w.comm.all_reduce(grads, op="mean")
                w.apply(grads)
                # The stop reaches real ranks a moment after the last step: wait here for
                # it, so the program is closed at a yield (a rank that saw w.done at the
                # loop's top would leave it normally, and its barrier would complete).
                yield w.sleep(2.0)
        finally:
            yield w.comm.barrier()


def test_a_finally_that_waits_after_the_stop_is_the_same_error_on_real():
    with pytest.raises(RuntimeError) as err:
        real.run(WaitsInFinally(), "quadratic", nproc=2, steps=2, timeout=20)
    message = one_line(err)
    assert "program yielded again while being closed at test_contract.py:" in message
