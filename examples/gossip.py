"""Gossip SGD on a communication graph, checked on both backends with the conformance kit.

``--mode sync`` is D-PSGD (Lian et al. 2017): every step, each worker applies its gradient,
then mixes parameters with all its neighbours (Metropolis-Hastings weights); the simulator
and gloo agree bit for bit. ``--mode async`` is AD-PSGD (Lian et al. 2018): active workers
average with one random passive neighbour, without a barrier; arrival order decides on real,
so the check compares the final loss (within 5%). ``--graph topology`` gossips over the
network's own links: a ring of hosts here, which the real ranks are told about too.

    python examples/gossip.py --mode sync --graph one_peer_exponential --nproc 4 --steps 20
"""

from __future__ import annotations

import argparse

import topologies
from strategies.gossip import GRAPHS, MODES, Gossip
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="sync")
    parser.add_argument("--graph", choices=GRAPHS, default="ring")
    parser.add_argument("--nproc", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    strategy = Gossip(graph=args.graph, mode=args.mode)
    report = check(
        strategy,
        "mlp_digits",
        world_size=args.nproc,
        steps=args.steps,
        optimizer={"name": "sgd", "lr": 0.1},
        exact=args.mode == "sync",
        loss_rtol=0.05,
        topology=topologies.ring(args.nproc) if args.graph == "topology" else None,
    )
    print(report)
    graph = report.sim.logs.iloc[0]
    print(f"  spectral gap {graph['spectral_gap']:.4g}, degree {graph['degree']:g}")
    report.raise_for_differences()


if __name__ == "__main__":
    main()
