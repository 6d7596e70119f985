"""Local SGD from the catalogue: period, post-local warm-up and AdaComm's adaptive period.

Simulates the strategy on a star network and prints the run's summary and the consensus
distance at each evaluation; ``--check`` also runs it on local gloo processes and compares.

    python examples/local_sgd.py --period 8 --warmup 20 --steps 200
    python examples/local_sgd.py --period adaptive --initial-period 16 --steps 200
    python examples/local_sgd.py --period 4 --steps 20 --check
"""

from __future__ import annotations

import argparse

import sim
import topologies
from strategies import LocalSGD
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", default="8", help="local steps, or 'adaptive'")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--initial-period", type=int, default=None)
    parser.add_argument("--compression", default=None, help="e.g. topk, qsgd, fp16")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--check", action="store_true", help="also run on gloo and compare")
    args = parser.parse_args()
    period = args.period if args.period == "adaptive" else int(args.period)
    strategy = LocalSGD(
        period=period,
        warmup=args.warmup,
        initial_period=args.initial_period,
        compression=args.compression,
    )
    graph = topologies.star(args.workers, bandwidth="1Gbps", latency="50us")
    result = sim.run(strategy, "mlp_digits", graph, steps=args.steps, eval_every=10)
    print(result.evals[["step", "time", "loss", "consensus"]].to_string(index=False))
    if "period" in result.logs:
        print("periods chosen:", list(result.logs["period"].dropna().astype(int)))
    if args.check:
        report = check(strategy, "mlp_digits", world_size=args.workers, steps=args.steps)
        print(report)
        report.raise_for_differences()


if __name__ == "__main__":
    main()
