"""Local SGD written the natural way, checked on both backends with the conformance kit.

Each worker takes ``period`` optimizer steps on its own data, then the workers average their
parameters with one all-reduce. Loading the average is not a step, and the global model is
the average of the replicas (the default a strategy declares), so ``steps=42`` means 42
optimizer steps in ``sim`` and on ``real`` alike, whatever the period.

    python examples/custom_local_sgd.py --period 4 --steps 42 --nproc 4
"""

from __future__ import annotations

import argparse
from typing import Annotated

from pydantic import Field

from strategies import Program, Strategy, WorkerContext
from studies.conformance import check


class LocalSGD(Strategy):
    """``period`` local steps, then average the workers' parameters."""

    name = "local_sgd_example"

    # An option is an annotated class attribute: the constructor (LocalSGD(period=8)), its
    # one-line error (period=0 must be an integer >= 1), self.period and run.json come from it.
    period: Annotated[int, Field(ge=1, description="local steps between averagings")] = 4

    def worker(self, w: WorkerContext) -> Program:
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            if w.step % self.period == 0:
                params = w.parameters()
                yield w.comm.all_reduce(params, op="mean")
                w.load_parameters(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--steps", type=int, default=42)
    parser.add_argument("--nproc", type=int, default=4)
    args = parser.parse_args()
    report = check(LocalSGD(args.period), "mlp_digits", world_size=args.nproc, steps=args.steps)
    print(report)
    report.raise_for_differences()


if __name__ == "__main__":
    main()
