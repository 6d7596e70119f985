"""How long a small real run takes, start-up included: several runs in one interpreter.

Each run is ``real.run("allreduce", "quadratic", nproc=4, steps=5)``: almost all of it is
starting the ranks. Prints each run's wall seconds; compare commits by timing whole
processes of the two checkouts in turn (paired, several of each, medians), e.g.::

    for i in 1 2 3 4 5; do
        /usr/bin/time -f %e python benchmarks/real_launch.py --runs 5
        /usr/bin/time -f %e python ../old/benchmarks/real_launch.py --runs 5
    done
"""

from __future__ import annotations

import argparse
import statistics
import time

import real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=4)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.runs):
        start = time.perf_counter()
        real.run("allreduce", "quadratic", nproc=args.nproc, steps=5, timeout=60)
        seconds.append(time.perf_counter() - start)
    rest = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
    print(f"first run {seconds[0]:.2f} s, later runs (median) {rest:.2f} s")


if __name__ == "__main__":
    main()
