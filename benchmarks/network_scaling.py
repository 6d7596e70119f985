"""How the network engine scales: one ring all-reduce of 1 GB on fat trees and stars.

For n in {64, 256, 1024, 4096} ranks (fat tree: the smallest even k with k**3/4 >= n, using
its first n hosts) prints the wall time, the number of flows simulated, flows per second and
the simulated time. Lock-step rounds (``pace="step"``, the default) are the headline; ``--pace
rank`` runs per-rank progress instead (exact dependencies, many more events on a fat tree).

    .venv/bin/python benchmarks/network_scaling.py                # all sizes, ~40 s
    .venv/bin/python benchmarks/network_scaling.py --sizes 64 256 --pace rank
    .venv/bin/python benchmarks/network_scaling.py --sizes 64 256 --unfairness 0 0.3
    .venv/bin/python benchmarks/network_scaling.py --routing single ecmp spray

``--unfairness`` runs each size once per value given (``network.unfairness``: flows drawn
weights, whose rate solves are not cached), side by side; ``--routing`` likewise per routing
mode (``network.routing``, default ``ecmp``). ``--repeat N`` shows the fastest of N runs
of each row (on a busy machine).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import simpy
from rich.console import Console
from rich.table import Table

import topologies
from sim.network import ROUTINGS, Network

NBYTES = 1e9


def fat_tree_for(n: int):
    k = 2
    while k**3 // 4 < n:
        k += 2
    return topologies.fat_tree(k), f"fat_tree({k})"


def run(
    g, n: int, pace: str, unfairness: float = 0.0, routing: str = "ecmp"
) -> tuple[float, float, float, float, int]:
    """Wall times of (setup, routing, simulation), simulated time, flows: one all-reduce."""
    t0 = time.perf_counter()
    env = simpy.Environment()
    net = Network(env, g, record=False, unfairness=unfairness, routing=routing)
    t1 = time.perf_counter()
    ranks = np.arange(n)
    net.router.routes(ranks, (ranks + 1) % n)  # the ring's routes, timed on their own
    t2 = time.perf_counter()
    net.collective("all_reduce", NBYTES, ranks=range(n), algorithm="ring", pace=pace)
    env.run()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, env.now, net.flows_simulated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--pace", choices=["step", "rank"], default="step")
    parser.add_argument("--families", nargs="+", default=["fat_tree", "star"])
    parser.add_argument("--unfairness", type=float, nargs="+", default=[0.0])
    parser.add_argument("--routing", nargs="+", default=["ecmp"], choices=ROUTINGS)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the fastest is shown (busy hosts)"
    )
    args = parser.parse_args()
    table = Table(title=f"ring all-reduce of 1 GB, pace={args.pace}")
    for col in (
        "topology",
        "ranks",
        "routing",
        "unfairness",
        "flows",
        "setup (s)",
        "routing (s)",
        "simulation (s)",
        "total (s)",
        "flows / s",
        "simulated (s)",
    ):
        table.add_column(col, justify="left" if col == "topology" else "right")
    for family in args.families:
        for n in args.sizes:
            g, name = (
                fat_tree_for(n) if family == "fat_tree" else (topologies.star(n), f"star({n})")
            )
            for mode, unfairness in itertools.product(args.routing, args.unfairness):
                setup, routing, wall, sim_t, flows = min(
                    (run(g, n, args.pace, unfairness, mode) for _ in range(args.repeat)),
                    key=lambda timed: sum(timed[:3]),
                )
                table.add_row(
                    name,
                    str(n),
                    mode,
                    f"{unfairness:g}",
                    f"{flows:,}",
                    f"{setup:.2f}",
                    f"{routing:.2f}",
                    f"{wall:.2f}",
                    f"{setup + routing + wall:.2f}",
                    f"{flows / wall:,.0f}",
                    f"{sim_t:.6f}",
                )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
