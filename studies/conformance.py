"""The conformance kit: run a strategy on both backends and report where they differ.

A strategy written against the contract must give the same numbers in ``sim`` and on
``real``: the same global steps, the same evaluation points and losses, the same samples
(those of applied gradients: ``strategies.counts``), and the same parameters, bit for bit
where the real ranks run gloo (sim then sums in gloo's order:
:mod:`strategies.reduction_order`), else to float rounding (``rtol``, ``atol``). :func:`check` runs it both ways
on the same workload, world size, optimizer and seed and returns a :class:`Conformance`
report; ``report.ok`` says whether they agree, ``str(report)`` shows every comparison.

Time is wall time on ``real``, reported, never compared. Bytes on ``real`` are computed, never
measured (the kit labels them so): the transport charges each send its payload and header, and
each collective what the library's algorithm sends from the rank (:mod:`real.transport.charges`:
gloo's ring all-reduce, binomial broadcast, ring-then-root reduce ...); ``sim``, run under the
same library's rule, counts what the same algorithms send. Real
stamps bytes by wall time, so at the stop it may hold one step's communication more (sent
before a rank learned of the stop) or less (the last step's, charged after the stop's stamp):
real's bytes are flagged outside ``sim`` give or take the largest one step's bytes in sim,
widened by ``bytes_rtol`` (headers, other algorithms' rounding). Asynchronous runs
(``exact=False``) show their bytes but do not compare them: what their ranks send depends on
the order in which messages arrive (a passive gossip worker answers as many requests as it
gets), as their discarded samples do. Samples are compared for
synchronous strategies (``exact=True``), the summary's and every evaluation row's: a
gradient's samples count once its rank applies it, whatever the wall clock's interleaving;
work computed and never applied (after the stop) is ``discarded_samples``, shown, not
compared (it depends on when each rank learned of the stop).

Asynchronous strategies are not bitwise reproducible on a real world (arrival order decides);
check them with ``exact=False``: both backends run ``seeds`` seeds, and every real final loss
must lie within the sim final losses' range widened by ``k`` standard deviations of the
seed-to-seed spread (pooled over both backends; at least ``loss_rtol`` of sim's mean, so that
a spread of zero does not demand equality). ``str(report)`` shows the losses and the rule.

``compute`` is the simulated run's compute model (base seconds, stragglers), as ``sim.run``
takes it: a strategy can be checked under stragglers. The real ranks compute at this
machine's speed; synchronous strategies give the same steps and losses whatever the timing.

Examples
--------
>>> from studies.conformance import check
>>> report = check("allreduce", "quadratic", world_size=2, steps=4)  # doctest: +SKIP
>>> report.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

import real
import sim
import topologies
from real.devices import resolve_backend
from runs import RunResult
from sim.collectives.rules import library_rule
from sim.compute import ComputeModel
from strategies import Strategy
from strategies.reduction_order import ORDERED

__all__ = ["Conformance", "LossVerdict", "check"]


@dataclass(frozen=True)
class LossVerdict:
    """The asynchronous verdict: real final losses against sim's, over several seeds.

    Every real loss must lie in ``[min(sim) - tolerance, max(sim) + tolerance]``, where
    ``tolerance`` is ``k`` times the seed-to-seed standard deviation pooled over both
    backends, and at least ``floor``.

    Examples
    --------
    >>> v = LossVerdict.of([1.0, 1.2], [1.1, 1.3], k=3.0, floor=0.0)
    >>> v.ok, round(v.tolerance, 4)
    (True, 0.4243)
    >>> LossVerdict.of([1.0, 1.0], [2.0, 2.0], k=3.0, floor=0.05).ok
    False
    """

    sim: tuple[float, ...]
    real: tuple[float, ...]
    k: float
    spread: float
    tolerance: float

    @classmethod
    def of(cls, sim: list[float], real: list[float], k: float, floor: float) -> LossVerdict:
        # Each backend's spread about its own mean: a shift between backends is what is
        # judged, so it must not widen the tolerance it is judged by.
        deviations = [x - statistics.fmean(sim) for x in sim]
        deviations += [x - statistics.fmean(real) for x in real]
        dof = max(1, len(deviations) - 2)
        spread = math.sqrt(sum(d * d for d in deviations) / dof)
        return cls(tuple(sim), tuple(real), k, spread, max(k * spread, floor))

    @property
    def low(self) -> float:
        return min(self.sim) - self.tolerance

    @property
    def high(self) -> float:
        return max(self.sim) + self.tolerance

    @property
    def ok(self) -> bool:
        return all(self.low <= x <= self.high for x in self.real)

    def __str__(self) -> str:
        def fmt(xs: tuple[float, ...]) -> str:
            return "[" + ", ".join(f"{x:.6g}" for x in xs) + "]"

        return (
            f"final losses over {len(self.sim)} seeds: sim {fmt(self.sim)}, real {fmt(self.real)}\n"
            f"rule: every real loss in sim's range +- max(k={self.k:g} x spread "
            f"{self.spread:.3g}, floor) = [{self.low:.6g}, {self.high:.6g}]: "
            f"{'holds' if self.ok else 'FAILS'}"
        )


@dataclass
class Conformance:
    """What :func:`check` found: both runs and the differences that matter."""

    strategy: str
    sim: RunResult
    real: RunResult
    differences: list[str] = field(default_factory=list)
    #: With ``exact=False``: every seed's runs (``sim`` and ``real`` are the first seed's)
    #: and the verdict on their final losses.
    seeds: list[int] = field(default_factory=list)
    sims: list[RunResult] = field(default_factory=list)
    reals: list[RunResult] = field(default_factory=list)
    loss_verdict: LossVerdict | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        s, r = self.sim.summary, self.real.summary
        final = f"final_{_metric(self.sim)}"
        lines = [
            f"{self.strategy}: {'conforms' if self.ok else 'DIFFERS'}",
            f"  steps            sim {s['steps']:>10}   real {r['steps']:>10}",
            f"  {final.replace('_', ' '):<17}sim {s.get(final, float('nan')):>10.6g}   "
            f"real {r.get(final, float('nan')):>10.6g}",
            f"  samples          sim {s['samples']:>10}   real {r['samples']:>10}  "
            "(applied gradients'; compared when exact)",
            f"  discarded        sim {s.get('discarded_samples', 0):>10}   "
            f"real {r.get('discarded_samples', 0):>10}  (computed, never applied: not compared)",
            f"  bytes            sim {s['bytes']:>10.4g}   real {r['bytes']:>10.4g}  "
            "(real: computed, not measured: sends' payload + header, collectives as the "
            "library's algorithms send them)",
        ]
        if self.loss_verdict is not None:
            lines += ["  " + line for line in str(self.loss_verdict).splitlines()]
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
    rtol: float | None = None,
    atol: float | None = None,
    loss_rtol: float = 0.05,
    timeout: float = 120.0,
    topology: Any = None,
    compute: float | str | dict[str, Any] | ComputeModel = 0.01,
    seeds: int = 3,
    k: float = 3.0,
    bytes_rtol: float = 0.05,
    faults: Any = None,
) -> Conformance:
    """Run ``strategy`` in ``sim`` (on a star whose hosts form one node, as the local
    processes do; ``auto`` collectives follow the library the real ranks run, gloo on CPU,
    see :func:`sim.collectives.rules.library_rule`) and on ``real`` (local processes).

    Parameters
    ----------
    strategy, workload
        As for ``sim.run``; a strategy defined in a notebook or a script works.
    world_size, steps, optimizer, eval_every, seed
        The run, the same on both backends (``eval_every`` defaults to ``steps // 2``).
    exact
        Compare parameters (``rtol``, ``atol``: by default 0, bit for bit, where the real
        ranks run gloo, whose order sim's sums follow; else ``1e-5`` and ``1e-6``, NCCL's
        order not being modelled) and every evaluation's loss; ``False`` for
        asynchronous strategies: run ``seeds`` seeds (``seed``, ``seed + 1``, ...) on both
        backends; every real final loss must lie within the sim final losses' range
        widened by ``k`` pooled seed-to-seed standard deviations, at least ``loss_rtol`` of
        sim's mean (see :class:`LossVerdict`).
    bytes_rtol
        Flag real's bytes outside sim's count give or take its largest step's bytes,
        widened by this fraction (headers and the algorithms' rounding).
    timeout
        Seconds any one real operation may wait before the run fails.
    topology
        The simulated network (default: a star whose hosts form one node, as local processes
        do); the real ranks take their nodes and neighbours from it too, so a hierarchical
        strategy sees the same layout in both.
    compute
        The simulated run's compute model, as ``sim.run`` takes it (seconds per
        micro-batch, or a dict of :class:`sim.compute.ComputeModel` fields:
        ``{"base": 0.01, "straggler": "lognormal"}``); the real ranks compute at this
        machine's speed.
    faults
        A fault schedule for both runs (as ``sim.run`` takes it); the runs must then agree
        on ``failures``, ``restarts``, ``lost_steps`` and, with ``exact``, the final loss
        too (an asynchronous run's is judged over the seeds as without faults; the bytes
        are not compared: a crash's aborted operations are charged differently).
    """
    ComputeModel.parse(compute)  # sim's own check, before any run starts
    if exact is False and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2):
        raise ValueError(f"seeds={seeds!r} must be an int >= 2 (a spread needs two seeds)")
    every = max(1, steps // 2) if eval_every is None else eval_every
    kwargs = {"steps": steps, "optimizer": optimizer, "eval_every": every}
    if faults is not None:
        kwargs["faults"] = faults
    # The real ranks share this machine: give the simulated hosts one node too, so
    # strategies that read locality (w.node, w.nodes) see the same layout in both.
    graph = topology
    if graph is None:
        graph = topologies.star(world_size)
        for host in topologies.hosts(graph):
            graph.nodes[host]["node"] = 0
    chosen = [seed] if exact else [seed + i for i in range(seeds)]
    # sim's `auto` imitates the library the real ranks run (gloo on local CPU processes),
    # so both sides run the same collective algorithms.
    library = resolve_backend("auto", local_world_size=world_size)
    network = {"collectives": library_rule(library, "cuda" if library == "nccl" else "cpu")}
    ordered = library in ORDERED  # sim sums in the library's order: the same bits
    rtol = (0.0 if ordered else 1e-5) if rtol is None else rtol
    atol = (0.0 if ordered else 1e-6) if atol is None else atol
    sims, reals = [], []
    for s in chosen:
        sims.append(
            sim.run(strategy, workload, graph, compute=compute, network=network, seed=s, **kwargs)
        )
        reals.append(
            real.run(
                strategy,
                workload,
                nproc=world_size,
                timeout=timeout,
                topology=graph,
                seed=s,
                **kwargs,
            )
        )
    name = repr(strategy) if isinstance(strategy, Strategy) else str(strategy)
    report = Conformance(name, sims[0], reals[0])
    for s, simulated, measured in zip(chosen, sims, reals):
        found = _differences(simulated, measured, exact, rtol, atol)
        if exact and faults is None:  # asynchronous bytes follow the interleaving
            found += _bytes_difference(simulated, measured, bytes_rtol)
        if faults is not None:
            final = f"final_{_metric(simulated)}"
            # (an asynchronous run's final loss is the seeds' verdict's, below)
            keys = ("failures", "restarts", "lost_steps") + ((final,) if exact else ())
            for key in keys:
                a, b = simulated.summary.get(key), measured.summary.get(key)
                close = key == final and a is not None and b is not None
                if close and abs(float(a) - float(b)) <= atol + 100 * rtol * abs(float(a)):
                    continue  # within the tolerance of the evaluations' losses
                if a != b:
                    found.append(f"{key}: sim {a}, real {b}")
        tag = "" if exact else f"seed {s}: "
        report.differences += [tag + d for d in found]
    if not exact:
        report.seeds, report.sims, report.reals = chosen, sims, reals
        verdict = _loss_verdict(sims, reals, k, loss_rtol)
        report.loss_verdict = verdict
        final = f"final {_metric(sims[0])}"
        if verdict is None:
            report.differences.append(f"{final}: a run recorded none")
        elif not verdict.ok:
            report.differences.append(f"{final}: {verdict}".replace("\n", "; "))
    return report


def _metric(result: RunResult) -> str:
    """The run's evaluation metric (:mod:`runs.metric`): ``loss``, or what its summary
    names (a reinforcement-learning workload's ``return``); compared as the loss is."""
    return str(result.summary.get("metric", "loss"))


def _loss_verdict(
    sims: list[RunResult], reals: list[RunResult], k: float, loss_rtol: float
) -> LossVerdict | None:
    final = f"final_{_metric(sims[0])}"
    ls = [r.summary.get(final) for r in sims]
    lr = [r.summary.get(final) for r in reals]
    if any(x is None for x in ls + lr):
        return None
    sim_losses, real_losses = [float(x) for x in ls], [float(x) for x in lr]
    floor = loss_rtol * abs(statistics.fmean(sim_losses))
    return LossVerdict.of(sim_losses, real_losses, k, floor)


def _bytes_difference(s: RunResult, r: RunResult, bytes_rtol: float) -> list[str]:
    """Flag real's bytes outside what the formula allows: sim's count give or take the
    largest one step's communication in sim (wall-clock stamps: a rank may send its next
    step's before it learns of the stop, and the last step's may be charged after the stop's
    stamp), widened by ``bytes_rtol``."""
    bs, br = float(s.summary["bytes"]), float(r.summary["bytes"])
    cumulative = [0.0, *(float(b) for b in s.steps["bytes"])]
    ahead = max((b - a for a, b in zip(cumulative, cumulative[1:])), default=0.0)
    low, high = (1 - bytes_rtol) * (bs - ahead), (1 + bytes_rtol) * (bs + ahead)
    if low <= br <= high:
        return []
    return [
        f"bytes: sim {bs:.6g}, real {br:.6g}, outside [{low:.6g}, {high:.6g}] (sim's count "
        f"give or take its largest step's {ahead:.6g}, bytes_rtol={bytes_rtol})"
    ]


def _differences(s: RunResult, r: RunResult, exact: bool, rtol: float, atol: float) -> list[str]:
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
        if s.summary["samples"] != r.summary["samples"]:
            found.append(f"samples: sim {s.summary['samples']}, real {r.summary['samples']}")
        elif sim_steps == real_steps and list(s.evals["samples"]) != list(r.evals["samples"]):
            found.append(
                f"samples at evaluations: sim {list(s.evals['samples'])}, "
                f"real {list(r.evals['samples'])}"
            )
        if s.parameters is None or r.parameters is None:
            found.append("parameters: a backend recorded no global parameters")
        elif s.parameters.shape != r.parameters.shape:
            found.append(f"parameters: shapes {s.parameters.shape} and {r.parameters.shape}")
        elif not torch.allclose(r.parameters, s.parameters, rtol=rtol, atol=atol):
            gap = (r.parameters - s.parameters).abs().max().item()
            found.append(f"parameters: largest difference {gap:.3g} (rtol={rtol}, atol={atol})")
        if sim_steps == real_steps:
            metric = _metric(s)
            sl, rl = s.evals[metric].to_numpy(), r.evals[metric].to_numpy()
            close = torch.allclose(torch.tensor(rl), torch.tensor(sl), rtol=100 * rtol, atol=atol)
            if not close:
                values = "losses" if metric == "loss" else f"{metric}s"
                found.append(
                    f"evaluation {values}: sim {[round(float(x), 6) for x in sl]}, "
                    f"real {[round(float(x), 6) for x in rl]}"
                )
    return found
