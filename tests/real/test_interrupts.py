"""An interrupted or partly killed real run keeps its rows up to then, says so in one line,
and leaves no process or set-up directory behind."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import real
from strategies import ParameterServer


def _training(out: Path, timeout: float = 60.0) -> None:
    """Wait until the run has measured steps: its ranks have handed some in (the run's
    set-up directory has ranks' error files and a second has passed since)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(out.glob("commsim-real-*/0.err")):
            time.sleep(3.0)
            return
        time.sleep(0.1)
    raise AssertionError("the run never started")


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies waiting for their parent do not count)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.parametrize(
    "signum,whom,code",
    [
        (signal.SIGINT, "group", 130),  # Ctrl-C in a terminal
        (signal.SIGTERM, "launcher", 143),  # kill PID
    ],
)
def test_an_interrupted_real_run_writes_its_rows_and_says_so(tmp_path, signum, whom, code):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "real", "--strategy", "allreduce", "--workload", "quadratic"]
        + ["--nproc", "2", "--steps", "1000000", "--eval-every", "50", "--out", str(out)]
        + ["--no-progress"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    try:
        _training(scratch)
        family = _descendants(launcher.pid)  # the pool and the ranks
        assert len(family) >= 3
        if whom == "group":
            os.killpg(launcher.pid, signum)
        else:
            launcher.send_signal(signum)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == code, stderr
    said = [line for line in stderr.splitlines() if line.strip()]
    assert said[-1].startswith(f"interrupted by {signal.Signals(signum).name} after")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["summary"]["stop_reason"] == "interrupted"
    evals = pd.read_parquet(out / "metrics.parquet").query("kind == 'eval'")
    assert evals["step"].max() >= 50 and record["summary"]["steps"] >= evals["step"].max()
    assert not list(scratch.glob("commsim-real-*"))  # the set-up directory went with the run
    time.sleep(1.5)  # the pool notices its launcher is gone within a second
    assert not _alive(family)


def test_a_launcher_killed_outright_leaves_no_rank_and_no_set_up_directory(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "real", "--strategy", "allreduce", "--workload", "quadratic"]
        + ["--nproc", "2", "--steps", "1000000", "--no-progress"],
        env={**os.environ, "TMPDIR": str(scratch)},
        start_new_session=True,
    )
    family: list[int] = []
    try:
        _training(scratch)
        family = _descendants(launcher.pid)
        launcher.kill()
        launcher.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (_alive(family) or list(scratch.glob("commsim-real-*"))) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
    finally:
        for pid in _alive([launcher.pid, *family]):
            os.kill(pid, signal.SIGKILL)
    assert not _alive(family)
    assert not list(scratch.glob("commsim-real-*"))


class ServerSaysWhenTraining(ParameterServer):
    """An asynchronous parameter server that leaves a file once it has applied 20 updates."""

    name = "server_says_when_training_test_only"

    def __init__(self, marker: str = "") -> None:
        super().__init__(mode="async")
        self.marker = marker

    def server(self, s):
        program, value = super().server(s), None
        while True:
            try:
                item = program.send(value)
            except StopIteration:  # the server saw the stop (s.done) and ended
                return
            if s.step == 20 and not os.path.exists(self.marker):
                Path(self.marker).write_text("")
            value = yield item


def _signal_rank_once_training(marker: Path, rank: int, signum: int, after: float) -> list[int]:
    """Start a thread that, once ``marker`` exists and ``after`` seconds more have passed,
    sends ``signum`` to rank ``rank`` of this test's run (found by its stderr file); the
    list fills with the pids signalled."""
    signalled: list[int] = []

    def send() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(after)
        for pid in _descendants(os.getpid()):
            try:
                if os.readlink(f"/proc/{pid}/fd/2").endswith(f"/{rank}.err"):
                    os.kill(pid, signum)
                    signalled.append(pid)
            except OSError:
                continue

    threading.Thread(target=send, daemon=True).start()
    return signalled


def _run_server_until_stopped(marker: Path, out: Path) -> None:
    real.run(
        ServerSaysWhenTraining(str(marker)),
        "quadratic",
        nproc=3,
        steps=1_000_000,
        eval_every=5,
        out=out,
        timeout=60,
    )


def test_a_killed_server_rank_keeps_the_steps_it_measured(tmp_path):
    """The server owns the global model; killed outright, it hands in nothing at its end, but
    what it handed in as it went is kept."""
    marker, out = tmp_path / "training", tmp_path / "run"
    # More than the hand-in period after step 20.
    killed = _signal_rank_once_training(marker, 0, signal.SIGKILL, after=2.0)
    with pytest.raises(RuntimeError, match="rank 0 failed: process ended with signal 9"):
        _run_server_until_stopped(marker, out)
    assert killed
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed"
    evals = pd.read_parquet(out / "metrics.parquet").query("kind == 'eval'")
    assert {0, 5, 10, 15, 20} <= set(evals["step"])


def test_a_rank_terminated_alone_stops_the_run_as_interrupted(tmp_path):
    """SIGTERM to one rank (a scheduler preempting it): that rank stops the run at its next
    yield, every rank hands in, and the run is written as interrupted."""
    marker, out = tmp_path / "training", tmp_path / "run"
    _signal_rank_once_training(marker, 1, signal.SIGTERM, after=0.0)
    with pytest.raises(real.RunInterrupted, match="a rank was interrupted after"):
        _run_server_until_stopped(marker, out)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["summary"]["steps"] >= 20


def test_an_interrupted_run_with_faults_keeps_the_rows_after_its_crash(tmp_path):
    # The launcher's own fault events (the crash it recorded, the restart it made) go into
    # the replay of an interrupted run too: without them the global step waited on the dead
    # owner and every row after the crash was lost.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "run"
    faults = tmp_path / "faults.toml"
    faults.write_text(
        'detect = "1s"\n[[events]]\nkind = "crash"\nrank = 1\nstep = 3\nrestart_step = 6\n'
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "real", "--strategy", "allreduce:fault_tolerance=quorum"]
        + ["--workload", "quadratic", "--nproc", "2", "--steps", "1000000"]
        + ["--eval-every", "5", "--faults", str(faults), "--out", str(out), "--no-progress"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _training(scratch)
        time.sleep(3.0)  # past the crash, the restart and some steps after it
        os.killpg(launcher.pid, signal.SIGINT)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, stderr
    rows = pd.read_parquet(out / "metrics.parquet")
    events = list(rows.loc[rows["kind"] == "fault", "event"])
    assert events[0] == "crash" and "restart" in events, events
    assert rows.loc[rows["kind"] == "step", "step"].max() > 6
    assert not list(scratch.glob("commsim-real-*"))
