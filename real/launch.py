"""``real.run``: the same strategy objects on ``torch.distributed``, N local processes.

Each rank is an OS process (``torch.multiprocessing`` spawn) joined by a gloo process group
on localhost. Every rank writes what it measured to a scratch directory, also when it fails;
the parent merges the ranks into one :class:`strategies.results.RunResult`, the format
``sim.run`` returns, and evaluates the global-model snapshots outside the timed run.

Single machine::

    python -c "import real; print(real.run('allreduce', 'mlp_digits', nproc=4, steps=50).summary)"
"""

from __future__ import annotations

import bisect
import math
import os
import socket
import tempfile
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

import workloads
from real.comm import RealCommunicator
from real.runtime import RealRuntime, drive
from strategies import Strategy
from strategies.results import RunResult, RunWriter, summarize
from strategies.roles import TrainingSetup, build_role, evaluate_parameters, positive_int

__all__ = ["run"]

BACKENDS = ("gloo",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, setup: TrainingSetup, port: int, scratch: str, timeout: float) -> None:
    torch.set_num_threads(1)  # N ranks share the machine's cores, as they would share a node
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=setup.world_size,
        timeout=timedelta(seconds=timeout),
    )
    comm = RealCommunicator(rank, setup.world_size)
    # The first worker holds the whole global model after every update it applies or pulls.
    recorder = setup.workers[0]
    runtime = RealRuntime(
        rank,
        setup.strategy.primary(setup.world_size),
        setup.steps,
        setup.eval_every,
        rank == recorder,
        lambda: comm.bytes_sent,
    )
    error: BaseException | None = None
    try:
        ctx, program = build_role(setup, rank, comm, runtime)
        dist.barrier()
        runtime.start = time.perf_counter()
        drive(runtime, ctx, program)
        # No rank tears its connections down while a peer may still be using them.
        dist.barrier()
    except BaseException as exc:  # keep what was measured; the parent reports the failure
        error = exc
        raise
    finally:
        torch.save(
            {
                "rows": runtime.rows + [runtime.worker_row()],
                "marks": runtime.marks,
                "snapshots": runtime.snapshots,
                "error": " ".join(f"{type(error).__name__}: {error}".split()) if error else None,
            },
            Path(scratch) / f"{rank}.pt",
        )
        dist.destroy_process_group()


def _merge(setup: TrainingSetup, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Eval and update rows with samples and bytes totalled over ranks at each version."""
    marks = [sorted(p["marks"]) for p in parts]

    def totals(version: int) -> tuple[float, float]:
        samples = nbytes = 0.0
        for rank_marks in marks:  # each rank's counters when it reached this version
            i = bisect.bisect_right([m[0] for m in rank_marks], version) - 1
            if i >= 0:
                samples += rank_marks[i][2]
                nbytes += rank_marks[i][3]
        return samples, nbytes

    rows = []
    for part in parts:
        for row in part["rows"]:
            if row["kind"] == "update":
                row["samples"], row["bytes"] = totals(row["update"])
            rows.append(row)
    recorder = parts[setup.workers[0]]
    for version, at, flat in recorder["snapshots"]:
        samples, nbytes = totals(version)
        rows.append(
            {
                "kind": "eval",
                "time": at,
                "update": version,
                "samples": samples,
                "bytes": nbytes,
                **evaluate_parameters(setup, flat),
            }
        )
    return rows


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

    ``time`` columns are wall-clock seconds since all ranks were ready; ``result.parameters``
    holds the final global parameters (flat), as the first worker saw them at the end.
    """
    positive_int("nproc", nproc)
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r} is not available yet; use 'gloo' (NCCL needs each rank's "
            "model on its GPU, which arrives with the full real backend)"
        )
    if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
        raise ValueError(f"timeout={timeout!r} must be a positive, finite number of seconds")
    workload = workloads.get(workload) if isinstance(workload, str) else workload
    setup = TrainingSetup.create(
        strategy,
        workload,
        nproc,
        steps=steps,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        seed=seed,
        accumulate=accumulate,
        eval_every=eval_every,
    )
    if not setup.strategy.synchronous:
        raise ValueError(
            f"{setup.strategy!r} is asynchronous; the real backend runs synchronous strategies "
            "so far (async termination across processes arrives with the full real backend)"
        )
    config = {"backend": f"real-{backend}", **setup.config()}
    writer = RunWriter(out, config) if out is not None else None
    with writer or nullcontext():
        return _launch(setup, config, writer, timeout)


def _launch(
    setup: TrainingSetup, config: dict[str, Any], writer: RunWriter | None, timeout: float
) -> RunResult:
    nproc = setup.world_size
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="commsim-real-") as scratch:
        try:
            mp.start_processes(
                _rank_main,
                args=(setup, _free_port(), scratch, timeout),
                nprocs=nproc,
                join=True,
                start_method="spawn",
            )
        except ProcessException as exc:
            # The child's traceback is many lines; its saved error says what went wrong.
            parts = _load_parts(scratch, nproc)
            failed = exc.error_index
            reason = parts[failed].get("error") or str(exc).strip().splitlines()[0]
            error = RuntimeError(f"rank {failed} failed: {reason}")
            if writer is not None:
                writer.fail(_merge(setup, parts), error)
            raise error from None
        except BaseException as exc:
            if writer is not None:
                writer.fail(_merge(setup, _load_parts(scratch, nproc)), exc)
            raise
        parts = _load_parts(scratch, nproc)
    metrics = pd.DataFrame(_merge(setup, parts))
    final = parts[setup.workers[0]]["marks"][-1]
    workers = metrics[metrics["kind"] == "worker"]
    summary = summarize(
        metrics,
        stop_reason="steps",
        updates=final[0],
        samples=int(workers["samples"].sum()),
        nbytes=workers["bytes"].sum(),
        time=float(workers["time"].max()),
        wall_time=time.perf_counter() - wall,
    )
    snapshots = parts[setup.workers[0]]["snapshots"]
    result = RunResult(config, summary, metrics, parameters=snapshots[-1][2] if snapshots else None)
    if writer is not None:
        writer.finish(result)
    return result


def _load_parts(scratch: str, nproc: int) -> list[dict[str, Any]]:
    """What each rank saved; a rank that saved nothing (killed) contributes nothing."""
    parts = []
    for rank in range(nproc):
        path = Path(scratch) / f"{rank}.pt"
        empty = {"rows": [], "marks": [], "snapshots": [], "error": None}
        parts.append(torch.load(path, weights_only=False) if path.is_file() else empty)
    return parts
