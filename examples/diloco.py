"""DiLoCo and Streaming DiLoCo: inner AdamW steps, an outer Nesterov step on the averaged
pseudo-gradient; streaming synchronises fragments at staggered steps, overlapping compute.

Simulates both on a slow network and prints time and loss: the streaming variant's
all-reduces hide behind inner steps. ``--check`` runs one on gloo and compares.

    python examples/diloco.py --period 12 --fragments 3 --overlap 2 --steps 96
"""

from __future__ import annotations

import argparse

import sim
import topologies
from strategies import DiLoCo, StreamingDiLoCo
from studies.conformance import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=int, default=12)
    parser.add_argument("--fragments", type=int, default=3)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--compression", default=None, help="outer gradients: fp16, uint8 ...")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=96)
    parser.add_argument("--check", action="store_true", help="also run on gloo and compare")
    args = parser.parse_args()
    optimizer = {"inner": {"name": "adamw", "lr": 3e-3}}
    strategies = {
        "DiLoCo": DiLoCo(period=args.period, compression=args.compression),
        "Streaming DiLoCo": StreamingDiLoCo(
            period=args.period,
            fragments=args.fragments,
            overlap=args.overlap,
            compression=args.compression,
        ),
    }
    graph = topologies.star(args.workers, bandwidth="100Mbps", latency="1ms")
    for label, strategy in strategies.items():
        result = sim.run(
            strategy,
            "mlp_digits",
            graph,
            steps=args.steps,
            optimizer=optimizer,
            compute={"base": 0.005},
            eval_every=args.period,
        )
        s = result.summary
        print(f"{label:>17}: {s['time']:.3f} s simulated, final loss {s['final_loss']:.4f}")
    if args.check:
        report = check(
            strategies["Streaming DiLoCo"],
            "mlp_digits",
            world_size=args.workers,
            steps=2 * args.period,
            optimizer=optimizer,
        )
        print(report)
        report.raise_for_differences()


if __name__ == "__main__":
    main()
