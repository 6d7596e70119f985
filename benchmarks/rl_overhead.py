"""What does simulating reinforcement learning cost on top of the environments and the maths?

Runs A2C (``allreduce`` on ``cartpole``: every worker rolls out its own environments and
computes A2C's gradient, the gradients are averaged, every replica steps) for ``--workers`` x
``--steps`` in ``sim.run`` and, side by side in the same process, a plain single-process A2C
loop doing the same rollouts, losses and backward passes with one model (each worker's
gradient, then the mean, then one Adam step), with the same two evaluations (first and last
step). Prints both times, their ratio per repeat, the median, and the worker steps per second
of each. One torch thread for both; a garbage collection before each timed run.

    python benchmarks/rl_overhead.py [--workers 4] [--steps 100] [--repeats 3] [--clock cpu]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch

import workloads
from sim.run import run

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
OPTIMIZER = {"name": "adam", "lr": 1e-3}


def plain_loop(
    workload: workloads.RLWorkload, workers: int, steps: int, clock: Callable[[], float]
) -> float:
    """Synchronous A2C as one would write it without a simulator."""
    model = workload.make_model(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=OPTIMIZER["lr"])
    actors = [workload.stream(i, workers, 0) for i in range(workers)]
    start = clock()
    workload.evaluate(model)
    for _ in range(steps):
        grads = []
        for actor in actors:
            model.zero_grad()
            loss, _ = workload.step_loss(model, actor)
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for p, *parts in zip(model.parameters(), *grads):
            p.grad = torch.stack(parts).mean(0)
        optimizer.step()
    workload.evaluate(model)
    return clock() - start


def simulated(
    workload: workloads.RLWorkload, workers: int, steps: int, clock: Callable[[], float]
) -> float:
    """Time of ``sim.run`` (set-up, evaluations and results included)."""
    start = clock()
    run(
        "allreduce",
        workload,
        f"star:n={workers}",
        steps=steps,
        eval_every=steps,
        optimizer=OPTIMIZER,
    )
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(1)
    workload = workloads.cartpole()
    simulated(workload, args.workers, 3, clock)  # warm up imports and caches
    plain_loop(workload, args.workers, 3, clock)
    worker_steps = args.workers * args.steps
    print(f"A2C: {args.workers} workers x {args.steps} steps of cartpole ({workload.n_envs} "
          f"environments x {workload.rollout} steps per rollout)")  # fmt: skip
    print(f"{'repeat':>6} {'sim.run s':>10} {'plain s':>10} {'ratio':>7}")
    ratios, sims, plains = [], [], []
    for i in range(args.repeats):
        gc.collect()
        sims.append(simulated(workload, args.workers, args.steps, clock))
        gc.collect()
        plains.append(plain_loop(workload, args.workers, args.steps, clock))
        ratios.append(sims[-1] / plains[-1])
        print(f"{i:>6} {sims[-1]:>10.3f} {plains[-1]:>10.3f} {ratios[-1]:>7.3f}")
    print(
        f"ratio: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}; worker steps/s: "
        f"sim {worker_steps / statistics.median(sims):.0f}, "
        f"plain {worker_steps / statistics.median(plains):.0f}"
    )


if __name__ == "__main__":
    main()
