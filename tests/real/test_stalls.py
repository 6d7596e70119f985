"""A stalled rank (SIGSTOP) is reported within seconds by its heartbeat, naming it, instead of
at the collective timeout; an asynchronous parameter server goes on serving the other workers
meanwhile. Each test stops rank 1 once it trains and always kills it in the end."""

import os
import signal
import threading
import time

import pandas as pd
import pytest

import real
from strategies import AllReduceSGD, ParameterServer

SILENCE = 3.0  # seconds without a heartbeat before a rank others wait on is reported
TIMEOUT = 120.0  # the collective timeout: before this work, the only way a stall was found


class Tells:
    """Rank 1 writes its pid to ``pid_file`` at ``version`` (training, past start-up); with
    ``stop``, it then stops itself (SIGSTOP) right after it has sent what it yields there."""

    def __init__(self, *args, pid_file, version=3, stop=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pid_file, self.at, self.stop = str(pid_file), version, stop

    def worker(self, w):
        program, value, told = super().worker(w), None, False
        while True:
            item = program.send(value)
            sent = getattr(item, "kind", None) == "comm"  # a collective, or a push and pull
            if w.rank == 1 and w.version >= self.at and sent and not told:
                told = True
                with open(self.pid_file + ".tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.replace(self.pid_file + ".tmp", self.pid_file)
                if self.stop:  # at once: its push's envelope is out, its payload waits
                    os.kill(os.getpid(), signal.SIGSTOP)
            value = yield item


class TellingAllReduce(Tells, AllReduceSGD):
    name = "telling_allreduce_test_only"


class TellingServer(Tells, ParameterServer):
    name = "telling_parameter_server_test_only"


def _run(strategy, pid_file, stop_when_told, **kwargs):
    """``real.run`` on 3 ranks in a thread; stop rank 1 once it told its pid (if asked);
    the run's outcome (its error, or None). Rank 1 is always killed at the end."""
    outcome = {}

    def run():
        try:
            real.run(strategy, "quadratic", nproc=3, timeout=TIMEOUT, silence=SILENCE, **kwargs)
            outcome["error"] = None
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    pid = None
    try:
        while pid is None and thread.is_alive():
            if pid_file.exists():
                pid = int(pid_file.read_text())
            time.sleep(0.05)
        if stop_when_told and pid is not None:
            os.kill(pid, signal.SIGSTOP)
        thread.join(TIMEOUT + 60)  # a bound on a hang, not a timing assertion
    finally:
        if pid is not None:
            for end in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, end)
                except ProcessLookupError:
                    pass
        thread.join(30)
    assert not thread.is_alive(), "the run did not end"
    return outcome["error"]


def test_a_stopped_rank_of_a_synchronous_run_is_named_by_its_silence(tmp_path):
    pid_file = tmp_path / "rank1.pid"
    error = _run(TellingAllReduce(pid_file=pid_file), pid_file, True, steps=10**6, eval_every=10**6)
    assert isinstance(error, RuntimeError)
    assert str(error).startswith(
        f"rank 1 stopped responding: no heartbeat for {SILENCE:g} s (stopped, hung, or cut off"
    )
    assert "waited on all_reduce" in str(error)


def test_an_asynchronous_server_goes_on_without_a_stopped_worker(tmp_path):
    # Worker 1 stops itself just after sending a push: the server has its envelope, and gloo
    # moves the payload of a receive posted after the send only with the sender's help. The
    # server took that envelope for its receive from any rank and froze; it must take worker
    # 2's pushes instead, train to the end, and then name the stalled worker.
    pid_file = tmp_path / "rank1.pid"
    strategy = TellingServer(mode="async", pid_file=pid_file, stop=True)
    error = _run(strategy, pid_file, False, steps=60, eval_every=20, out=tmp_path / "run")
    assert isinstance(error, RuntimeError)
    assert str(error).startswith(f"rank 1 stopped responding: no heartbeat for {SILENCE:g} s")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert list(metrics[metrics["kind"] == "eval"]["step"]) == [0, 20, 40, 60]


@pytest.mark.parametrize("silence", [0, 1.5, float("nan"), "10"])
def test_silence_is_refused_in_one_line_when_too_short(silence):
    with pytest.raises(ValueError, match=r"^silence=.* must be at least 2 seconds") as err:
        real.run("allreduce", "quadratic", nproc=2, steps=2, silence=silence)
    assert "\n" not in str(err.value)
