"""Centralised SGD through one root, checked on both backends with the conformance kit.

``Broadcast`` reduces every worker's gradient to the root, which steps and broadcasts its
new parameters; the others load them (not a step). The root's replica is the global model,
so it trains exactly as all-reduce SGD does, at the price of all traffic crossing the root.

    python examples/broadcast.py --root 1 --steps 20 --nproc 4
"""

from __future__ import annotations

import argparse

from strategies.broadcast import Broadcast
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=int, default=0, help="the root's worker index")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=4)
    args = parser.parse_args()
    report = check(Broadcast(root=args.root), "mlp_digits", world_size=args.nproc, steps=args.steps)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
