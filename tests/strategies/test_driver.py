"""The one program driver: its rules alone, then the same rules seen through both backends."""

import re
from pathlib import Path

import pytest
import torch

import real
import topologies
from sim.run import run as sim_run
from strategies import Strategy
from strategies.driver import ProgramDriver
from strategies.handles import Handle, done


def drive_plain(program, stopped=lambda: False):
    """Advance ``program`` to its end, each handle already finished."""
    driver = ProgramDriver(program, rank=3, role="worker", stopped=stopped)
    item = driver.advance()
    while isinstance(item, Handle):
        item = driver.resume(item)
    return item


def test_a_program_gets_each_value_and_finishes():
    seen = []

    def program():
        seen.append((yield done(1)))
        seen.append((yield done(2)))

    assert drive_plain(program()) == "finished"
    assert seen == [1, 2]


def test_a_failed_handle_is_thrown_in_at_the_yield():
    failed: Handle[None] = Handle("comm", "recv from rank 1")
    failed.fail(ValueError("lost"))
    caught = []

    def program():
        try:
            yield failed
        except ValueError as exc:
            caught.append(str(exc))

    assert drive_plain(program()) == "finished"
    assert caught == ["lost"]


def test_a_value_that_is_not_a_handle_closes_the_program_and_names_its_line():
    closed = []

    def program():
        try:
            yield 42
        finally:
            closed.append(True)

    driver = ProgramDriver(program(), rank=3, role="worker", stopped=lambda: False)
    with pytest.raises(TypeError) as err:
        driver.advance()
    assert str(err.value).startswith("rank 3's worker program yielded a int at test_driver.py:")
    assert closed == [True]
    assert driver.ended == "finished"


def test_a_stopped_run_closes_the_program_at_its_yield_without_resuming_it():
    stop = [False]
    events = []

    def program():
        try:
            yield done(1)
            events.append("resumed")
        except GeneratorExit:
            events.append("closed")
            raise

    driver = ProgramDriver(program(), rank=0, role="worker", stopped=lambda: stop[0])
    item = driver.advance()
    stop[0] = True
    assert driver.resume(item) == "stopped"
    assert events == ["closed"]
    assert driver.advance() == "stopped"  # it stays ended


def test_a_finally_that_yields_after_the_stop_is_one_line_error():
    def program():
        try:
            yield done(1)
        finally:
            yield done(2)

    driver = ProgramDriver(program(), rank=1, role="server", stopped=lambda: True)
    driver.program.send(None)  # at its first yield
    with pytest.raises(RuntimeError, match="rank 1's server program yielded again while being"):
        driver.advance()


# -- the same rules through both backends ---------------------------------------------------
def run_on(backend, strategy, steps):
    if backend == "sim":
        return sim_run(strategy, "quadratic", topologies.star(2), steps=steps)
    return real.run(strategy, "quadratic", nproc=2, steps=steps, timeout=20)


class YieldsANumberThenCleansUp(Strategy):
    name = "yields_a_number_driver_test_only"

    def __init__(self, marker: str = "") -> None:
        super().__init__(marker=marker)

    def worker(self, w):
        try:
            yield w.compute_gradients()
            yield 42  # not a handle
        finally:
            Path(self.options["marker"], str(w.rank)).write_text("closed")


@pytest.mark.parametrize("backend", ["sim", "real"])
def test_a_program_yielding_a_number_is_closed_and_named_the_same_way(backend, tmp_path):
    with pytest.raises((TypeError, RuntimeError)) as err:
        run_on(backend, YieldsANumberThenCleansUp(str(tmp_path)), steps=2)
    message = str(err.value)
    assert "\n" not in message
    found = re.search(r"rank (\d)'s worker program yielded a int at test_driver.py:\d+; ", message)
    assert found, message
    if backend == "real":  # the rank's own error, as the launcher reports it
        assert message.startswith(f"rank {found[1]} failed: TypeError: ")
    # Its finally block ran (the program was closed) before the error left the rank.
    assert (tmp_path / found[1]).read_text() == "closed"


class IgnoresTheStop(Strategy):
    """Loops without reading ``w.done``: only the driver's stop at a yield ends it."""

    name = "ignores_the_stop_driver_test_only"

    def __init__(self, marker: str = "") -> None:
        super().__init__(marker=marker)

    def worker(self, w):
        try:
            while True:
                grads = yield w.compute_gradients()
                grads = yield w.comm.all_reduce(grads, op="mean")
                w.apply(grads)
        except GeneratorExit:
            Path(self.options["marker"], str(w.rank)).write_text(f"closed at step {w.step}")
            raise


@pytest.mark.parametrize("backend", ["sim", "real"])
def test_a_stop_closes_every_program_at_its_yield_after_the_last_step(backend, tmp_path):
    result = run_on(backend, IgnoresTheStop(str(tmp_path)), steps=3)
    assert result.summary["stop_reason"] == "steps"
    for rank in (0, 1):
        assert (tmp_path / str(rank)).read_text() == "closed at step 3"
    assert torch.is_tensor(result.parameters)


class YieldsFinishedHandles(Strategy):
    """After each step, yields a handle that is already finished: a driver that resumed a
    program past such a yield after the stop let it run on (sim did, sending the replies of
    an asynchronous server after the stop); the one rule closes it there."""

    name = "yields_finished_handles_driver_test_only"

    def __init__(self, marker: str = "") -> None:
        super().__init__(marker=marker)

    def worker(self, w):
        seen_stopped = 0
        try:
            while True:
                grads = yield w.compute_gradients()
                w.apply(grads)
                yield done(what="finished at once")
                seen_stopped += w.done
        finally:
            Path(self.options["marker"], "seen").write_text(f"{w.step} {seen_stopped}")


@pytest.mark.parametrize("backend", ["sim", "real"])
def test_a_program_is_not_resumed_after_the_stop_even_past_a_finished_handle(backend, tmp_path):
    strategy = YieldsFinishedHandles(str(tmp_path))
    if backend == "sim":
        sim_run(strategy, "quadratic", topologies.star(1), steps=3)
    else:
        real.run(strategy, "quadratic", nproc=1, steps=3, timeout=20)
    assert (tmp_path / "seen").read_text() == "3 0"
