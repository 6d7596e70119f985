"""How fast is a timing-only run, and does its memory stay flat in the ranks?

For each strategy and each number of workers, runs ``sim.run(..., timing_only=True)`` in a
fresh (forked) process and prints the simulator's wall seconds, its **worker steps per
second** (gradients the workers computed, in simulated time, per CPU second of this
process, so that other jobs on a shared machine do not stretch it: in a timing-only run the
simulator's bookkeeping is the whole cost) and the process's peak resident memory. With ``--full`` the same configuration also runs in full (real forward,
backward and evaluation) for comparison; a model that does not fit is not tried in full.

    python benchmarks/timing_only.py [--workload mlp_digits|big] [--workers 16 64 256]
        [--steps 100] [--strategies allreduce diloco] [--optimizer adam] [--full]

``--workload big`` is four ``Linear(8192, 8192)`` layers (268 M parameters, 1.07 GB of
float32 per replica): a full run of 16 workers would need 50 GB; timing-only needs none.
The topology is a fat tree for 16 workers and a star otherwise; compute is 0.05 s a step.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Any

import torch
from torch import nn

import topologies
import workloads
from sim.run import run

#: Four 8192 x 8192 linear layers: 268,468,224 parameters.
BIG_WIDTH, BIG_LAYERS = 8192, 4


def big_workload() -> workloads.Workload:
    """A model too large for a full run of many workers (data: 64 random rows)."""
    x, y = torch.randn(64, BIG_WIDTH), torch.randn(64, BIG_WIDTH)
    return workloads.Workload(
        "big",
        lambda: nn.Sequential(*[nn.Linear(BIG_WIDTH, BIG_WIDTH) for _ in range(BIG_LAYERS)]),
        (x, y),
        (x, y),
        nn.functional.mse_loss,
        batch_size=8,
    )


def one(config: tuple[str, str, int, int, bool, str | None]) -> dict[str, Any]:
    """One run in this (fresh) process: wall seconds, worker steps, peak RSS."""
    strategy, name, workers, steps, timing_only, optimizer = config
    torch.set_num_threads(1)
    workload = big_workload() if name == "big" else workloads.get(name)
    graph = topologies.fat_tree(4) if workers == 16 else topologies.star(workers)
    start, cpu = time.perf_counter(), time.process_time()
    result = run(
        strategy,
        workload,
        graph,
        steps=steps,
        eval_every=steps,
        compute=0.05,
        timing_only=timing_only,
        **({"optimizer": optimizer} if optimizer else {}),
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    gradients = len(result.compute) if result.compute is not None else 0
    return {
        "wall": wall,
        "cpu": cpu,
        "worker_steps": gradients,
        "step_time": result.summary["time"] / max(result.summary["steps"], 1),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp_digits", help="a registered name, or big")
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--strategies", nargs="+", default=["allreduce", "diloco:period=10"])
    parser.add_argument("--optimizer", help="the workers' optimizer (default: the run's, SGD)")
    parser.add_argument("--full", action="store_true", help="also run each in full")
    args = parser.parse_args()
    modes = [True, False] if args.full and args.workload != "big" else [True]
    context = multiprocessing.get_context("fork")
    # Imports torch makes on first use (dynamo with the first optimizer, sympy with the first
    # meta op: ~5 s) happen here once, not in every forked run.
    run("allreduce", "quadratic", topologies.ring(2), steps=1, timing_only=True)
    run("allreduce", "quadratic", topologies.ring(2), steps=1)
    optimizer = f", optimizer {args.optimizer}" if args.optimizer else ""
    print(
        f"{args.workload}, {args.steps} global steps, compute 0.05 s{optimizer}, one torch thread"
    )
    print(
        f"{'strategy':<20} {'workers':>7} {'mode':<11} {'wall s':>8} {'cpu s':>8} "
        f"{'worker steps/s':>15} {'sim step s':>11} {'peak MB':>8}"
    )
    for strategy in args.strategies:
        for workers in args.workers:
            for timing_only in modes:
                config = (
                    strategy,
                    args.workload,
                    workers,
                    args.steps,
                    timing_only,
                    args.optimizer,
                )
                # A fresh process per run: its peak memory is this run's alone.
                mode = "timing-only" if timing_only else "full"
                with context.Pool(1, maxtasksperchild=1) as pool:
                    try:
                        out = pool.apply(one, (config,))
                    except (ValueError, MemoryError) as exc:  # a full run that cannot run
                        print(f"{strategy:<20} {workers:>7} {mode:<11} refused: {exc}")
                        continue
                rate = out["worker_steps"] / out["cpu"]
                print(
                    f"{strategy:<20} {workers:>7} {mode:<11} {out['wall']:>8.2f} "
                    f"{out['cpu']:>8.2f} {rate:>15,.0f} "
                    f"{out['step_time']:>11.4f} {out['peak_mb']:>8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
