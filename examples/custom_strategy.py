"""Write a strategy once, run it in simulation and on real processes.

``ReduceBroadcastSGD`` averages gradients through rank 0: every worker reduces its gradient
to rank 0, which broadcasts the sum back. It needs nothing but the communicator, so the
simulator charges its real traffic pattern and gloo runs it unchanged; the conformance kit
checks that both backends take the same steps and end with the same parameters.

    python examples/custom_strategy.py --steps 20 --nproc 3
"""

from __future__ import annotations

import argparse

from strategies import Program, Strategy, WorkerContext
from studies.conformance import check


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
    report = check(ReduceBroadcastSGD(), "mlp_digits", world_size=args.nproc, steps=args.steps)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
