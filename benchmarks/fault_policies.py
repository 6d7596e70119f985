"""Recovery policies against the failure rate (issue 24): time to target and goodput.

16 workers train ``mlp_digits`` on a 10 Gbit/s star; every rank crashes at random
(exponential uptimes with the given MTBF per rank, drawn from the seed) and comes back
``--restart`` seconds later. Each policy runs at each MTBF over ``--seeds`` seeds: the
median time to the target loss, the median goodput (committed samples per second), the
steps lost and the runs that failed (a model lost, or the time budget spent). The first
row of each policy is the fault-free run.

    .venv/bin/python benchmarks/fault_policies.py
    .venv/bin/python benchmarks/fault_policies.py --mtbf 20 60 200 --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

import sim
import topologies

#: Each policy: a strategy and the schedule options it runs with.
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "restart from checkpoint": ("allreduce", {"recovery": "restart"}),
    "quorum all-reduce": ("allreduce:fault_tolerance=quorum", {}),
    "quorum DiLoCo (H=8)": ("diloco:period=8,fault_tolerance=quorum", {}),
    "async parameter server": ("parameter_server:mode=async", {}),
}


def run_one(
    strategy: str, options: dict[str, Any], mtbf: float | None, args: Any, seed: int
) -> Any:
    faults = None
    if mtbf is not None:
        event = {"kind": "crash", "mtbf": mtbf, "restart": args.restart}
        faults = {"events": [event], "detect": args.detect, **options}
        if options.get("recovery") == "restart":
            faults["checkpoint"] = {"bandwidth": "1GB/s", "latency": 0.5}
    workers = 16
    world = workers + (1 if strategy.startswith("parameter_server") else 0)
    try:
        return sim.run(
            strategy,
            "mlp_digits",
            topologies.star(world, bandwidth="10Gbps", latency="20us"),
            steps=100_000,
            max_time=args.budget,
            target_loss=args.target,
            eval_every=20,
            compute=0.05,
            seed=seed,
            faults=faults,
        ).summary
    except sim.SimulationError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtbf", type=float, nargs="+", default=[30.0, 120.0, 600.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--restart", type=float, default=2.0)
    parser.add_argument("--detect", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=0.3)
    parser.add_argument("--budget", type=float, default=120.0, help="simulated seconds")
    parser.add_argument("--policies", nargs="*", default=list(POLICIES))
    args = parser.parse_args()
    table = Table(title="recovery policies against the MTBF per rank (16 workers)")
    for column in (
        "policy",
        "MTBF/rank",
        "time to target",
        "goodput",
        "lost steps",
        "failed",
        "wall",
    ):
        table.add_column(column, justify="right")
    for name in args.policies:
        strategy, options = POLICIES[name]
        for mtbf in [None, *args.mtbf]:
            start = time.perf_counter()
            summaries = [run_one(strategy, options, mtbf, args, seed) for seed in range(args.seeds)]
            done = [s for s in summaries if s is not None]
            reached = [s["time_to_target"] for s in done if s.get("time_to_target") is not None]
            goodput = [s.get("goodput", s["samples_per_s"]) for s in done]
            lost = [s.get("lost_steps", 0) for s in done]
            failed = len(summaries) - len(reached)
            table.add_row(
                name,
                "none" if mtbf is None else f"{mtbf:g} s",
                f"{statistics.median(reached):.1f} s" if reached else "not reached",
                f"{statistics.median(goodput):.0f}/s" if goodput else "-",
                f"{statistics.median(lost):g}" if lost else "-",
                f"{failed}/{len(summaries)}",
                f"{time.perf_counter() - start:.1f} s",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
