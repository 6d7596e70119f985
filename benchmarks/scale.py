"""Issue 25's figures side by side, each in a process of its own (one core, CPU seconds).

* ``gpt2xl_allreduce``: 1,024 workers x 100 steps of ``gpt2_xl``, timing-only, ring
  ``AllReduceSGD`` on ``fat_tree(16)`` (1,024 hosts, 100 Gbit/s) (target < 30 s);
* ``gpt2xl_diloco``: the same with ``DiLoCo(period=20)`` (target < 10 s);
* ``h16384``: one hierarchical all-reduce of a 70B model's bf16 gradients (140e9 bytes) on
  16,384 nodes x 8 GPUs (131,072 GPUs), flow-level (target < 10 s);
* ``ring4096``: a 4,096-rank ring all-reduce of 1 GB on ``fat_tree(26)`` (target < 1 s);
* with ``--rank``, each network case again with ``pace="rank"`` (per-rank progress; target:
  within 5x of the lock-step case's CPU seconds, printed as the ratio).

Each prints its CPU seconds (set-up included: the topology, the workload's FLOPs counted on
PyTorch's meta device, the network), the simulated seconds, worker steps per CPU second for
the runs, and the process's peak RSS. The network cases come from
``benchmarks/scale_network.py`` (which also compares the fast path with the plain one). ::

    python benchmarks/scale.py
    python benchmarks/scale.py --cases gpt2xl_diloco ring4096 --steps 20
    python benchmarks/scale.py --cases h16384 --rank
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scale_network, beside this file

import scale_network  # noqa: E402

#: name -> (strategy spec, target CPU seconds) for the training runs.
RUNS = {
    "gpt2xl_allreduce": ("allreduce:algorithm=ring", 30.0),
    "gpt2xl_diloco": ("diloco:period=20", 10.0),
}
#: name -> target CPU seconds for the network cases (scale_network's).
NETWORK = {"h16384": 10.0, "ring4096": 1.0}
CASES = [*RUNS, *NETWORK]


def run_case(name: str, steps: int) -> dict:
    """One training case in this process: a timing-only run of 1,024 ``gpt2_xl`` workers."""
    import sim

    start = time.process_time()
    result = sim.run(
        RUNS[name][0],
        "gpt2_xl",
        "fat_tree:k=16,bandwidth=100Gbps,latency=1us",
        steps=steps,
        timing_only=True,
        compute={"base": "flops", "device": "A100", "efficiency": 0.4},
    )
    cpu = time.process_time() - start
    return {
        "cpu_s": cpu,
        "simulated_s": result.summary["time"],
        "worker_steps_per_s": 1024 * steps / cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def one(name: str, steps: int, pace: str = "step") -> dict:
    if name in RUNS:
        return run_case(name, steps)
    return scale_network.one(name, plain=False, pace=pace)


def spawn(name: str, steps: int, timeout: float, pace: str = "step") -> dict | None:
    args = [sys.executable, __file__, "--one", name, "--steps", str(steps), "--pace", pace]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--steps", type=int, default=100, help="steps of the training cases")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--rank", action="store_true", help="network cases with pace='rank' too")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--pace", default="step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.pace)))
        return
    print(f"{'case':<18} {'cpu s':>8} {'target':>7} {'simulated s':>14} {'steps/s':>9} {'MiB':>6}")
    for name in args.cases:
        target = RUNS[name][1] if name in RUNS else NETWORK[name]
        got = spawn(name, args.steps, args.timeout)
        if got is None:
            print(f"{name:<18} {'> ' + str(int(args.timeout)):>8} {target:>7g}")
            continue
        rate = got.get("worker_steps_per_s")
        print(
            f"{name:<18} {got['cpu_s']:>8.2f} {target:>7g} {got['simulated_s']:>14.6f} "
            f"{'' if rate is None else f'{rate:,.0f}':>9} {got['peak_rss_mib']:>6.0f}",
            flush=True,
        )
        if args.rank and name in NETWORK:  # per-rank progress: within 5x of lock-step
            ranked = spawn(name, args.steps, args.timeout, pace="rank")
            label = f"{name} rank"
            if ranked is None:
                print(f"{label:<18} {'> ' + str(int(args.timeout)):>8} {'5x':>7}", flush=True)
                continue
            ratio = f"{ranked['cpu_s'] / got['cpu_s']:.1f}x"
            same = "same" if ranked["simulated_s"] == got["simulated_s"] else "differs"
            print(
                f"{label:<18} {ranked['cpu_s']:>8.2f} {'5x':>7} {ranked['simulated_s']:>14.6f} "
                f"{ratio:>9} {ranked['peak_rss_mib']:>6.0f}  simulated time {same}",
                flush=True,
            )


if __name__ == "__main__":
    main()
