"""How far are the simulator's predictions from real runs on a network we can shape?

Needs root (Linux namespaces, veth, tbf): every case runs on an emulated testbed that
``commsim real --testbed`` builds for the run and removes after.

For each network (a star of 4 hosts at 100 Mbit/s and at 1 Gbit/s, and a two-level tree of
2 nodes x 2 hosts whose node uplinks are slower than the host links):

1. ``commsim calibrate --testbed NET`` fits the network (per-link latency and protocol
   efficiency on the shaped rates), the worker step's times with all ranks computing at once
   (``compute.csv``) and a server's step, into ``OUT/<net>/calibration``;
2. each strategy (all-reduce SGD, sync and async parameter server with one server and three
   workers, Local SGD every 4 steps) trains ``mlp_digits`` with a wide hidden layer (4.8 MB of
   gradients: communication-heavy) for ``--steps`` steps on the testbed (``commsim real
   --testbed``);
3. the simulator predicts the same run twice: **uncalibrated** (the spec's topology,
   ``compute = "measure"``: one process alone, no server cost, no header overhead, max-min
   fair sharing) and **calibrated** (the calibration's topology and ``compute.csv`` as the
   ``trace`` straggler model, its server step and the flows' fitted ``unfairness``); both
   under gloo's rule for ``auto`` (the library the real runs use: no algorithm forced).

The last two columns predict each real run again with its own compute times replayed (its
``compute.csv`` as the ``trace``) on the calibrated network, under gloo's rule and under the
simulator's own (``commsim``, what a run that names no rule gets): what is left is the
network model's and the collectives' error alone.

``--networks star3`` runs the newcomer's case instead: 3 ranks, the default ``mlp_digits``
(19 KB of gradients), Local SGD, on a 100 Mbit/s star.

The metric is time per step in steady state, from each run's ``step`` rows:
``(time[steps] - time[2]) / (steps - 2)`` (the first steps pay for connection set-up, in
real runs only). Prints one table (measured, both predictions and their relative errors,
the calibrated prediction again with max-min fair sharing (``unfairness = 0``) to show what
that parameter does, and the cores the kernel spent in softirq, i.e. forwarding packets
through the testbed's veth links, bridges and tbf queues, per second of the real run),
writes it as ``OUT/table.md`` and the loss-against-time overlay of the first network as
``OUT/sim_vs_real.png``.

Run: ``sudo .venv/bin/python benchmarks/sim_vs_real.py --out results/sim_vs_real``
(about 9 minutes on 2 cores; ``--networks star100`` for one network; ``--repeats 3`` runs
each real case three times, about 5 more minutes each, and compares the predictions with
their mean). Finished cases and calibrations in ``--out`` are reused; ``commsim calibrate
--refit --out OUT/<net>/calibration`` fits a calibration's measurements again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

NETWORKS = {
    "star100": "star:n=4,bandwidth=100Mbps",
    "star1g": "star:n=4,bandwidth=1Gbps",
    "tree": "hierarchical:nodes=2,gpus_per_node=2,intra_bandwidth=1Gbps,inter_bandwidth=50Mbps",
    # A newcomer's first comparison (issue 23): 3 ranks, the default 19 KB model, where the
    # simulator's own size rule picked halving-doubling and gloo runs a ring.
    "star3": "star:n=3,bandwidth=100Mbps",
}
STRATEGIES = {
    "allreduce": "allreduce",
    "ps_sync": "parameter_server",
    "ps_async": "parameter_server:mode=async",
    "local_sgd": "local_sgd:period=4",
}
WORKLOAD = "mlp_digits:hidden=16384"
#: Networks whose cases train another workload, and the strategies they run.
WORKLOADS = {"star3": "mlp_digits"}
CASES = {"star3": ["local_sgd"]}
#: Its steps take ~2 ms: 20 of them are mostly noise.
CASE_STEPS = {"star3": 200}
#: Evaluation points cost a real run a copy of every owner's replica, which the simulator
#: does not charge: every 2 steps made Local SGD's worker steps 53 ms instead of 34 ms.
EVAL_EVERY = 5


def step_time(metrics: pd.DataFrame, first: int = 2) -> float:
    """Seconds per global step between step ``first`` and the last."""
    steps = metrics[metrics["kind"] == "step"].set_index("step")["time"]
    last = int(steps.index.max())
    return float((steps[last] - steps[first]) / (last - first))


def _spec(text: str) -> tuple[str, dict[str, Any]]:
    from strategies.specs import parse_spec

    return parse_spec(text, "spec")


def _softirq_seconds() -> float:
    """CPU seconds the whole machine has spent in softirq since boot (``/proc/stat``)."""
    import os

    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return int(fields[7]) / os.sysconf("SC_CLK_TCK")  # cpu user nice system idle iowait irq softirq


def real_run(
    network: str, strategy: str, steps: int, out: Path, workload: str = WORKLOAD
) -> tuple[Any, float]:
    """Train on the testbed; the run, and the cores the kernel spent in softirq during it
    (the machine's softirq seconds over the run's time: start-up, imports and rendezvous,
    moves next to no packets; NaN for a stored run measured without it)."""
    from runs import RunResult

    kernel_file = out / "softirq.json"
    if not (out / "run.json").is_file():
        before = _softirq_seconds()
        command = [
            *(sys.executable, "-m", "real", "--testbed", network, "--strategy", strategy),
            *("--workload", workload, "--steps", str(steps), "--eval-every", str(EVAL_EVERY)),
            *("--out", str(out), "--no-progress"),
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        kernel_file.write_text(json.dumps({"softirq_seconds": _softirq_seconds() - before}))
    result = RunResult.load(out)
    if not kernel_file.is_file():
        return result, float("nan")
    softirq = json.loads(kernel_file.read_text())["softirq_seconds"]
    return result, softirq / float(result.summary["time"])


def sim_run(
    topology: Any,
    strategy: str,
    steps: int,
    compute: Any,
    network: Any = "flow",
    workload: str = WORKLOAD,
) -> Any:
    import sim
    import strategies
    import workloads

    name, options = _spec(strategy)
    work_name, work_options = _spec(workload)
    result = sim.run(
        strategies.get(name, **options),
        workloads.get(work_name, **work_options),
        topology,
        steps=steps,
        eval_every=EVAL_EVERY,
        compute=compute,
        network=network,
    )
    return result


def gradients_per_rank(result: Any) -> dict[int, int]:
    """How many gradients each rank computed (an asynchronous server's workers need not
    compute as many)."""
    return {int(k): int(v) for k, v in result.compute.groupby("rank").size().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/sim_vs_real"))
    parser.add_argument(
        "--networks", nargs="+", default=[n for n in NETWORKS if n != "star3"], choices=NETWORKS
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="real runs per case (measured: their mean; spread: (max - min) / mean)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: run each case at least once")

    import topologies
    from studies.calibration import calibrate

    rows = []
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    for net in args.networks:
        spec, workload = NETWORKS[net], WORKLOADS.get(net, WORKLOAD)
        cal_dir = args.out / net / "calibration"
        if not (cal_dir / "calibration.json").is_file():
            print(f"[{net}] calibrating {spec}", flush=True)
            calibrate(
                workload, cal_dir, testbed=spec, steps=20, points=6, repeats=3, progress=False
            )
        fitted = json.loads((cal_dir / "calibration.json").read_text())
        server = fitted["server_step"]
        unfair = fitted.get("unfairness") or {}
        # The library's own rule, not the algorithms the calibration's fits preferred
        # (fitted["auto"]): no case may need an algorithm forced to be right (issue 23).
        calibrated_network = {
            "collectives": "gloo",
            "unfairness": unfair.get("unfairness", 0.0),
        }
        calibrated_compute = {
            "straggler": "trace",
            "options": {"path": cal_dir},
            "server": server,
        }
        calibrated_topology = topologies.load(cal_dir / "topology.json")
        steps = CASE_STEPS.get(net, args.steps)
        for label in CASES.get(net, args.strategies):
            strategy = STRATEGIES[label]
            print(f"[{net}] {label}: real", flush=True)
            runs = [
                real_run(spec, strategy, steps, args.out / net / _run_name(label, r), workload)
                for r in range(args.repeats)
            ]
            measured = runs[0][0]
            times = [step_time(run.metrics) for run, _ in runs]
            softirq = sum(cores for _, cores in runs) / len(runs)
            uncal = sim_run(spec, strategy, steps, "measure", {"collectives": "gloo"}, workload)
            cal = sim_run(
                calibrated_topology,
                strategy,
                steps,
                calibrated_compute,
                calibrated_network,
                workload,
            )
            fair = sim_run(
                calibrated_topology,
                strategy,
                steps,
                calibrated_compute,
                {**calibrated_network, "unfairness": 0.0},
                workload,
            )
            # The network alone: each real run's own compute times replayed (its
            # compute.csv as a trace), so only the network model and the collectives' choice
            # stand between prediction and measurement; under gloo's rule and under the
            # simulator's own (a run's default, what a newcomer compared before sim
            # followed the library).
            directories = [args.out / net / _run_name(label, r) for r in range(args.repeats)]

            replayed = {
                rule: [
                    step_time(
                        sim_run(
                            calibrated_topology,
                            strategy,
                            steps,
                            {"straggler": "trace", "options": {"path": d}, "server": server},
                            {**calibrated_network, "collectives": rule},
                            workload,
                        ).metrics
                    )
                    for d in directories
                ]
                for rule in ("gloo", "commsim")
            }
            r_gloo, r_own = (sum(t) / len(t) for t in replayed.values())
            m = sum(times) / len(times)
            u, c, f = (step_time(r.metrics) for r in (uncal, cal, fair))
            rows.append(
                {
                    "network": net,
                    "strategy": label,
                    "measured_s": m,
                    "spread": (max(times) - min(times)) / m,
                    "uncalibrated_s": u,
                    "uncalibrated_err": (u - m) / m,
                    "calibrated_s": c,
                    "calibrated_err": (c - m) / m,
                    "fair_err": (f - m) / m,
                    "replayed_err": (r_gloo - m) / m,
                    "own_rule_err": (r_own - m) / m,
                    "softirq_cores": softirq,
                }
            )
            print(
                f"    measured {m:.4f} s/step ({len(times)} runs: "
                + ", ".join(f"{t:.4f}" for t in times)
                + f"), uncalibrated {u:.4f} ({(u - m) / m:+.1%}), "
                f"calibrated {c:.4f} ({(c - m) / m:+.1%}; fair sharing {(f - m) / m:+.1%}), "
                f"softirq {softirq:.2f} cores",
                flush=True,
            )
            if "async" in strategy:
                print(
                    f"    gradients per rank: real {gradients_per_rank(measured)}, "
                    f"calibrated sim {gradients_per_rank(cal)}",
                    flush=True,
                )
            curves.setdefault(net, {})[label] = (measured.metrics, cal.metrics)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    text = _markdown(table)
    (args.out / "table.md").write_text(text)
    print(text)
    if curves:
        first = next(iter(curves))
        _overlay(curves[first], NETWORKS[first], args.out / "sim_vs_real.png")


def _run_name(label: str, repeat: int) -> str:
    """A real run's directory: the first repeat keeps the case's own name."""
    return label if repeat == 0 else f"{label}-{repeat}"


def _markdown(table: pd.DataFrame) -> str:
    lines = [
        "| network | strategy | measured (s/step) | spread | uncalibrated | error | calibrated "
        "| error | error, fair sharing | run's compute: error | ... commsim rule | softirq (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.network} | {r.strategy} | {r.measured_s:.4f} | {r.spread:.1%} | "
            f"{r.uncalibrated_s:.4f} | "
            f"{r.uncalibrated_err:+.1%} | {r.calibrated_s:.4f} | {r.calibrated_err:+.1%} | "
            f"{r.fair_err:+.1%} | {r.replayed_err:+.1%} | {r.own_rule_err:+.1%} | "
            f"{r.softirq_cores:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _overlay(curves: dict[str, Any], network: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from studies.plot.style import colour

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (measured, cal) in curves.items():
        name = STRATEGIES[label].split(":")[0]
        color = colour(
            name, 1 if label == "ps_async" else 0, 2 if name == "parameter_server" else 1
        )
        for metrics, style, kind in ((measured, "--", "real"), (cal, "-", "sim (calibrated)")):
            evals = metrics[metrics["kind"] == "eval"]
            ax.plot(evals["time"], evals["loss"], style, color=color, label=f"{label} {kind}")
    ax.set(
        xlabel="time (s)",
        ylabel="held-out loss",
        yscale="log",
        title=f"calibrated sim (solid) vs real (dashed), testbed {network}",
    )
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
