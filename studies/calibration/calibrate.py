"""``commsim calibrate``: measure a system with the probe, fit the simulator's parameters,
and write what an experiment loads to predict that system.

A calibration directory holds:

* ``probe/``: the probe's run (every measurement, as ``log`` rows of ``metrics.parquet``);
* ``topology.json``: the network with fitted ``latency`` (per link: a pair's one-way
  intercept over its route's hops; software overheads included) and ``efficiency`` (payload
  / wire bytes, when the links' rates are known: a testbed's shaped links); on loopback
  (``--nproc``), a star whose links carry the fitted bandwidth;
* ``compute.csv``: every rank's worker-step seconds measured with all ranks computing at
  once (the ``trace`` straggler model reads it as it is);
* ``calibrated.toml``: the experiment sections that use them (``[topology]``,
  ``[compute]`` with the measured server step, ``[network]`` with the collectives' algorithms
  and the flows' ``unfairness``);
* ``calibration.json`` and ``report.md``: every fitted parameter and the residuals of each
  fit; ``calibration.png``: the fits drawn over the measurements.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from studies.calibration.fit import (
    CollectiveFit,
    LinkFit,
    UnfairnessFit,
    compute_profile,
    fit_collective,
    fit_link,
    fit_unfairness,
)

__all__ = ["Calibration", "auto_algorithms", "calibrate", "fit_probe", "refit", "write"]

#: What each phase of the probe is called in the report.
OPS = ("all_reduce", "broadcast")


@dataclass
class Calibration:
    """Everything ``commsim calibrate`` fitted (see the module's docstring for the files)."""

    source: str
    graph: nx.Graph
    links: dict[str, LinkFit]
    latency: float
    efficiency: float | None
    bandwidth: float
    collectives: dict[str, CollectiveFit]
    profile: pd.DataFrame
    compute: dict[str, float]
    server: float
    unfairness: UnfairnessFit | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _pair_name(src: int, dst: int) -> str:
    return f"{src}-{dst}"


def fit_probe(
    logs: pd.DataFrame,
    *,
    nominal: nx.Graph | None,
    world_size: int,
    source: str,
    alone: float | None = None,
    server_alone: float = 0.0,
) -> Calibration:
    """Fit a probe run's ``log`` rows.

    Parameters
    ----------
    logs
        The probe's log rows (``RunResult.logs``).
    nominal
        The topology as shaped (a testbed's spec), whose link rates are known: latency and
        efficiency are fitted onto it. None (loopback): a star of the fitted bandwidth.
    world_size
        Ranks the probe ran on.
    source
        What was measured, in words (for the report).
    alone
        One worker step's seconds (gradient and update) in a process alone, to fit
        ``contention``; None skips it.
    server_alone
        A server step's seconds alone, which the calibration keeps as it is: a sync server
        averages while its workers wait for it, so nothing competes for its cores.
    """
    import topologies
    from sim.routing import Router

    pings = logs.dropna(subset=["pingpong"])
    if pings.empty:
        raise ValueError("the probe recorded no ping-pong; it needs at least two ranks")
    links = {
        _pair_name(int(src), int(dst)): fit_link(group["size"], group["pingpong"])
        for (src, dst), group in pings.groupby(["src", "dst"])
    }
    bandwidth = float(np.median([f.bandwidth for f in links.values()]))
    efficiency: float | None = None
    if nominal is not None:
        router = Router(nominal)
        per_hop, ratios = [], []
        for name, fit in links.items():
            src, dst = (int(x) for x in name.split("-"))
            route = router.route(src, dst)
            per_hop.append(fit.latency / max(1, int(router.route_hops[route])))
            ratios.append(fit.bandwidth / float(router.route_bottleneck[route]))
        latency = float(np.median(per_hop))
        efficiency = float(min(1.0, np.median(ratios)))
        graph = nominal.copy()
        for _, _, data in graph.edges(data=True):
            data["latency"] = latency
            data["efficiency"] = efficiency
        graph.graph["calibrated"] = source
    else:
        latency = float(np.median([f.latency for f in links.values()])) / 2
        graph = topologies.star(world_size, bandwidth=bandwidth, latency=latency)
        graph.graph["calibrated"] = source
    collectives = _fit_collectives(logs, graph)
    unfairness = _fit_unfairness(logs, graph)
    profile = compute_profile(logs)
    median = float(profile["seconds"].median())
    compute = {
        "median": median,
        "p90": float(profile["seconds"].quantile(0.9)),
        "cv": float(profile["seconds"].std() / profile["seconds"].mean()),
        "steps": int(len(profile)),
    }
    contention = 1.0
    if alone:
        compute["alone"] = alone
        contention = max(1.0, median / alone)
        compute["contention"] = contention
    return Calibration(
        source=source,
        graph=graph,
        links=links,
        latency=latency,
        efficiency=efficiency,
        bandwidth=bandwidth,
        collectives=collectives,
        profile=profile,
        compute=compute,
        server=server_alone,
        unfairness=unfairness,
    )


#: Fan-outs the simulator runs per candidate ``unfairness`` (each network starts from the same
#: seed, so every candidate sees the same normal draws and evenness falls smoothly with it).
FANOUT_DRAWS = 48


def _fit_unfairness(logs: pd.DataFrame, graph: nx.Graph) -> UnfairnessFit | None:
    """Fit ``network.unfairness`` to the probe's fan-out (None without one, or with a single
    receiver, whose evenness is 1 whatever the sharing)."""
    if "fanout" not in logs:
        return None
    rows = logs.dropna(subset=["fanout"])
    if rows["dst"].nunique() < 2:
        return None
    root, size = int(rows["src"].iloc[0]), float(rows["size"].iloc[0])
    receivers = sorted(int(r) for r in rows["dst"].unique())

    def simulate(unfairness: float) -> float:
        return _simulated_evenness(graph, root, receivers, size, unfairness)

    return fit_unfairness(rows, simulate)


def _simulated_evenness(
    graph: nx.Graph, root: int, receivers: list[int], size: float, unfairness: float
) -> float:
    """The simulator's mean evenness of :data:`FANOUT_DRAWS` fan-outs of ``size`` bytes from
    ``root``, one after another on one network (each draws its flows' weights)."""
    import simpy

    from sim.network import Network

    env = simpy.Environment()
    net = Network(env, graph, unfairness=unfairness, seed=0, record=False)
    ratios: list[float] = []

    def fanouts() -> Any:
        for _ in range(FANOUT_DRAWS):
            start = env.now
            sends = [net.send(root, dst, size) for dst in receivers]
            yield simpy.AllOf(env, sends)
            times = np.array([s.value for s in sends]) - start
            ratios.append(float(times.mean() / times.max()))

    env.process(fanouts())
    env.run()
    return float(np.mean(ratios))


def _fit_collectives(logs: pd.DataFrame, graph: nx.Graph) -> dict[str, CollectiveFit]:
    from sim.collectives.select import supported
    from sim.timing import collective_time

    fits = {}
    for op in OPS:
        if op not in logs:
            continue
        rows = logs.dropna(subset=[op])
        if rows.empty:
            continue
        # A collective lasts until its last rank is done: the slowest rank of each repeat.
        slowest = rows.groupby(["size", "repeat"])[op].max().reset_index()

        def predict(algorithm: str, size: float, op: str = op) -> float:
            return collective_time(graph, op, size, algorithm=algorithm)

        algorithms = []
        for algorithm in ("auto", *supported(op)):  # auto: the simulator's own choice
            try:
                predict(algorithm, float(slowest["size"].iloc[0]))
            except ValueError:  # e.g. hierarchical without nodes
                continue
            algorithms.append(algorithm)
        fits[op] = fit_collective(op, slowest["size"], slowest[op], predict, algorithms)
    return fits


# --------------------------------------------------------------------------------------------
# Measuring


def _probe_options(min_size: int, max_size: int, points: int, repeats: int) -> dict[str, Any]:
    return {"min_size": min_size, "max_size": max_size, "points": points, "repeats": repeats}


def calibrate(
    workload: str,
    out: str | os.PathLike[str],
    *,
    nproc: int | None = None,
    testbed: str | None = None,
    steps: int = 30,
    min_size: int = 1024,
    max_size: int = 4 * 2**20,
    points: int = 7,
    repeats: int = 3,
    progress: bool = True,
) -> Calibration:
    """Run the probe on ``nproc`` local processes (loopback) or on a testbed, fit, write.

    ``workload`` is a spec (``"mlp_digits:hidden=4096"``): its worker steps are timed
    ``steps`` times on every rank at once. Returns the :class:`Calibration` written to
    ``out``.
    """
    import torch

    import topologies
    import workloads
    from runs import RunResult
    from sim.compute import measure_server_step, measure_step_time
    from strategies.specs import parse_spec
    from studies.calibration.probe import CalibrationProbe

    if (nproc is None) == (testbed is None):
        raise ValueError("give one of --nproc N (loopback) or --testbed SPEC (shaped links)")
    if steps < 2:
        raise ValueError(f"steps={steps}: time at least 2 worker steps (the first is a warm-up)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name, options = parse_spec(workload, "--workload")
    work = workloads.get(name, **options)
    probe_options = _probe_options(min_size, max_size, points, repeats)
    probe = CalibrationProbe(**probe_options)  # checks the options before anything starts
    probe_dir = out / "probe"
    if testbed is not None:
        nominal: nx.Graph | None = topologies.from_spec(testbed)
        world = len(topologies.hosts(nominal))
        spec = "calibration_probe:" + ",".join(f"{k}={v}" for k, v in probe_options.items())
        command = [
            *(sys.executable, "-m", "real", "--testbed", testbed),
            *("--import", "studies.calibration.named", "--strategy", spec),
            *("--workload", workload, "--steps", str(steps), "--eval-every", str(steps)),
            *("--out", str(probe_dir), "--progress" if progress else "--no-progress"),
        ]
        # The probe's own summary table would only confuse: the report follows.
        status = subprocess.run(command, check=False, stdout=subprocess.DEVNULL).returncode
        if status != 0:
            raise RuntimeError(f"the probe failed on the testbed (exit {status}); see above")
        source = f"testbed {testbed}"
    else:
        import real

        assert nproc is not None  # exactly one of nproc and testbed (checked above)
        nominal, world = None, int(nproc)
        if world < 2:
            raise ValueError(f"--nproc {nproc}: calibrating a network needs at least 2 ranks")
        real.run(
            probe,
            work,
            nproc=world,
            steps=steps,
            eval_every=steps,
            out=probe_dir,
            progress=progress,
        )
        source = f"{world} local processes (loopback)"
    result = RunResult.load(probe_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every rank runs
    try:
        alone = measure_step_time(work, update=True)
        server_alone = measure_server_step(work, workers=world - 1)
    finally:
        torch.set_num_threads(threads)
    calibration = fit_probe(
        result.logs,
        nominal=nominal,
        world_size=world,
        source=source,
        alone=alone,
        server_alone=server_alone,
    )
    calibration.extra = {
        "workload": workload,
        "probe": probe.config(),
        "steps": steps,
        "testbed": _absolute_if_file(testbed),
        "world_size": world,
    }
    write(calibration, out)
    return calibration


def _absolute_if_file(spec: str | None) -> str | None:
    """A testbed given as a file, by its absolute path (``refit`` may run elsewhere)."""
    if spec is not None and Path(spec).is_file():
        return str(Path(spec).resolve())
    return spec


def refit(out: str | os.PathLike[str]) -> Calibration:
    """Fit a calibration directory's probe again without measuring again (after a change to
    the fits or the simulator), keeping what was measured alone; rewrite the directory."""
    import topologies
    from runs import RunResult

    out = Path(out)
    summary_file = out / "calibration.json"
    if not summary_file.is_file() or not (out / "probe" / "run.json").is_file():
        raise ValueError(f"{out} is not a calibration directory (no calibration.json / probe/)")
    try:
        before = json.loads(summary_file.read_text())
        if not isinstance(before, dict):
            raise TypeError(f"a {type(before).__name__}, not an object")
        testbed, world = before.get("testbed"), int(before["world_size"])
        source, server = str(before["source"]), float(before["server_step"])
        compute = before.get("compute") or {}
        if not isinstance(compute, dict) or not isinstance(testbed, str | None):
            raise TypeError("'compute' or 'testbed' of the wrong type")
        alone = compute.get("alone")
    except KeyError as exc:
        raise ValueError(f"{summary_file} lacks {exc}: calibrate again instead") from None
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ValueError(
            f"{summary_file} is not a calibration's ({reason}): calibrate again instead"
        ) from None
    logs = RunResult.load(out / "probe").logs
    try:
        calibration = fit_probe(
            logs,
            nominal=topologies.from_spec(testbed) if testbed else None,
            world_size=world,
            source=source,
            alone=alone,
            server_alone=server,
        )
    except (KeyError, IndexError) as exc:  # a probe run without the probe's rows
        raise ValueError(
            f"{out / 'probe'} lacks the probe's measurements ({exc}): calibrate again instead"
        ) from None
    keys = ("workload", "probe", "steps", "testbed", "world_size")
    calibration.extra = {key: before.get(key) for key in keys}
    write(calibration, out)
    return calibration


# --------------------------------------------------------------------------------------------
# Writing


def _summary(c: Calibration) -> dict[str, Any]:
    return {
        "source": c.source,
        **c.extra,
        "network": {
            "latency_per_link": c.latency,
            "efficiency": c.efficiency,
            "pair_bandwidth_median": c.bandwidth,
        },
        "links": {name: asdict(fit) for name, fit in c.links.items()},
        "collectives": {op: asdict(fit) for op, fit in c.collectives.items()},
        "compute": c.compute,
        "server_step": c.server,
        "unfairness": asdict(c.unfairness) if c.unfairness else None,
        "auto": auto_algorithms(c),
    }


def write(c: Calibration, out: str | os.PathLike[str]) -> Path:
    """Write a calibration's files into ``out`` (see the module's docstring)."""
    import topologies
    from runs.schema import COMPUTE_FILE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    topologies.save(c.graph, out / "topology.json")
    c.profile.to_csv(out / COMPUTE_FILE, index=False)
    (out / "calibration.json").write_text(json.dumps(_summary(c), indent=2) + "\n")
    (out / "calibrated.toml").write_text(
        f"# What 'commsim calibrate' measured on {c.source}: run it as an experiment\n"
        "# (--set strategy=parameter_server ...), or point yours at these files (paths are\n"
        "# relative to this file).\n"
        + _workload_section(c)
        + '[topology]\nfile = "topology.json"\n\n'
        + f'[compute]\nstraggler = "trace"\npath = "{COMPUTE_FILE}"\n'
        + f"server = {c.server:.6g}\n"
        + _network_section(c)
    )
    (out / "report.md").write_text(report(c))
    _figure(c, out / "calibration.png")
    return out


def auto_algorithms(c: Calibration) -> dict[str, str]:
    """What ``auto`` should stand for in the simulator: each collective's best-fitting
    algorithm, where it is not ``auto``'s own rule."""
    return {op: fit.algorithm for op, fit in c.collectives.items() if fit.algorithm != "auto"}


def _workload_section(c: Calibration) -> str:
    """The workload whose steps ``compute.csv`` timed (the profile belongs to it)."""
    from strategies.specs import parse_spec

    spec = c.extra.get("workload")
    if not spec:
        return ""
    name, options = parse_spec(spec, "workload")
    lines = [f"name = {_toml(name)}"]
    lines += [
        f"{_key(key)} = {_toml(value)}" for key, value in options.items() if value is not None
    ]
    return "[workload]\n" + "\n".join(lines) + "\n\n"


def _key(name: str) -> str:
    """A TOML key: bare when it may be, else quoted.

    >>> _key("hidden"), _key("a.b")
    ('hidden', '"a.b"')
    """
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml(name)


def _toml(value: Any) -> str:
    """A TOML literal of a string, bool or number (keys are quoted strings).

    >>> _toml("a.b"), _toml(True), _toml(float("inf")), _toml(2)
    ('"a.b"', 'true', 'inf', '2')
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value, ensure_ascii=False)


def _network_section(c: Calibration) -> str:
    chosen = auto_algorithms(c)
    lines = []
    if chosen:
        table = ", ".join(f'{op} = "{algorithm}"' for op, algorithm in chosen.items())
        lines.append(f"collectives = {{ {table} }}")
    if c.unfairness is not None and c.unfairness.unfairness > 0:
        lines.append(f"unfairness = {c.unfairness.unfairness:.4g}")
    return "\n[network]\n" + "\n".join(lines) + "\n" if lines else ""


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def report(c: Calibration) -> str:
    """The calibration as a Markdown report: parameters, then each fit's residuals."""
    from topologies.units import format_bandwidth

    lines = [f"# Calibration: {c.source}", ""]
    lines += ["## Network", ""]
    lines += [f"* latency per link: {_ms(c.latency)} (one-way intercept / hops)"]
    if c.efficiency is not None:
        lines += [f"* efficiency (payload / wire bytes): {c.efficiency:.4f}"]
    lines += [f"* pair bandwidth (payload, median): {format_bandwidth(c.bandwidth)}"]
    if c.unfairness is not None:
        u = c.unfairness
        lines += [
            f"* unfairness of concurrent flows: {u.unfairness:.2f} (a fan-out's receivers "
            f"finish at {u.measured:.3f} of the last one's time on average over {u.repeats} "
            f"repeats; simulated at this value {u.predicted:.3f}, max-min fair "
            f"{u.curve[0.0]:.3f})"
        ]
    lines += [""]
    lines += ["| pair | latency | bandwidth | max residual |", "|---|---|---|---|"]
    for name, link in c.links.items():
        lines.append(
            f"| {name} | {_ms(link.latency)} | {format_bandwidth(link.bandwidth)} | "
            f"{link.max_residual:.1%} |"
        )
    lines += ["", "## Collectives (measured vs the simulator on the calibrated topology)", ""]
    for op, fit in c.collectives.items():
        ranked = sorted(fit.predicted, key=fit.rms)
        lines.append(
            f"* {op}: best `{fit.algorithm}`, overhead {_ms(fit.overhead)} per call; "
            + ", ".join(f"{a} {fit.rms(a):.1%}" for a in ranked)
            + f" RMS error on the {fit.largest} largest sizes, without it"
        )
        lines.append(
            "  * residuals with it: "
            + ", ".join(f"{int(s)} B {r:+.1%}" for s, r in zip(fit.sizes, fit.residuals))
        )
    lines += ["", "## Compute", ""]
    comp = c.compute
    lines += [
        f"* worker step (all ranks at once): median {_ms(comp['median'])}, p90 "
        f"{_ms(comp['p90'])}, cv {comp['cv']:.2f} over {comp['steps']} steps",
    ]
    if "alone" in comp:
        lines += [
            f"* one process alone (gradient and update): {_ms(comp['alone'])}; contention "
            f"{comp['contention']:.2f}"
        ]
    lines += [f"* server step (average + update, one process alone): {_ms(c.server)}", ""]
    return "\n".join(lines)


def _figure(c: Calibration, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = _draw(c)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw(c: Calibration) -> Any:
    from studies.plot.style import styled

    @styled
    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for name, link in c.links.items():
            sizes = np.asarray(link.sizes)
            (line,) = left.plot(sizes, link.predict(sizes), label=f"pair {name} fit")
            left.plot(sizes, link.measured, "o", color=line.get_color())
        for op, fit in c.collectives.items():
            sizes = np.asarray(fit.sizes)
            predicted = np.asarray(fit.predicted[fit.algorithm]) + fit.overhead
            (line,) = right.plot(sizes, predicted, label=f"{op}: sim {fit.algorithm} + overhead")
            right.plot(sizes, fit.measured, "o", color=line.get_color())
        titles = {
            left: ("message (bytes)", "one-way time (s)", "ping-pong: measured (dots) and fit"),
            right: ("bytes per rank", "time (s)", "collectives: measured (dots) and simulated"),
        }
        for ax, (xlabel, ylabel, title) in titles.items():
            ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
            ax.legend(fontsize="small")
        fig.tight_layout()
        return fig

    return draw()
