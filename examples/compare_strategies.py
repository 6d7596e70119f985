"""Compare all-reduce with an asynchronous parameter server as the network slows down.

For each bandwidth, both strategies get the same simulated time budget on a star of eight
workers with lognormal stragglers; the script prints the final held-out loss of each and
saves a loss-against-time figure per bandwidth.

    python examples/compare_strategies.py --out results/compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

import sim
import topologies
from strategies import AllReduceSGD, ParameterServer
from studies.load import from_results
from studies.plot import loss_vs_time


def compare(out: Path, bandwidths: list[str], budget: float, workers: int = 8) -> dict:
    """Final loss per (bandwidth, strategy); figures go to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    compute = {"base": 0.002, "straggler": "lognormal", "options": {"sigma": 0.6}}
    finals = {}
    fig, axes = plt.subplots(1, len(bandwidths), figsize=(5 * len(bandwidths), 4), squeeze=False)
    for ax, bandwidth in zip(axes[0], bandwidths):
        results = {}
        for label, strategy, hosts in [
            ("all-reduce", AllReduceSGD(), workers),
            ("PS async", ParameterServer(mode="async", staleness_lr="inverse"), workers + 1),
        ]:
            graph = topologies.star(hosts, bandwidth=bandwidth, latency="50us")
            results[label] = sim.run(
                strategy,
                "mlp_digits",
                graph,
                steps=10**6,
                max_time=budget,
                compute=compute,
                eval_every=20,
            )
            finals[(bandwidth, label)] = results[label].summary["final_loss"]
        loss_vs_time(from_results(results), ax=ax)
        ax.set_title(f"{bandwidth} links")
    fig.savefig(out / "loss_vs_time.png", dpi=100)
    return finals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/compare"))
    parser.add_argument("--bandwidths", nargs="+", default=["100Mbps", "1Gbps", "10Gbps"])
    parser.add_argument("--budget", type=float, default=0.5, help="simulated seconds")
    args = parser.parse_args()
    for (bandwidth, label), loss in compare(args.out, args.bandwidths, args.budget).items():
        print(f"{bandwidth:>8}  {label:<11} final loss {loss:.3f}")
    print(f"figure: {args.out / 'loss_vs_time.png'}")


if __name__ == "__main__":
    main()
