"""The strategy contract where only real processes can show it: deadlocks and timeouts named,
strategies defined in ``__main__``, real causes instead of signals, review cases through the
conformance kit. Rules that hold in every backend are asserted once, parametrized over the
backend, in ``tests/strategies/test_contract.py``."""

import subprocess
import sys
import textwrap

import pytest
import torch

import real
import topologies
from sim.run import SimulationError
from sim.run import run as sim_run
from strategies import Strategy
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
