"""``real.run``: the same strategy objects on ``torch.distributed``, N local processes.

Each rank is an OS process (``torch.multiprocessing`` spawn) joined by a gloo (CPU) or NCCL
(GPU) process group on localhost. Every rank writes its metrics and, for the primary, the
final global parameters to a scratch directory; the parent merges them into one
:class:`strategies.results.RunResult`, the same format ``sim.run`` returns.

Single machine::

    python -c "import real; print(real.run('allreduce', 'mlp_digits', nproc=4, steps=50).summary)"
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import workloads
from real.comm import RealCommunicator
from real.runtime import RealRuntime, drive
from strategies import OptimizerSpec, ScheduleSpec, Strategy
from strategies import get as get_strategy
from strategies.replica import Replica
from strategies.results import RunResult, RunWriter
from strategies.roles import TrainingSetup, build_role

__all__ = ["run"]

BACKENDS = ("gloo", "nccl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(
    rank: int,
    setup: TrainingSetup,
    eval_every: int,
    backend: str,
    port: int,
    scratch: str,
    timeout: float,
) -> None:
    torch.set_num_threads(1)  # N ranks share the machine's cores, as they would share a node
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=setup.world_size,
        timeout=timedelta(seconds=timeout),
    )
    try:
        comm = RealCommunicator(rank, setup.world_size)
        primary = setup.strategy.primary(setup.world_size)
        holder: dict[str, Any] = {}

        def evaluate() -> dict[str, float]:
            ctx = holder["ctx"]
            if ctx.role == "server":
                replica = Replica(setup.workload.make_model(setup.seed))
                replica.load(ctx.parameters())
                return setup.workload.evaluate(replica.model)
            return setup.workload.evaluate(ctx.model)

        # A primary that holds only one shard of the model cannot evaluate it alone.
        can_evaluate = len(setup.servers) <= 1
        runtime = RealRuntime(
            rank,
            primary,
            setup.steps,
            eval_every,
            evaluate if can_evaluate else None,
            lambda: comm.bytes_sent,
        )
        ctx, program = build_role(setup, rank, comm, runtime)
        holder["ctx"] = ctx
        dist.barrier()
        runtime.start = time.perf_counter()
        if rank == primary:
            runtime.record_eval()
        drive(runtime, program)
        rows = runtime.rows + [runtime.worker_row()]
        final = ctx.parameters() if ctx.role == "worker" else None
        torch.save(
            {
                "rows": rows,
                "parameters": final,
                "samples": runtime.samples,
                "bytes": comm.bytes_sent,
                "time": runtime.now(),
            },
            Path(scratch) / f"{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def run(
    strategy: str | Strategy,
    workload: str | Any,
    *,
    nproc: int,
    steps: int,
    optimizer: Any = None,
    lr_schedule: Any = None,
    seed: int = 0,
    eval_every: int = 10,
    accumulate: int = 1,
    backend: str = "gloo",
    out: str | Path | None = None,
    timeout: float = 300.0,
) -> RunResult:
    """Train with ``nproc`` local processes; returns the same format as ``sim.run``.

    ``result.parameters`` holds the final global parameters (flat), as seen by the first
    worker after its last update or pull.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc={nproc!r} must be a positive integer")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if getattr(strategy, "mode", "sync") != "sync":
        raise ValueError(
            f"{strategy!r} is asynchronous; the real backend runs synchronous strategies so far "
            "(async termination across processes arrives with the full real backend)"
        )
    strategy.check_world(nproc)
    workload = workloads.get(workload) if isinstance(workload, str) else workload
    setup = TrainingSetup(
        strategy,
        workload,
        nproc,
        steps,
        OptimizerSpec.parse(optimizer),
        ScheduleSpec.parse(lr_schedule),
        seed,
        accumulate,
    )
    config = {
        "backend": f"real-{backend}",
        "strategy": strategy.config(),
        "workload": workload.config(),
        "optimizer": {"name": setup.optimizer.name, **setup.optimizer.options},
        "lr_schedule": {"name": setup.schedule.name, **setup.schedule.options},
        "steps": steps,
        "seed": seed,
        "eval_every": eval_every,
        "accumulate": accumulate,
        "world_size": nproc,
    }
    writer = RunWriter(out, config) if out is not None else None
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="commsim-real-") as scratch:
        try:
            mp.start_processes(
                _rank_main,
                args=(setup, eval_every, backend, _free_port(), scratch, timeout),
                nprocs=nproc,
                join=True,
                start_method="spawn",
            )
        except Exception as exc:
            if writer is not None:
                writer.fail([], exc)
            raise
        parts = [torch.load(Path(scratch) / f"{r}.pt", weights_only=False) for r in range(nproc)]
    rows = [row for part in parts for row in part["rows"]]
    metrics = pd.DataFrame(rows)
    evals = metrics[metrics["kind"] == "eval"]
    first_worker = strategy.workers(nproc)[0]
    summary: dict[str, Any] = {
        "stop_reason": "steps",
        "updates": steps,
        "samples": int(sum(p["samples"] for p in parts)),
        "time": max(p["time"] for p in parts),
        "bytes": float(sum(p["bytes"] for p in parts)),
        "wall_time": time.perf_counter() - wall,
    }
    if not evals.empty:
        summary["final_loss"] = float(evals["loss"].iloc[-1])
        if "accuracy" in evals:
            summary["final_accuracy"] = float(evals["accuracy"].iloc[-1])
    result = RunResult(config, summary, metrics, parameters=parts[first_worker]["parameters"])
    if writer is not None:
        writer.finish(result)
    return result
