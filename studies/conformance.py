"""The conformance kit: run a strategy on both backends and report where they differ.

A strategy written against the contract must give the same numbers in ``sim`` and on
``real``: the same global steps, the same evaluation points and losses, and the same
parameters (to float rounding: gloo adds in its own order). :func:`check` runs it both ways
on the same workload, world size, optimizer and seed and returns a :class:`Conformance`
report; ``report.ok`` says whether they agree, ``str(report)`` shows every comparison.

Time, samples and bytes are measurements on ``real`` (wall time; what ranks had computed and
sent by then; collectives charged as rings), so they are reported side by side, not required
to match. Asynchronous strategies are not bitwise reproducible on a real world (arrival order
decides); check them with ``exact=False``, which compares the final loss within
``loss_rtol`` instead of parameters.

Examples
--------
>>> from studies.conformance import check
>>> report = check("allreduce", "quadratic", world_size=2, steps=4)  # doctest: +SKIP
>>> report.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import real
import sim
import topologies
from runs import RunResult
from strategies import Strategy

__all__ = ["Conformance", "check"]


@dataclass
class Conformance:
    """What :func:`check` found: both runs and the differences that matter."""

    strategy: str
    sim: RunResult
    real: RunResult
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        s, r = self.sim.summary, self.real.summary
        lines = [
            f"{self.strategy}: {'conforms' if self.ok else 'DIFFERS'}",
            f"  steps            sim {s['steps']:>10}   real {r['steps']:>10}",
            f"  final loss       sim {s.get('final_loss', float('nan')):>10.6g}   "
            f"real {r.get('final_loss', float('nan')):>10.6g}",
            f"  samples          sim {s['samples']:>10}   real {r['samples']:>10}  (measured)",
            f"  bytes            sim {s['bytes']:>10.4g}   real {r['bytes']:>10.4g}  (measured)",
        ]
        lines += [f"  - {d}" for d in self.differences]
        return "\n".join(lines)

    def raise_for_differences(self) -> None:
        """Raise ``AssertionError`` listing the differences, if any."""
        if self.differences:
            raise AssertionError(str(self))


def check(
    strategy: str | Strategy,
    workload: str | Any = "quadratic",
    *,
    world_size: int = 4,
    steps: int = 20,
    optimizer: Any = None,
    eval_every: int | None = None,
    seed: int = 0,
    exact: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    loss_rtol: float = 0.05,
    timeout: float = 120.0,
    topology: Any = None,
) -> Conformance:
    """Run ``strategy`` in ``sim`` (on a star whose hosts form one node, as the local
    processes do) and on ``real`` (gloo, local processes).

    Parameters
    ----------
    strategy, workload
        As for ``sim.run``; a strategy defined in a notebook or a script works.
    world_size, steps, optimizer, eval_every, seed
        The run, the same on both backends (``eval_every`` defaults to ``steps // 2``).
    exact
        Compare parameters (``rtol``, ``atol``) and every evaluation's loss; ``False`` for
        asynchronous strategies: compare the final loss within ``loss_rtol``.
    timeout
        Seconds any one real operation may wait before the run fails.
    topology
        The simulated network (default: a star whose hosts form one node, as local processes
        do); the real ranks take their nodes and neighbours from it too, so a hierarchical
        strategy sees the same layout in both.
    """
    every = max(1, steps // 2) if eval_every is None else eval_every
    kwargs = {"steps": steps, "optimizer": optimizer, "eval_every": every, "seed": seed}
    # The real ranks share this machine: give the simulated hosts one node too, so
    # strategies that read locality (w.node, w.nodes) see the same layout in both.
    graph = topology
    if graph is None:
        graph = topologies.star(world_size)
        for host in topologies.hosts(graph):
            graph.nodes[host]["node"] = 0
    simulated = sim.run(strategy, workload, graph, **kwargs)
    measured = real.run(
        strategy, workload, nproc=world_size, timeout=timeout, topology=graph, **kwargs
    )
    name = repr(strategy) if isinstance(strategy, Strategy) else str(strategy)
    report = Conformance(name, simulated, measured)
    report.differences = _differences(simulated, measured, exact, rtol, atol, loss_rtol)
    return report


def _differences(
    s: RunResult, r: RunResult, exact: bool, rtol: float, atol: float, loss_rtol: float
) -> list[str]:
    found = []
    if s.summary["steps"] != r.summary["steps"]:
        found.append(f"steps: sim ran {s.summary['steps']}, real {r.summary['steps']}")
    if s.summary["stop_reason"] != r.summary["stop_reason"]:
        found.append(
            f"stop: sim stopped on {s.summary['stop_reason']!r}, real on "
            f"{r.summary['stop_reason']!r}"
        )
    sim_steps, real_steps = list(s.evals["step"]), list(r.evals["step"])
    if sim_steps != real_steps:
        found.append(f"evaluation steps: sim {sim_steps}, real {real_steps}")
    if exact:
        if s.parameters is None or r.parameters is None:
            found.append("parameters: a backend recorded no global parameters")
        elif s.parameters.shape != r.parameters.shape:
            found.append(f"parameters: shapes {s.parameters.shape} and {r.parameters.shape}")
        elif not torch.allclose(r.parameters, s.parameters, rtol=rtol, atol=atol):
            gap = (r.parameters - s.parameters).abs().max().item()
            found.append(f"parameters: largest difference {gap:.3g} (rtol={rtol}, atol={atol})")
        if sim_steps == real_steps:
            sl, rl = s.evals["loss"].to_numpy(), r.evals["loss"].to_numpy()
            close = torch.allclose(torch.tensor(rl), torch.tensor(sl), rtol=100 * rtol, atol=atol)
            if not close:
                found.append(
                    f"evaluation losses: sim {[round(float(x), 6) for x in sl]}, "
                    f"real {[round(float(x), 6) for x in rl]}"
                )
    else:
        ls, lr = s.summary.get("final_loss"), r.summary.get("final_loss")
        if ls is None or lr is None or abs(lr - ls) > loss_rtol * abs(ls):
            found.append(f"final loss: sim {ls}, real {lr} (loss_rtol={loss_rtol})")
    return found
