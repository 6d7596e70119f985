"""Synchronous gossip on a ring, written the natural way, checked on both backends.

After each optimizer step every worker sends its parameters to both ring neighbours,
receives theirs, and keeps the mean of the three (a doubly stochastic mixing step). Sends
and receives are posted first and waited on together, so their order does not matter (pass
``--recv-first`` to post the receives first). Waiting on each send before posting the
receive (``yield send`` then ``yield recv``) would deadlock on a real world, where a send
completes only once its receive is posted; the simulator reports that at once.

    python examples/custom_ring_gossip.py --steps 20 --nproc 4 [--recv-first]
"""

from __future__ import annotations

import argparse

import torch

from strategies import Program, Strategy, WorkerContext
from studies.conformance import check


class RingGossip(Strategy):
    """Average with both ring neighbours after every step (D-PSGD on a ring)."""

    name = "ring_gossip_example"

    def __init__(self, recv_first: bool = False) -> None:
        super().__init__(recv_first=recv_first)
        self.recv_first = recv_first

    def worker(self, w: WorkerContext) -> Program:
        ring = w.workers
        here = ring.index(w.rank)
        left, right = ring[here - 1], ring[(here + 1) % len(ring)]
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            mine = w.parameters()
            from_left, from_right = torch.empty_like(mine), torch.empty_like(mine)
            sends = [w.comm.send(mine, dst=right), w.comm.send(mine, dst=left)]
            recvs = [w.comm.recv(from_left, src=left), w.comm.recv(from_right, src=right)]
            yield w.comm.wait_all(recvs + sends if self.recv_first else sends + recvs)
            w.load_parameters((mine + from_left + from_right) / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=4)
    parser.add_argument("--recv-first", action="store_true")
    args = parser.parse_args()
    strategy = RingGossip(recv_first=args.recv_first)
    report = check(strategy, "mlp_digits", world_size=args.nproc, steps=args.steps)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
