"""Write a strategy once, run it in simulation and on real processes.

``ReduceBroadcastSGD`` averages gradients through rank 0: every worker reduces its gradient
to rank 0, which broadcasts the mean back. It needs nothing but the communicator, so the
simulator charges its real traffic pattern and gloo runs it unchanged; the script checks
that both backends end with the same parameters.

    python examples/custom_strategy.py --steps 20 --nproc 3
"""

from __future__ import annotations

import argparse

import torch

import real
import sim
import topologies
from strategies import Program, Strategy, WorkerContext


class ReduceBroadcastSGD(Strategy):
    """Synchronous SGD whose averaging goes through one root rank."""

    name = "reduce_broadcast_example"

    def worker(self, w: WorkerContext) -> Program:
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.reduce(grads, dst=0, op="sum")
            grads = yield w.comm.broadcast(grads, src=0)
            w.apply(grads / w.world_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=3)
    args = parser.parse_args()
    strategy = ReduceBroadcastSGD()
    simulated = sim.run(strategy, "mlp_digits", topologies.star(args.nproc), steps=args.steps)
    measured = real.run(strategy, "mlp_digits", nproc=args.nproc, steps=args.steps)
    gap = (simulated.parameters - measured.parameters).abs().max().item()
    print(
        f"simulated {simulated.summary['time']:.4f} s, loss {simulated.summary['final_loss']:.4f}"
    )
    print(f"real      {measured.summary['time']:.4f} s, loss {measured.summary['final_loss']:.4f}")
    print(f"largest parameter difference between backends: {gap:.2e}")
    torch.testing.assert_close(measured.parameters, simulated.parameters, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    main()
