"""Hierarchical SGD (all-reduce inside nodes, average across nodes), on both backends.

Local processes are all one node, so ``Hierarchical`` alone would only all-reduce inside
it. ``--ranks-per-node`` imposes a layout (rank ``r`` on node ``r // ranks_per_node``) by
overriding ``node_layout``, so the leaders' cross-node average and the broadcasts inside
the nodes run on gloo too; the conformance kit checks that both backends agree.

    python examples/hierarchical.py --period 4 --ranks-per-node 2 --steps 20 --nproc 4
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from strategies.context import WorkerContext
from strategies.hierarchical import Hierarchical
from studies.conformance import check


class OnNodes(Hierarchical):
    """Hierarchical with ``ranks_per_node`` consecutive ranks on each node (0: the
    backend's own layout)."""

    def __init__(self, period: int, ranks_per_node: int) -> None:
        if ranks_per_node < 0:
            raise ValueError(f"ranks_per_node={ranks_per_node!r} must be >= 0")
        super().__init__(period=period)
        self.options["ranks_per_node"] = ranks_per_node  # run.json records the layout
        self.ranks_per_node = ranks_per_node

    def node_layout(self, w: WorkerContext) -> Sequence[int]:
        if not self.ranks_per_node:
            return w.nodes
        return [r // self.ranks_per_node for r in range(w.world_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--ranks-per-node", type=int, default=2, help="0: the launcher's nodes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=4)
    args = parser.parse_args()
    strategy = OnNodes(args.period, args.ranks_per_node)
    report = check(strategy, "mlp_digits", world_size=args.nproc, steps=args.steps)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
