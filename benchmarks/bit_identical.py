"""Do refactors leave the numbers alone? Fingerprints of every synchronous strategy's runs.

Runs each synchronous strategy of the catalogue for a few steps in ``sim`` (on a star and,
for the hierarchical one, a two-node cluster; once with a straggler, so queued compute and
uneven ranks are covered) and, with ``--real``, on gloo processes of this machine. For each
run it prints a SHA-256 (first 12 hex digits) of each quantity the run records:

* ``loss``: every evaluation row's step, loss and consensus distance;
* ``steps``: the step rows' steps and staleness, and the summary's step count;
* ``time``, ``bytes``, ``samples``: every row's value (sim only for time and bytes: on real
  they are wall-clock and counted per operation).

``--save FILE`` writes the fingerprints as JSON; ``--against FILE`` compares with a saved set
and prints, per run, ``identical`` or which quantities differ. To compare two versions of the
code, run the script once with the older tree first on ``PYTHONPATH``::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python benchmarks/bit_identical.py --real --save before.json
    python benchmarks/bit_identical.py --real --against before.json

The script only uses ``sim.run`` and ``real.run``, so it runs unchanged against older trees.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Iterable
from typing import Any

#: (name, strategy spec, world size, topology); every synchronous strategy of the catalogue.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("allreduce", "allreduce", {}),
    ("allreduce_ring", "allreduce", {"algorithm": "ring"}),
    ("parameter_server_sync", "parameter_server", {"mode": "sync"}),
    ("local_sgd", "local_sgd", {"period": 2}),
    ("easgd_sync", "easgd", {"mode": "sync", "period": 2}),
    ("diloco", "diloco", {"period": 2}),
    ("streaming_diloco", "streaming_diloco", {"period": 4, "fragments": 2}),
    ("gossip_sync", "gossip", {"mode": "sync", "graph": "ring"}),
    ("broadcast", "broadcast", {}),
    ("hierarchical", "hierarchical", {"period": 2}),
]
WORLD, STEPS, EVAL_EVERY, WORKLOAD = 4, 6, 2, "mlp_digits"


def digest(values: Iterable[Any]) -> str:
    """First 12 hex digits of the SHA-256 of ``values`` written exactly (floats by their
    ``hex()``, so two values that print alike but differ in a bit differ here).

    Examples
    --------
    >>> digest([1.0, 2]) == digest([1.0, 2]), digest([0.1]) == digest([0.1 + 1e-17])
    (True, True)
    >>> digest([0.1]) == digest([0.1000000000000001])
    False
    """
    h = hashlib.sha256()
    for v in values:
        if isinstance(v, float):
            text = "nan" if math.isnan(v) else v.hex()
        else:
            text = repr(v)
        h.update(text.encode() + b"|")
    return h.hexdigest()[:12]


def _column(metrics: Any, kind: str | None, names: list[str]) -> list[Any]:
    rows = metrics if kind is None else metrics[metrics["kind"] == kind]
    out: list[Any] = []
    for name in names:
        if name in rows.columns:
            out.extend(float(v) if isinstance(v, float) else v for v in rows[name].tolist())
    return out


def fingerprints(result: Any, backend: str) -> dict[str, str]:
    """The run's quantities, each as a :func:`digest`."""
    m = result.metrics
    prints = {
        "loss": digest(_column(m, "eval", ["step", "loss", "consensus"])),
        "steps": digest(_column(m, "step", ["step", "staleness"]) + [result.summary["steps"]]),
        "samples": digest(_column(m, "eval", ["samples"]) + [float(result.summary["samples"])]),
    }
    if backend == "sim":
        prints["time"] = digest(_column(m, None, ["time"]))
        prints["bytes"] = digest(_column(m, None, ["bytes"]))
    return prints


def _topology(name: str) -> Any:
    import topologies

    if name == "hierarchical":  # two nodes of two ranks: intra- and inter-node links differ
        return topologies.from_spec("hierarchical:nodes=2,gpus_per_node=2")
    return topologies.star(WORLD, bandwidth="1Gbps", latency="50us")


def run_all(real: bool) -> dict[str, dict[str, str]]:
    import strategies
    from sim.run import run as sim_run

    results: dict[str, dict[str, str]] = {}
    for name, spec, options in CASES:
        common = {"steps": STEPS, "eval_every": EVAL_EVERY, "seed": 0}
        for label, compute in (("sim", 0.01), ("sim+straggler", _straggler())):
            result = sim_run(
                strategies.get(spec, **options),
                WORKLOAD,
                _topology(name),
                compute=compute,
                **common,
            )
            results[f"{name} [{label}]"] = fingerprints(result, "sim")
        if real:
            import real as real_backend

            kwargs: dict[str, Any] = {"nproc": WORLD, "timeout": 120, **common}
            if name == "hierarchical":
                kwargs["topology"] = _topology(name)
            result = real_backend.run(strategies.get(spec, **options), WORKLOAD, **kwargs)
            results[f"{name} [real]"] = fingerprints(result, "real")
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return results


def _straggler() -> dict[str, Any]:
    return {"base": 0.01, "straggler": "lognormal"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", action="store_true", help="also run on gloo processes")
    parser.add_argument("--save", help="write the fingerprints to this JSON file")
    parser.add_argument("--against", help="compare with fingerprints saved by --save")
    args = parser.parse_args()
    results = run_all(args.real)
    quantities = ["loss", "steps", "samples", "time", "bytes"]
    baseline = None
    if args.against:
        with open(args.against) as f:
            baseline = json.load(f)
    header = f"{'run':38} " + " ".join(f"{q:12}" for q in quantities)
    print(header + ("  against baseline" if baseline else ""))
    identical = 0
    for run_name, prints in results.items():
        line = f"{run_name:38} " + " ".join(f"{prints.get(q, '-'):12}" for q in quantities)
        if baseline is not None:
            before = baseline.get(run_name)
            if before is None:
                verdict = "not in baseline"
            else:
                differ = [q for q in prints if before.get(q) != prints[q]]
                verdict = "identical" if not differ else "differs: " + ", ".join(differ)
                identical += not differ
            line += f"  {verdict}"
        print(line)
    if baseline is not None:
        print(f"{identical} of {len(results)} runs identical to {args.against}")
    if args.save:
        with open(args.save, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
