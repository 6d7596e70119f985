"""How much does the simulator's own bookkeeping cost on top of the real maths?

Runs 16 workers x 200 steps of AllReduceSGD on mlp_digits in ``sim.run`` and, side by side in
the same process, a plain torch loop doing the same 3,200 forward/backward passes and
optimizer steps on the same batches. Prints both wall times and their ratio per repeat, then
the smallest and the median ratio (target <= 1.3). Both use one torch thread so the comparison
is not at the mercy of thread scheduling, and each timed run starts after a garbage
collection, so that a full collection (~0.15 s here, due about once in ten runs) does not
land in one of them at random. On a shared machine read the median; the minimum is
what the code costs when nothing else runs.

    python benchmarks/runtime_overhead.py [--workers 16] [--steps 200] [--repeats 5] [--clock cpu]
        [--calls]

``--clock cpu`` times CPU seconds of this process instead of wall seconds: on a machine
shared with other jobs, their load then stretches neither half.

``--calls`` counts instead of timing, for machines where timings do not resolve a change:
one more run of each half under ``cProfile`` gives the Python function calls (C functions
included) per worker step of ``sim.run`` and of the plain loop, their difference, and the
events SimPy processes per worker step; then the same for ``sim.run`` timing-only (no
forward or backward: the simulator's bookkeeping alone). The counts are the
same on any machine and in any run of the same code (a warm-up run comes first, so one-off
imports and caches are not counted).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable

import torch

import topologies
import workloads
from sim.run import run

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def plain_loop(
    workload: workloads.Workload, workers: int, steps: int, clock: Callable[[], float]
) -> float:
    """The same forward/backward passes and optimizer steps, in a bare loop."""
    model = workload.make_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    streams = [workload.batches(i, workers, 0) for i in range(workers)]
    start = clock()
    for _ in range(steps):
        for stream in streams:
            x, y = next(stream)
            optimizer.zero_grad()
            workload.loss(model(x), y).backward()
            optimizer.step()
    return clock() - start


def simulated(
    workload: workloads.Workload,
    workers: int,
    steps: int,
    clock: Callable[[], float],
    timing_only: bool = False,
) -> float:
    """Time of ``sim.run`` (building the topology, set-up, evaluations and results too)."""
    start = clock()
    graph = topologies.fat_tree(4) if workers == 16 else topologies.star(workers)
    run(
        "allreduce",
        workload,
        graph,
        steps=steps,
        eval_every=steps,
        optimizer={"name": "sgd", "lr": 0.1},
        **({"timing_only": True} if timing_only else {}),  # (a tree before it: not passed)
    )
    return clock() - start


def counted(fn: Callable[[], float]) -> tuple[int, int]:
    """Python function calls (C functions included) while ``fn`` runs, and how many of them
    were SimPy's ``Environment.step`` (one per event processed)."""
    profile = cProfile.Profile()
    profile.runcall(fn)
    stats = pstats.Stats(profile)
    steps = sum(
        row[1]
        for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
        if name == "step" and path.endswith("simpy/core.py")
    )
    return stats.total_calls, steps  # type: ignore[attr-defined]


def calls(workload: workloads.Workload, workers: int, steps: int) -> None:
    """Print the calls per worker step of both halves and SimPy's events per worker step,
    and those of the same run timing-only (no forward or backward: the bookkeeping alone)."""
    clock = time.process_time
    sim_calls, events = counted(lambda: simulated(workload, workers, steps, clock))
    plain_calls, _ = counted(lambda: plain_loop(workload, workers, steps, clock))
    simulated(workload, workers, 5, clock, timing_only=True)  # its own one-off imports
    only_calls, only_events = counted(
        lambda: simulated(workload, workers, steps, clock, timing_only=True)
    )
    n = workers * steps
    print(f"Python function calls per worker step ({n} worker steps, cProfile):")
    print(f"  sim.run     {sim_calls / n:8.1f}  ({sim_calls:,} calls)")
    print(f"  plain loop  {plain_calls / n:8.1f}  ({plain_calls:,} calls)")
    # Not the simulator's own calls exactly: the plain loop's torch.optim.SGD.step is
    # ~100 calls a step that sim's flat optimizer does not make.
    print(f"  difference  {(sim_calls - plain_calls) / n:8.1f}")
    print(f"  sim.run, timing-only {only_calls / n:8.1f}  ({only_calls:,} calls)")
    print(f"SimPy events per worker step: {events / n:.3f} (timing-only {only_events / n:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument(
        "--calls", action="store_true", help="count calls per worker step instead of timing"
    )
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    workload = workloads.get("mlp_digits")
    simulated(workload, args.workers, 5, clock)  # warm up imports and allocator caches
    plain_loop(workload, args.workers, 5, clock)
    if args.calls:
        calls(workload, args.workers, args.steps)
        return
    print(f"{args.workers} workers x {args.steps} steps of AllReduceSGD on mlp_digits")
    print(f"{'repeat':>6} {'sim.run s':>10} {'plain s':>10} {'ratio':>7}")
    ratios = []
    for i in range(args.repeats):
        # A full collection of this process's ~350,000 objects takes ~0.15 s and lands in
        # whichever run happens to cross the collector's threshold: start each one clean.
        gc.collect()
        sim_s = simulated(workload, args.workers, args.steps, clock)
        gc.collect()
        plain_s = plain_loop(workload, args.workers, args.steps, clock)
        ratios.append(sim_s / plain_s)
        print(f"{i:>6} {sim_s:>10.3f} {plain_s:>10.3f} {ratios[-1]:>7.3f}")
    print(f"ratio: min {min(ratios):.3f}, median {statistics.median(ratios):.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
