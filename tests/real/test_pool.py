"""The warm rank pool: ranks forked with torch imported, reused across runs, restarted when
it ends, printing to the launcher's stdout, and dying with the launcher."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import cloudpickle

import real
from real.pool import shared_pool
from strategies import Strategy


class Parents(Strategy):
    """Records each rank's process and its parent (the pool) in a file."""

    name = "parents_test_only"

    def __init__(self, path):
        super().__init__(path=str(path))
        self.path = path

    def worker(self, w):
        with open(f"{self.path}.{w.rank}", "w") as f:
            f.write(f"{os.getpid()} {os.getppid()}")
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.all_reduce(grads, op="mean")
            w.apply(grads)


def parents(path, nproc=2):
    return [tuple(map(int, open(f"{path}.{r}").read().split())) for r in range(nproc)]


def test_ranks_are_forked_by_one_pool_reused_across_runs_and_restarted_when_it_ends(tmp_path):
    real.run(Parents(tmp_path / "a"), "quadratic", nproc=2, steps=2, timeout=30)
    real.run(Parents(tmp_path / "b"), "quadratic", nproc=2, steps=2, timeout=30)
    first, second = parents(tmp_path / "a"), parents(tmp_path / "b")
    pools = {parent for _, parent in first + second}
    assert len(pools) == 1 and pools != {os.getpid()}
    os.kill(pools.pop(), signal.SIGKILL)
    time.sleep(0.2)
    result = real.run(Parents(tmp_path / "c"), "quadratic", nproc=2, steps=2, timeout=30)
    assert result.summary["steps"] == 2
    assert parents(tmp_path / "c")[0][1] == shared_pool()._process.pid


SCRIPT = """
import real
from strategies import Strategy

class Sleeper(Strategy):
    name = "sleeper_from_main"

    def worker(self, w):
        import os
        os.write(1, f"rank {w.rank} says hello\\n".encode())  # one write: lines stay whole
        open(os.environ["MARKER"] + f".{w.rank}", "w").write(f"{os.getpid()} {os.getppid()}")
        yield w.sleep(120)

real.run(Sleeper(), "quadratic", nproc=2, steps=1, timeout=300)
"""


def test_ranks_print_to_the_launchers_stdout_and_die_with_it(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent(SCRIPT))
    marker = tmp_path / "pids"
    env = {**os.environ, "MARKER": str(marker)}  # the ranks see the launcher's environment
    launcher = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not all(os.path.exists(f"{marker}.{r}") for r in range(2)):
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.05)
        time.sleep(0.2)  # the files are written: their contents too
        pids = parents(marker)
    finally:
        launcher.kill()
        out, _ = launcher.communicate(timeout=30)
    assert "rank 0 says hello" in out and "rank 1 says hello" in out
    deadline = time.monotonic() + 10
    alive = [p for pair in pids for p in pair]
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.05)
    assert not alive, f"processes {alive} outlived their launcher"


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_pool_started_from_a_thread_outlives_that_thread(tmp_path):
    import threading

    from real import pool as pool_module

    pool_module._POOL = None  # the next run starts one, from the thread below
    done = []
    thread = threading.Thread(
        target=lambda: done.append(real.run("allreduce", "quadratic", nproc=2, steps=1))
    )
    thread.start()
    thread.join()
    assert done and shared_pool().alive
    time.sleep(1.5)  # the pool checks its launcher once a second
    assert shared_pool().alive
    assert real.run("allreduce", "quadratic", nproc=2, steps=1).summary["steps"] == 1


class ReadsHere(Strategy):
    """Reads a file by a relative path: the ranks must work where the launcher is now.

    The global model is the average (the default), so the run stops only once both ranks
    applied their step, after each logged what it read: with ``"primary"`` a rank forked late
    under load logged after rank 0's step had stopped the run, and its row was dropped."""

    name = "reads_here_test_only"

    def worker(self, w):
        with open("here.txt") as f:
            w.log(found=float(f.read()))
        grads = yield w.compute_gradients()
        w.apply(grads)


def test_ranks_work_in_the_launchers_current_directory(tmp_path, monkeypatch):
    shared_pool()  # started elsewhere, before the change of directory
    (tmp_path / "here.txt").write_text("7")
    monkeypatch.chdir(tmp_path)
    # This test module imports from the checkout only: send its class by value, as
    # cloudpickle sends a script's or a notebook's.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        result = real.run(ReadsHere(), "quadratic", nproc=2, steps=1)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert list(result.logs["found"]) == [7.0, 7.0]


def test_the_pool_is_replaced_when_commsims_sources_change(monkeypatch):
    from real import pool as pool_module

    first = shared_pool()
    monkeypatch.setattr(pool_module, "_sources_stamp", lambda: first.sources + 1)
    second = shared_pool()
    assert second is not first and second.alive and not first.alive  # the idle one ended


def test_a_forked_process_starts_its_own_pool_and_leaves_its_parents_alone():
    """A sweep's worker is forked from a process that may hold a pool: the pool's pipes are
    the parent's, so the child starts its own and never closes the parent's."""
    import os

    from real import pool as pools

    parent = pools.shared_pool()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, then leave without running atexit handlers
        ok = 0
        try:
            mine = pools.shared_pool()
            parent.close()  # must not touch the parent's pool
            ok = int(mine is not parent and mine.owner == os.getpid() and mine.alive)
            mine.close()
        finally:
            os.write(write, bytes([ok]))
            os._exit(0)
    os.close(write)
    said = os.read(read, 1)
    os.waitpid(child, 0)
    assert said == b"\x01"
    assert parent.alive and pools.shared_pool() is parent
