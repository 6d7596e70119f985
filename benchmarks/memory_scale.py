"""Memory of a simulated run's set-up as the ranks grow: peak RSS per size, side by side.

For each topology family and rank count, a fresh process builds what ``sim.run`` builds before
its first event: the topology, the run's set-up, the network, and every rank's communicator,
context and program (``allreduce`` on ``quadratic`` with one sample per batch, so that the
model is tiny and what grows is the per-rank state). It prints the set-up's wall time and how
much the process's peak resident memory grew while building it (``resource.getrusage``), and
that growth per rank: flat per rank when the set-up is O(n), growing with n when it is O(n^2).

``--whole-run`` measures a whole one-step ``sim.run`` instead (``network="analytic"``),
simulation and results included.

``--baseline DIR`` runs the same measurement on another checkout (e.g. the commit before a
change, from ``git archive``) and prints both side by side.

    .venv/bin/python benchmarks/memory_scale.py                       # ring and star, 1k-4k
    .venv/bin/python benchmarks/memory_scale.py --sizes 1024 2048 --families star
    .venv/bin/python benchmarks/memory_scale.py --whole-run --families ring --sizes 1024 2048
    git archive ace93eb | tar -x -C /tmp/base
    .venv/bin/python benchmarks/memory_scale.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent

#: What one measurement runs, in a fresh process (so that peak RSS is this size's alone).
#: It uses only public pieces, so that it runs unchanged on an older checkout.
_CHILD = r"""
import json, resource, sys, time
import simpy
import topologies, workloads
from sim.comm import Fabric
from sim.compute import ComputeModel
from sim.network import Network
from sim.runtime import SimRuntime
from strategies.roles import TrainingSetup, build_role, initial_parameters, make_ledger

family, n, whole = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "run"
workload = workloads.get("quadratic", n_samples=2 * n, batch_size=1)
workload.partition(n, 0)  # the data split, cached in the workload: not the set-up's memory
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if whole:  # the whole run: set-up, one step (analytic network) and the results
    import sim

    sim.run("allreduce", workload, f"{family}:n={n}", steps=1, eval_every=1, network="analytic")
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "kib": after - before}))
    sys.exit(0)
graph = topologies.from_spec(f"{family}:n={n}")
setup = TrainingSetup.create(
    "allreduce", workload, n, steps=1, eval_every=1, host_graph=topologies.host_graph(graph)
)
env = simpy.Environment()
fabric = Fabric(env, Network(env, graph), n)
compute = ComputeModel.parse(0.01)
compute.resolve(workload, 0, workers=len(setup.workers))
ledger = make_ledger(setup, clock=lambda: 0.0, bytes_sent=lambda: 0.0)
runtime = SimRuntime(env, compute, ledger)
initial = initial_parameters(setup)
nodes = topologies.rank_nodes(graph)
try:  # as sim.run builds its ranks: one layout for all (a checkout that has one)
    from strategies.roles import RankLayout
    shared = {"layout": RankLayout.of(setup, nodes)}
except ImportError:
    shared = {"nodes": nodes}
roles = [
    build_role(setup, rank, fabric.communicator(rank), runtime, initial.clone, **shared)
    for rank in range(n)
]
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "kib": after - before}))
"""


def measure(family: str, n: int, checkout: Path, whole: bool = False) -> dict[str, float]:
    """Set-up (or ``whole`` run) seconds and peak-RSS growth (KiB) of ``n`` ranks on
    ``family``, run from ``checkout``'s packages."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, family, str(n), "run" if whole else "setup"],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": last}  # type: ignore[dict-item]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cells(m: dict[str, float], n: int) -> list[str]:
    if "error" in m:
        return [str(m["error"])[:30], "", ""]
    mib = m["kib"] / 1024
    return [f"{m['seconds']:.2f}", f"{mib:,.0f}", f"{m['kib'] * 1024 / n / 1e3:,.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--families", nargs="+", default=["ring", "star"])
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside")
    parser.add_argument(
        "--whole-run",
        action="store_true",
        help="measure a whole one-step sim.run (network='analytic'), not only its set-up",
    )
    args = parser.parse_args()
    runs = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    what = "one step of sim.run" if args.whole_run else "a simulated run's set-up"
    table = Table(title=f"{what}: allreduce on quadratic, every rank built")
    table.add_column("topology", justify="left")
    table.add_column("ranks", justify="right")
    for label, _ in runs:
        for col in ("wall s", "peak RSS +MiB", "kB / rank"):
            table.add_column(f"{label} {col}", justify="right")
    for family in args.families:
        for n in args.sizes:
            row = [family, f"{n:,}"]
            for _, checkout in runs:
                row += _cells(measure(family, n, checkout, args.whole_run), n)
            table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
