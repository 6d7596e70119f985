"""Cross-check commsim's flow model against SimGrid 4.1 (``network/model:raw``) case by case.

Each case builds one platform, runs a traffic pattern through commsim and through SimGrid's
Python bindings, and prints both simulated times, their relative difference and both wall
times. For flow patterns the relative difference is the worst over every
flow's finish time, otherwise over the makespan. SimGrid gets exactly commsim's platform: one simplex SimGrid link per directed commsim
link (same bandwidth and latency) and, for every host pair used, commsim's own route, so the
two differ only in how they simulate. SimGrid weights bandwidth shares by 1 / route latency
(see docs/performance.md), so cases whose contending flows have unequal route latencies are
compared with ``sharing="rtt"``; the pure max-min figure is shown beside it for information.
A second table gives SimGrid its own fat-tree zone and d-mod-k routing instead of commsim's
routes, against commsim's ``routing="single"`` and ``"dmodk"``, and checks that SimGrid's
routes share links as commsim's ``dmodk`` routes do.

SimGrid is optional and not in the project venv: it builds from source (about 8 minutes on
2 cores; see docs/performance.md). Point ``--simgrid-python`` (or ``$SIMGRID_PYTHON``) at an
interpreter that can import it; this script then runs its SimGrid half there.

    .venv/bin/python benchmarks/vs_simgrid.py --simgrid-python /work/simgrid-venv/bin/python
    .venv/bin/python benchmarks/vs_simgrid.py --large   # adds the 1024-rank ring (~90 s)
    .venv/bin/python benchmarks/vs_simgrid.py --fat-tree --large  # fat trees only, k = 4, 8
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

WORKER_FLAG = "--simgrid-worker"


# ---- SimGrid half: stdlib + simgrid only, run in the interpreter that has SimGrid ----------


def simgrid_worker() -> None:
    """Read a platform + pattern spec on stdin, simulate it in SimGrid, print JSON results."""
    import ctypes
    import importlib.util
    import pathlib

    spec = json.load(sys.stdin)
    origin = importlib.util.find_spec("simgrid").origin  # type: ignore[union-attr]
    # The extension ships libsimgrid next to itself with no search path to it.
    for lib in pathlib.Path(origin).parent.glob("libsimgrid.so*"):
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        break
    import simgrid as sg

    wall = time.perf_counter()
    engine = sg.Engine(["commsim", "--cfg=network/model:raw", "--log=root.thres:critical"])
    if "fat_tree" in spec:
        # SimGrid's own fat-tree zone and its own (d-mod-k) routing; host i at position i.
        ft, made = spec["fat_tree"], {}

        def add_host(zone: Any, coord: list[int], ident: int) -> Any:
            made[ident] = zone.add_host(f"h{ident}", 1e9).seal()
            return made[ident]

        engine.netzone_root.add_netzone_fatTree(
            "fat_tree",
            ft["levels"],
            ft["down"],
            ft["up"],
            ft["count"],
            ft["bandwidth"],
            ft["latency"],
            sg.Link.SharingPolicy.SPLITDUPLEX,  # a link per direction, as commsim's
        ).set_host_cb(add_host).seal()
        hosts = [made[i] for i in range(len(made))]
    else:
        zone = engine.netzone_root.add_netzone_full("platform")
        hosts = [zone.add_host(f"h{i}", 1e9) for i in range(spec["hosts"])]
        links = [
            zone.add_link(f"l{i}", bw).set_latency(lat) for i, (bw, lat) in enumerate(spec["links"])
        ]
        for key, route in spec["routes"].items():
            s, d = map(int, key.split(","))
            zone.add_route(hosts[s], hosts[d], [sg.LinkInRoute(links[i]) for i in route], False)
        zone.seal()
    pattern = spec["pattern"]

    def rounds() -> None:
        if pattern["kind"] == "ring":
            n, size = pattern["n"], pattern["bytes"]
            steps = [[(i, (i + 1) % n, size) for i in range(n)]] * pattern["rounds"]
        else:
            steps = pattern["rounds"]
        for step in steps:
            comms = [sg.Comm.sendto_async(hosts[s], hosts[d], int(b)) for s, d, b in step]
            sg.ActivitySet(comms).wait_all()

    finish: dict[int, float] = {}

    def flow(i: int, start: float, s: int, d: int, b: int) -> None:
        sg.this_actor.sleep_for(start)
        sg.Comm.sendto(hosts[s], hosts[d], int(b))
        finish[i] = engine.clock

    if pattern["kind"] == "flows":
        for i, (start, s, d, b) in enumerate(pattern["flows"]):
            sg.Actor.create(f"flow{i}", hosts[s], flow, i, start, s, d, b)
    else:
        sg.Actor.create("controller", hosts[0], rounds)
    engine.run()
    wall = time.perf_counter() - wall
    # The links SimGrid routed each pair over, by name (its routes, for the fat-tree zone).
    routes = {
        f"{s},{d}": [link.name for link in hosts[s].route_to(hosts[d])[0]]
        for s, d in spec.get("report_routes", [])
    }
    print(
        json.dumps(
            {
                "time": engine.clock,
                "wall": wall,
                "finish": [finish[i] for i in sorted(finish)],
                "routes": routes,
            }
        )
    )


if __name__ == "__main__" and WORKER_FLAG in sys.argv:
    simgrid_worker()
    sys.exit(0)


# ---- commsim half ----------------------------------------------------------------------------

import numpy as np  # noqa: E402
import simpy  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import topologies  # noqa: E402
from sim.collectives import halving_doubling  # noqa: E402
from sim.network import Network  # noqa: E402

B, L = 12.5e9, 1e-6  # 100 Gb/s, 1 us
SCHEDULES = {("all_reduce", "halving_doubling"): halving_doubling.all_reduce}


@dataclass
class Case:
    name: str
    graph: Any
    pattern: dict[str, Any]  # as the SimGrid worker reads it
    sharing: str = "maxmin"
    collective: dict[str, Any] = field(default_factory=dict)  # commsim runs this if given


def ring_case(name: str, g: Any, n: int, nbytes: int, sharing: str = "maxmin") -> Case:
    chunk = nbytes // n  # SimGrid sizes are whole bytes: give both simulators the same chunks
    return Case(
        name,
        g,
        {"kind": "ring", "n": n, "bytes": chunk, "rounds": 2 * (n - 1)},
        sharing,
        collective={"op": "all_reduce", "nbytes": chunk * n, "algorithm": "ring"},
    )


def cases(large: bool) -> list[Case]:
    bottleneck = topologies.star(4, bandwidth=100e6, latency=1e-5)
    bottleneck.edges[1, "s0"]["bandwidth"] = 4e6
    bottleneck.edges[3, "s0"]["bandwidth"] = 10e6
    two_level = topologies.hierarchical(
        4,
        4,
        intra_bandwidth="100GB/s",
        intra_latency="500ns",
        inter_bandwidth="25Gbps",
        inter_latency="2us",
        oversubscription=2.0,
    )
    pairs = [(s, d) for s in range(16) for d in range(16) if s != d]
    # Intra-node (2 us) and inter-node (24 us) routes contend for GPU links: here the two
    # sharing policies differ, and only "rtt" is SimGrid's.
    contended = topologies.hierarchical(
        2,
        4,
        intra_bandwidth="10GB/s",
        intra_latency="1us",
        inter_bandwidth="10GB/s",
        inter_latency="10us",
    )
    mixed = {
        "kind": "flows",
        "flows": [
            (0.0, 0, 1, 10_000_000),
            (0.0, 0, 4, 20_000_000),
            (0.0, 2, 4, 10_000_000),
            (0.0, 5, 4, 10_000_000),
            (5e-4, 6, 1, 5_000_000),
            (1e-3, 1, 0, 8_000_000),
        ],
    }
    a2a = {"kind": "rounds", "rounds": [[(s, d, 4_000_000) for s, d in pairs]]}
    out = [
        Case(
            "point-to-point, star(2), 100 MB",
            topologies.star(2, bandwidth=B, latency=L),
            {"kind": "flows", "flows": [(0.0, 0, 1, 100_000_000)]},
        ),
        ring_case(
            "ring all-reduce, ring(8), 100 MB",
            topologies.ring(8, bandwidth=B, latency=L),
            8,
            100_000_000,
        ),
        ring_case(
            "ring all-reduce, star(16), 100 MB",
            topologies.star(16, bandwidth=B, latency=L),
            16,
            100_000_000,
        ),
        Case(
            "incast 8 -> 1, star(9), 10 MB each",
            topologies.star(9, bandwidth=B, latency=L),
            {"kind": "flows", "flows": [(0.0, i, 8, 10_000_000) for i in range(8)]},
        ),
        Case(
            "max-min, unequal bottlenecks, staggered",
            bottleneck,
            {
                "kind": "flows",
                "flows": [
                    (0.0, 0, 3, 20_000_000),
                    (0.0, 1, 3, 6_000_000),
                    (0.0, 1, 2, 2_000_000),
                    (1.5, 2, 3, 5_000_000),
                ],
            },
        ),
        Case("two-level tree, mixed latencies", contended, mixed, "rtt"),
        Case("two-level tree, mixed latencies", contended, mixed, "maxmin"),
        Case(
            "two-level tree, all-to-all (direct)",
            two_level,
            a2a,
            "rtt",
            {"op": "all_to_all", "nbytes": 16 * 4_000_000, "algorithm": "direct"},
        ),
        ring_case(
            "ring all-reduce, star(256), 100 MB",
            topologies.star(256, bandwidth=B, latency=L),
            256,
            100_000_000,
        ),
    ]
    if large:
        out.append(
            ring_case(
                "ring all-reduce, star(1024), 100 MB",
                topologies.star(1024, bandwidth=B, latency=L),
                1024,
                100_000_000,
            )
        )
    return out


def run_commsim(case: Case, routing: str = "single") -> tuple[float, list[float], float, Network]:
    """Makespan, per-flow finish times (flows patterns), wall time, and the network."""
    wall = time.perf_counter()
    env = simpy.Environment()
    # single routing: one route per pair, which SimGrid is given link by link (simgrid_spec);
    # dmodk: the fat tree's routing that SimGrid's fat-tree zone has (fat_tree_spec).
    net = Network(env, case.graph, sharing=case.sharing, record=False, routing=routing)
    finish: list[simpy.Event] = []
    if case.collective:
        net.collective(pace="step", **case.collective)
    else:

        def flow(start: float, s: int, d: int, b: int):
            yield env.timeout(start)
            return (yield net.send(s, d, b))

        finish = [env.process(flow(*f)) for f in case.pattern["flows"]]
    env.run()
    return env.now, [f.value for f in finish], time.perf_counter() - wall, net


def pattern_pairs(pattern: dict[str, Any]) -> list[tuple[int, int]]:
    """The (source, destination) pairs a pattern sends between, sorted."""
    if pattern["kind"] == "ring":
        n = pattern["n"]
        pairs = {(i, (i + 1) % n) for i in range(n)}
    elif pattern["kind"] == "flows":
        pairs = {(s, d) for _, s, d, _ in pattern["flows"]}
    else:
        pairs = {(s, d) for step in pattern["rounds"] for s, d, _ in step}
    return sorted(pairs)


def simgrid_spec(case: Case, net: Network) -> dict[str, Any]:
    r = net.router
    pattern = case.pattern
    pairs = pattern_pairs(pattern)
    routes = {f"{s},{d}": r.route_links[r.route(s, d)].tolist() for s, d in pairs}
    return {
        "hosts": r.n_hosts,
        "links": np.column_stack((r.capacity, r.latency)).tolist(),
        "routes": routes,
        "pattern": pattern,
    }


# ---- fat trees: SimGrid's own fat-tree zone against commsim's single and dmodk routing -------


def fat_tree_description(k: int) -> str:
    """SimGrid's ``levels;down;up;parallel`` string of the k-ary fat tree of
    :func:`topologies.fat_tree`: hosts under edge switches (k/2 each, one up-link), edge
    switches under k/2 aggregation switches, aggregation switches under k/2 cores each, every
    core reaching all k pods; one cable per pair.

    >>> fat_tree_description(4)
    '3;2,2,4;1,2,2;1,1,1'
    """
    h = k // 2
    return f"3;{h},{h},{k};1,{h},{h};1,1,1"


def fat_tree_spec(case: Case) -> dict[str, Any]:
    """The SimGrid worker's spec for a fat-tree case: the zone, not commsim's routes."""
    g = case.graph
    levels, down, up, count = fat_tree_description(g.graph["k"]).split(";")
    pairs = pattern_pairs(case.pattern)
    return {
        "fat_tree": {
            "levels": int(levels),
            "down": [int(x) for x in down.split(",")],
            "up": [int(x) for x in up.split(",")],
            "count": [int(x) for x in count.split(",")],
            "bandwidth": g.graph["bandwidth"],
            "latency": g.graph["latency"],
        },
        "pattern": case.pattern,
        "report_routes": pairs,
    }


Sharing = tuple[collections.Counter, dict[tuple[int, int], int]]


def link_sharing(routes: dict[tuple[int, int], list[Any]]) -> Sharing:
    """Which pairs share each link, whatever the links are named, and each pair's hop count:
    two routings alike in both give max-min the same problem (links all alike)."""
    by_link: dict[Any, set[tuple[int, int]]] = {}
    for pair, links in routes.items():
        for link in links:
            by_link.setdefault(link, set()).add(pair)
    hops = {pair: len(links) for pair, links in routes.items()}
    return collections.Counter(frozenset(p) for p in by_link.values()), hops


def commsim_sharing(case: Case, net: Network) -> Sharing:
    r = net.router
    return link_sharing(
        {p: r.route_links[r.route(*p)].tolist() for p in pattern_pairs(case.pattern)}
    )


def derangement(n: int, seed: int) -> list[int]:
    """A seeded random permutation of ``range(n)`` with no fixed point (no host sends to
    itself: SimGrid's fat-tree zone would route that up to the edge switch and back)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if (perm != np.arange(n)).all():
            return perm.tolist()


def schedule_case(name: str, g: Any, op: str, algorithm: str, nbytes: int) -> Case:
    """A collective's lock-step rounds, taken from commsim's own schedule (whole bytes)."""
    n = g.graph["k"] ** 3 // 4
    schedule = SCHEDULES[(op, algorithm)](n, nbytes)
    rounds = []
    for i in range(schedule.n_steps):
        step = schedule.step(i)
        assert (step.nbytes == step.nbytes.round()).all(), "SimGrid sizes are whole bytes"
        rounds.append(
            list(zip(step.src.tolist(), step.dst.tolist(), step.nbytes.astype(int).tolist()))
        )
    return Case(
        name,
        g,
        {"kind": "rounds", "rounds": rounds},
        "rtt",
        {"op": op, "nbytes": nbytes, "algorithm": algorithm},
    )


def fat_tree_cases(large: bool) -> list[Case]:
    """Traffic patterns on k-ary fat trees of 100 Gb/s, 1 us links. Route latencies differ
    (2, 4 or 6 hops), so commsim shares bandwidth as SimGrid does (``sharing="rtt"``)."""
    out = []
    for k in (4, 8) if large else (4,):
        g = topologies.fat_tree(k, bandwidth=B, latency=L)
        n, pod = k**3 // 4, (k // 2) ** 2
        a2a = 4_000_000 if k == 4 else 1_000_000
        hd = 100_000_000 if k == 4 else 128_000_000  # whole bytes in every round of 128 ranks
        pairs = [(s, d) for s in range(n) for d in range(n) if s != d]
        out += [
            Case(
                f"fat_tree({k}): permutation, shift by a pod, 100 MB",
                g,
                {
                    "kind": "flows",
                    "flows": [(0.0, i, (i + pod) % n, 100_000_000) for i in range(n)],
                },
                "rtt",
            ),
            Case(
                f"fat_tree({k}): random permutation (seed 0), 100 MB",
                g,
                {
                    "kind": "flows",
                    "flows": [(0.0, i, d, 100_000_000) for i, d in enumerate(derangement(n, 0))],
                },
                "rtt",
            ),
            Case(
                f"fat_tree({k}): all-to-all (direct), {a2a // 1_000_000} MB per pair",
                g,
                {"kind": "rounds", "rounds": [[(s, d, a2a) for s, d in pairs]]},
                "rtt",
                {"op": "all_to_all", "nbytes": n * a2a, "algorithm": "direct"},
            ),
            ring_case(f"fat_tree({k}): ring all-reduce, 100 MB", g, n, 100_000_000, "rtt"),
            schedule_case(
                f"fat_tree({k}): halving-doubling all-reduce, {hd // 1_000_000} MB",
                g,
                "all_reduce",
                "halving_doubling",
                hd,
            ),
        ]
    return out


def fat_tree_table(python: str | None, large: bool) -> Table:
    table = Table(
        title="fat trees: commsim single / dmodk vs SimGrid 4.1's fat-tree zone "
        "(network/model:raw, sharing rtt)"
    )
    for col in (
        "case",
        "flows",
        "commsim single (s)",
        "commsim dmodk (s)",
        "SimGrid fat-tree zone (s)",
        "single / SimGrid",
        "dmodk max rel. diff",
        "links shared as SimGrid: single, dmodk",
        "SimGrid wall (s)",
    ):
        table.add_column(col, justify="left" if col == "case" else "right")
    for case in fat_tree_cases(large):
        t_single, f_single, _, net_single = run_commsim(case, "single")
        t_dmodk, f_dmodk, _, net_dmodk = run_commsim(case, "dmodk")
        sg = run_simgrid(python, fat_tree_spec(case)) if python else None
        ratio = diff = same = "-"
        if sg:
            theirs = np.array(sg["finish"] or [sg["time"]])
            ours = np.array(f_dmodk or [t_dmodk])
            ratio = f"{t_single / sg['time']:.3f}"
            diff = f"{(np.abs(ours - theirs) / theirs).max():.1e}"
            simgrid_routes = {}
            for key, links in sg["routes"].items():
                s, d = map(int, key.split(","))
                simgrid_routes[s, d] = links
            reference = link_sharing(simgrid_routes)
            same = ", ".join(
                "yes" if commsim_sharing(case, net) == reference else "no"
                for net in (net_single, net_dmodk)
            )
        table.add_row(
            case.name,
            f"{net_dmodk.flows_simulated:,}",
            f"{t_single:.9g}",
            f"{t_dmodk:.9g}",
            f"{sg['time']:.9g}" if sg else "-",
            ratio,
            diff,
            same,
            f"{sg['wall']:.3f}" if sg else "-",
        )
    return table


def run_simgrid(python: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    done = subprocess.run(
        [python, os.path.abspath(__file__), WORKER_FLAG],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        Console(stderr=True).print(f"[red]SimGrid worker failed:[/red] {done.stderr[-500:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def find_simgrid(given: str | None) -> str | None:
    for python in (given, os.environ.get("SIMGRID_PYTHON"), sys.executable):
        if (
            python
            and subprocess.run(
                [
                    python,
                    "-c",
                    "import importlib.util as u, sys; sys.exit(u.find_spec('simgrid') is None)",
                ],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ):
            return python
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simgrid-python", help="interpreter that can import simgrid")
    parser.add_argument(
        "--large", action="store_true", help="add the 1024-rank ring (~90 s) and fat_tree(8)"
    )
    parser.add_argument(
        "--fat-tree", action="store_true", help="only the fat-tree table (SimGrid's own zone)"
    )
    args = parser.parse_args()
    python = find_simgrid(args.simgrid_python)
    console = Console(width=200)
    if python is None:
        console.print("SimGrid not found: commsim figures only (see docs/performance.md).")
    table = Table(title="commsim vs SimGrid 4.1 (network/model:raw)")
    for col in (
        "case",
        "sharing",
        "flows",
        "commsim (s)",
        "SimGrid (s)",
        "max rel. diff",
        "commsim wall (s)",
        "SimGrid wall (s)",
    ):
        table.add_column(col, justify="left" if col == "case" else "right")
    for case in [] if args.fat_tree else cases(args.large):
        t, finish, wall, net = run_commsim(case)
        sg = run_simgrid(python, simgrid_spec(case, net)) if python else None
        diff = "-"
        if sg:
            # Worst relative gap over every flow's finish time (flows) or the makespan.
            ours, theirs = np.array(finish or [t]), np.array(sg["finish"] or [sg["time"]])
            diff = f"{(np.abs(ours - theirs) / theirs).max():.1e}"
        table.add_row(
            case.name,
            case.sharing,
            f"{net.flows_simulated:,}",
            f"{t:.9g}",
            f"{sg['time']:.9g}" if sg else "-",
            diff,
            f"{wall:.3f}",
            f"{sg['wall']:.3f}" if sg else "-",
        )
    if not args.fat_tree:
        console.print(table)
    console.print(fat_tree_table(python, args.large))


if __name__ == "__main__":
    main()
