"""Routing modes on a full-bisection fat tree against a star of the same links (issue 23).

One collective of 100 MB per rank on ``fat_tree(4)`` (16 hosts) under each ``network.routing``
mode, and on a 16-host star of the same links (non-blocking: the time a full-bisection fabric
should reach). ``ecmp`` depends on the seed (which flows collide): its mean, minimum and
maximum over ``--seeds`` seeds are shown.

    .venv/bin/python benchmarks/routing_modes.py
    .venv/bin/python benchmarks/routing_modes.py --bandwidth 100Gbps --seeds 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import topologies
from sim.timing import collective_time

NBYTES = 100e6
CASES = (
    ("all_reduce", "halving_doubling"),
    ("all_reduce", "ring"),
    ("all_reduce", "tree"),
    ("all_to_all", "direct"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandwidth", default="10Gbps")
    parser.add_argument("--latency", default="1us")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    tree = topologies.fat_tree(4, bandwidth=args.bandwidth, latency=args.latency)
    star = topologies.star(16, bandwidth=args.bandwidth, latency=args.latency)
    table = Table(
        title=f"100 MB per rank, 16 ranks, {args.bandwidth} links, {args.latency} latency: "
        "simulated seconds"
    )
    for col in (
        "collective",
        "star(16)",
        "fat_tree(4) single",
        f"ecmp mean of {args.seeds} seeds [min, max]",
        "spray",
        "wall (s)",
    ):
        table.add_column(col, justify="left" if col == "collective" else "right")
    for op, algorithm in CASES:
        t0 = time.perf_counter()

        def on(g, routing: str, seed: int = 0, op=op, algorithm=algorithm) -> float:
            return collective_time(g, op, NBYTES, algorithm=algorithm, routing=routing, seed=seed)

        ecmp = np.array([on(tree, "ecmp", seed) for seed in range(args.seeds)])
        row = [
            f"{on(star, 'single'):.4f}",
            f"{on(tree, 'single'):.4f}",
            f"{ecmp.mean():.4f} [{ecmp.min():.4f}, {ecmp.max():.4f}]",
            f"{on(tree, 'spray'):.4f}",
        ]
        table.add_row(f"{op} ({algorithm})", *row, f"{time.perf_counter() - t0:.2f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
