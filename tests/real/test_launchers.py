"""The same rank code under real launchers: torchrun with two "nodes" on this machine, torchrun
with several processes on one node, and srun's environment; rank 0 writes the run, whose
numbers are the simulator's. A rank that dies stops the others, naming it.

Each test starts real launcher processes (a torch import each), so there are few of them.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim
import topologies

ROOT = Path(__file__).resolve().parents[2]
RUN = ["--workload", "quadratic", "--steps", "6", "--eval-every", "2", "--no-progress"]
RUN += ["--optimizer", "sgd:lr=0.1", "--timeout", "60"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "real"]


def _finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out))
    return results


def _simulated_losses(strategy, world_size: int) -> list[float]:
    graph = topologies.star(world_size)
    result = sim.run(
        strategy, "quadratic", graph, steps=6, eval_every=2, optimizer={"name": "sgd", "lr": 0.1}
    )
    return list(result.evals["loss"])


def _written_losses(out: Path) -> list[float]:
    metrics = pd.read_parquet(out / "metrics.parquet")
    return list(metrics[metrics["kind"] == "eval"]["loss"])


def test_torchrun_two_nodes_on_localhost_write_the_simulators_numbers(tmp_path):
    port, out = _port(), tmp_path / "run"
    common = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d"]
    common += [f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=commsim-test"]
    args = ["--strategy", "allreduce", *RUN, "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*_torchrun(*common, f"--node-rank={node}"), *args],
            env=_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in range(2)
    ]
    for code, output in _finish(procs):
        assert code == 0, output[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["world_size"] == 2
    assert _written_losses(out) == pytest.approx(_simulated_losses("allreduce", 2), rel=1e-5)


def test_torchrun_several_processes_per_node_run_a_server_strategy_to_its_target(tmp_path):
    """Three processes on one node: a synchronous parameter server (rank 0 serves) whose
    pushes arrive through the portable receive, with the simulator's numbers; rank 0 watches
    the target loss and stops the ranks at the evaluation sim stops at, far short of --steps.
    (One torchrun start for both: each start costs a torch import a process.)"""
    out, many = tmp_path / "run", 100_000
    command = _torchrun("--standalone", "--nproc-per-node=3")
    command += ["--strategy", "parameter_server:mode=sync", "--workload", "quadratic"]
    command += ["--steps", str(many), "--eval-every", "2", "--target-loss", "0.45"]
    command += ["--no-progress", "--optimizer", "sgd:lr=0.1", "--timeout", "60", "--out", str(out)]
    ((code, output),) = _finish(
        [
            subprocess.Popen(
                command,
                env=_env(),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        ]
    )
    assert code == 0, output[-3000:]
    from strategies import ParameterServer

    simulated = sim.run(
        ParameterServer(mode="sync"),
        "quadratic",
        topologies.star(3),
        steps=many,
        eval_every=2,
        target_loss=0.45,
        optimizer={"name": "sgd", "lr": 0.1},
    )
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["stop_reason"] == simulated.summary["stop_reason"] == "target_loss"
    # quadratic: the loss is 0.485 at step 6 and 0.387 at step 8.
    assert record["summary"]["steps"] == simulated.summary["steps"] == 8
    assert record["config"]["target_loss"] == 0.45
    expected = list(simulated.evals["loss"])
    assert _written_losses(out) == pytest.approx(expected, rel=1e-5)


def _processes_mentioning(text: str) -> list[int]:
    """The live processes whose command line mentions ``text`` (from /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


RESTART = {"recovery": "restart", "checkpoint_every": 3, "detect": 1.0}
RESTART["events"] = [{"kind": "crash", "rank": 1, "step": 5}]


def test_torchrun_restarts_every_worker_from_the_checkpoint_as_the_local_launcher_does(tmp_path):
    """Rank 1 kills itself at step 5; torchrun's agent restarts both workers (its own
    restart, --max-restarts), which load the step-3 checkpoint from the run directory and go
    on; rank 0 of the restart writes the run, with the rows before the crash: the same
    committed steps, failures, restarts, lost steps and samples, fault rows and losses as
    the local launcher and sim."""
    import real
    from faults import FaultSchedule

    out, schedule = tmp_path / "run", tmp_path / "faults.json"
    schedule.write_text(json.dumps(RESTART))
    args = ["--optimizer", "sgd:lr=0.05,momentum=0.9", "--faults", str(schedule)]
    command = _torchrun("--standalone", "--nproc-per-node=2", "--max-restarts=1")
    command += ["--strategy", "allreduce", "--workload", "quadratic", "--steps", "6"]
    command += ["--eval-every", "2", "--no-progress", "--timeout", "60", *args, "--out", str(out)]
    done = subprocess.run(
        command, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert not _processes_mentioning(str(tmp_path))  # no worker outlives torchrun
    assert not (out / "restart").exists()  # the checkpoints go with the run
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished"
    recorded = FaultSchedule.parse(record["config"]["faults"], world_size=2, links=None, steps=6)
    assert recorded == FaultSchedule.parse(RESTART, world_size=2, links=None, steps=6)
    kw = dict(steps=6, eval_every=2, optimizer="sgd:lr=0.05,momentum=0.9", faults=RESTART)
    local = real.run("allreduce", "quadratic", nproc=2, timeout=60, **kw)
    simulated = sim.run("allreduce", "quadratic", topologies.star(2), **kw)
    keys = ("steps", "failures", "restarts", "lost_steps", "lost_samples", "final_loss")
    expected = [simulated.summary[k] for k in keys]
    assert [record["summary"][k] for k in keys] == [local.summary[k] for k in keys] == expected
    assert expected[:4] == [6, 1, 1, 2]  # steps 4 and 5 run twice
    metrics = pd.read_parquet(out / "metrics.parquet")

    def rows(frame: pd.DataFrame, kind: str, *columns: str) -> list[tuple]:
        return list(frame[frame["kind"] == kind][list(columns)].itertuples(index=False))

    faults = rows(metrics, "fault", "step", "rank", "event")
    assert faults == rows(simulated.metrics, "fault", "step", "rank", "event")
    assert [tuple(row) for row in faults] == [(5, 1, "crash"), (5, 1, "restart")]
    # Every evaluation, the ones before the crash (handed in by the killed workers) too.
    assert rows(metrics, "eval", "step", "loss") == rows(simulated.metrics, "eval", "step", "loss")


def _srun(rank: int, world: int, port: int, args: list[str], cwd: Path) -> subprocess.Popen:
    env = _env()
    env.update(
        {
            "SLURM_PROCID": str(rank),
            "SLURM_NTASKS": str(world),
            "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0",
            "SLURM_NTASKS_PER_NODE": str(world),
            "SLURM_STEP_NODELIST": "localhost",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "real", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_srun_environment_runs_with_rank_0_hosting_the_store(tmp_path):
    port, out = _port(), tmp_path / "run"
    args = ["--strategy", "local_sgd:period=2", *RUN, "--out", str(out)]
    results = _finish([_srun(rank, 2, port, args, tmp_path) for rank in range(2)])
    for code, output in results:
        assert code == 0, output[-3000:]
    from strategies import LocalSGD

    assert _written_losses(out) == pytest.approx(_simulated_losses(LocalSGD(period=2), 2), rel=1e-5)


DIES = """
import os
from strategies import AllReduceSGD, register

@register
class DiesAtStep3(AllReduceSGD):
    name = "dies_at_step_3_test_only"

    def worker(self, w):
        program, value = super().worker(w), None
        while True:
            item = program.send(value)
            if w.rank == 1 and w.step == 3:
                os._exit(7)  # no exception, no goodbye: as a crash or the OOM killer would
            value = yield item
"""


def test_a_rank_that_dies_stops_the_others_naming_it_and_rank_0_writes_what_it_has(tmp_path):
    (tmp_path / "dies.py").write_text(DIES)
    port, out = _port(), tmp_path / "run"
    # srun does not stop a step's other tasks when one dies: commsim must.
    args = ["--import", "dies", "--strategy", "dies_at_step_3_test_only", *RUN[:-2]]
    args += ["--timeout", "30", "--out", str(out)]
    results = _finish([_srun(rank, 2, port, args, tmp_path) for rank in range(2)])
    code0, output0 = results[0]
    assert code0 == 1, output0[-3000:]
    assert "rank 1 failed: it stopped responding" in output0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "rank 1" in record["error"]
    assert sorted(pd.read_parquet(out / "metrics.parquet").query("kind == 'eval'")["step"]) == [
        0,
        2,
    ]


def test_ranks_started_with_different_arguments_stop_at_once_naming_what_differs(tmp_path):
    port = _port()
    procs = [_srun(rank, 2, port, [*RUN, "--steps", str(4 + rank)], tmp_path) for rank in range(2)]
    (code0, out0), (code1, out1) = _finish(procs, timeout=60)
    assert code1 == 2 and "rank 1 was started with a different run than rank 0" in out1
    assert "differing: steps" in out1
    # Rank 0 ends the run with rank 1's error, in one line.
    assert code0 == 1 and "error: rank 1 failed: LaunchError: rank 1 was started" in out0
