"""Elastic averaging SGD: workers pulled towards a centre that a server holds.

Simulates synchronous and asynchronous EASGD with stragglers and prints how far each gets
in the same simulated time; ``--check`` runs the synchronous one on gloo and compares.

    python examples/easgd.py --alpha 0.1 --period 4 --budget 0.5
"""

from __future__ import annotations

import argparse

import sim
import topologies
from strategies import EASGD
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=0.5, help="simulated seconds each")
    parser.add_argument("--check", action="store_true", help="also run on gloo and compare")
    args = parser.parse_args()
    graph = topologies.star(args.workers + 1, bandwidth="1Gbps", latency="50us")
    stragglers = {"base": 0.002, "straggler": "lognormal", "options": {"sigma": 0.6}}
    for mode in ("sync", "async"):
        strategy = EASGD(alpha=args.alpha, period=args.period, mode=mode)
        result = sim.run(
            strategy,
            "mlp_digits",
            graph,
            steps=100_000,
            max_time=args.budget,
            compute=stragglers,
            eval_every=20,
        )
        s = result.summary
        print(f"{mode:>5}: {s['steps']} centre updates, final loss {s['final_loss']:.4f}")
    if args.check:
        strategy = EASGD(alpha=args.alpha, period=args.period)
        report = check(strategy, "mlp_digits", world_size=args.workers + 1, steps=10)
        print(report)
        report.raise_for_differences()


if __name__ == "__main__":
    main()
