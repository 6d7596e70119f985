"""Gradient compression with all-reduce SGD: every scheme's bytes, time and loss.

Simulates ``AllReduceSGD(compression=...)`` for each scheme on a slow network and prints
what each sends and how it trains; ``--check SCHEME`` runs one on gloo and compares.

    python examples/compression.py --steps 100
    python examples/compression.py --steps 20 --check powersgd
"""

from __future__ import annotations

import argparse

import pandas as pd

import sim
import topologies
from strategies import COMPRESSORS, AllReduceSGD
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--check", choices=COMPRESSORS, default=None)
    args = parser.parse_args()
    graph = topologies.star(args.workers, bandwidth="100Mbps", latency="100us")
    rows = {}
    for scheme in (None, *COMPRESSORS):
        strategy = AllReduceSGD(compression=scheme)
        optimizer = {"name": "sgd", "lr": 0.01 if scheme == "signsgd" else 0.1}
        result = sim.run(strategy, "mlp_digits", graph, steps=args.steps, optimizer=optimizer)
        s = result.summary
        rows[scheme or "none"] = {
            "MB sent": s["bytes"] / 1e6,
            "time s": s["time"],
            "final loss": s["final_loss"],
        }
    print(pd.DataFrame.from_dict(rows, orient="index").round(4).to_string())
    if args.check:
        report = check(
            AllReduceSGD(compression=args.check),
            "mlp_digits",
            world_size=args.workers,
            steps=args.steps,
        )
        print(report)
        report.raise_for_differences()


if __name__ == "__main__":
    main()
