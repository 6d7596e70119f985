"""Hierarchical SGD (all-reduce inside nodes, average across nodes), on both backends.

The topology says which ranks share a node (the hosts' ``node`` attribute); the real ranks
take their nodes from it too, so the leaders' cross-node average and the broadcasts inside
the nodes run on gloo as in the simulator, and the conformance kit checks that they agree.

    python examples/hierarchical.py --period 4 --ranks-per-node 2 --steps 20 --nproc 4
"""

from __future__ import annotations

import argparse

import topologies
from strategies import Hierarchical
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--ranks-per-node", type=int, default=2)
    parser.add_argument("--compression", default=None, help="e.g. uint8, qsgd (cross-node)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=4)
    args = parser.parse_args()
    if args.ranks_per_node < 1 or args.nproc % args.ranks_per_node:
        parser.error(f"--ranks-per-node {args.ranks_per_node} must divide --nproc {args.nproc}")
    graph = topologies.hierarchical(args.nproc // args.ranks_per_node, args.ranks_per_node)
    strategy = Hierarchical(period=args.period, compression=args.compression)
    report = check(strategy, "mlp_digits", world_size=args.nproc, steps=args.steps, topology=graph)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
