"""The network engine at datacenter scale: each figure of issue 25, fast path beside plain.

Cases (one core each, CPU seconds including building the topology and the network):

* ``h16384``: a step of a 131,072-GPU cluster, ``topologies.hierarchical(16384, 8,
  inter_bandwidth="400Gbps")``, hierarchical all-reduce of a 70B model's bf16 gradients
  (140e9 bytes), flow-level (target < 10 s);
* ``h512``, ``h2048``: the same at 512 and 2,048 nodes, where the plain flow table still runs
  (the simulated times must agree to 1e-9; they agree bit for bit);
* ``ring4096``: a 4,096-rank ring all-reduce of 1 GB on ``topologies.fat_tree(26)``
  (target < 1 s);
* with ``--rank``, each case also with ``pace="rank"`` (target: within 5x of ``"step"``).

"fast" is the engine as it is; "plain" turns off rounds held as classes
(``sim.flows.FlowTable.compress = False``): every flow in the numpy table, as before issue 25
(routing and set-up are the same exact code in both). Each case runs in a process of its own,
so the peak RSS printed is that case's alone. Usage::

    python benchmarks/scale_network.py            # all cases, fast and plain where it runs
    python benchmarks/scale_network.py --cases h2048 ring4096 --rank
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

#: name -> (topology builder source, collective keyword arguments, runs plain by default).
CASES = {
    "h512": ("topologies.hierarchical(512, 8, inter_bandwidth='400Gbps')", "hier", True),
    "h2048": ("topologies.hierarchical(2048, 8, inter_bandwidth='400Gbps')", "hier", True),
    "h16384": ("topologies.hierarchical(16384, 8, inter_bandwidth='400Gbps')", "hier", False),
    "ring4096": ("topologies.fat_tree(26)", "ring", True),
}
#: kind -> (op, bytes, algorithm, ranks or None for every host).
COLLECTIVES: dict[str, tuple[str, float, str, range | None]] = {
    "hier": ("all_reduce", 140e9, "hierarchical", None),
    "ring": ("all_reduce", 1e9, "ring", range(4096)),
}


def one(case: str, plain: bool, pace: str) -> dict:
    """Run one case in this process; return its CPU time, simulated time and peak RSS."""
    import topologies
    from sim.flows import FlowTable
    from sim.timing import collective_time

    FlowTable.compress = not plain
    build, kind, _ = CASES[case]
    start = time.process_time()
    topology = eval(build, {"topologies": topologies})  # noqa: S307 (our own table)
    op, nbytes, algorithm, ranks = COLLECTIVES[kind]
    simulated = collective_time(topology, op, nbytes, algorithm=algorithm, ranks=ranks, pace=pace)
    cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {"cpu_s": cpu, "simulated_s": simulated, "peak_rss_mib": peak}


def spawn(case: str, plain: bool, pace: str, timeout: float) -> dict | None:
    """Run one case in a fresh process; None where it ran past ``timeout``."""
    cmd = [sys.executable, __file__, "--one", case, "--pace", pace] + (["--plain"] if plain else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rank", action="store_true", help="also run pace='rank'")
    parser.add_argument("--plain-all", action="store_true", help="run plain at h16384 too")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pace", default="step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.plain, args.pace)))
        return
    print(
        f"{'case':<10} {'pace':<5} {'fast s':>8} {'plain s':>8} {'speed-up':>8} "
        f"{'simulated s (fast)':>20} {'rel. diff':>9} {'RSS fast':>9} {'RSS plain':>9}"
    )
    for case in args.cases:
        for pace in ["step", "rank"] if args.rank else ["step"]:
            fast = spawn(case, False, pace, args.timeout)
            runs_plain = CASES[case][2] or args.plain_all
            slow = spawn(case, True, pace, args.timeout) if runs_plain else None

            def cell(run: dict | None, key: str, fmt: str) -> str:
                if run is None:  # not run, or past the timeout
                    return "-".rjust(int(fmt.split(".")[0]))
                return format(run[key], fmt)

            diff = "-"
            speed = "-"
            if fast and slow:
                diff = f"{abs(fast['simulated_s'] - slow['simulated_s']) / slow['simulated_s']:.1e}"
                speed = f"{slow['cpu_s'] / fast['cpu_s']:.1f}x"
            print(
                f"{case:<10} {pace:<5} {cell(fast, 'cpu_s', '8.2f')} {cell(slow, 'cpu_s', '8.2f')} "
                f"{speed:>8} {cell(fast, 'simulated_s', '20.12f')} {diff:>9} "
                f"{cell(fast, 'peak_rss_mib', '9.0f')} {cell(slow, 'peak_rss_mib', '9.0f')}",
                flush=True,
            )


if __name__ == "__main__":
    main()
