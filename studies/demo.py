"""The quick-start study: which strategy trains fastest when the network is slow and some
workers straggle?

Eight workers train the digits MLP on a star network; one strategy of each family (all-reduce
SGD plain and with PowerSGD compression, an asynchronous parameter server, Local SGD,
DiLoCo, ring gossip, asynchronous EASGD) gets the same simulated time budget. The study
writes one run directory per strategy, a summary table and a figure of loss against time and
against bytes, with each rank's time split into compute, communication and idle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import topologies
from runs import RunResult
from sim.run import run
from strategies import (
    EASGD,
    AllReduceSGD,
    DiLoCo,
    Gossip,
    LocalSGD,
    ParameterServer,
    Strategy,
)
from studies.load import load
from studies.plot import comparison

__all__ = ["DemoStudy", "run_demo", "slug", "summary_table"]


@dataclass(frozen=True)
class DemoStudy:
    """The knobs of the quick-start study (defaults take about a minute on two cores)."""

    workers: int = 8
    bandwidth: str = "1Gbps"
    latency: str = "50us"
    compute: dict[str, Any] = field(
        default_factory=lambda: {"base": 0.002, "straggler": "lognormal", "options": {"sigma": 0.6}}
    )
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "sgd", "lr": 0.1})
    workload: str = "mlp_digits"
    budget: float = 1.0  # simulated seconds each strategy gets
    eval_every: int = 10
    seed: int = 0

    def strategies(self) -> dict[str, Strategy]:
        return {
            "all-reduce": AllReduceSGD(algorithm="ring"),
            "all-reduce, PowerSGD r=2": AllReduceSGD(algorithm="ring", compression="powersgd"),
            "PS async": ParameterServer(mode="async", staleness_lr="inverse"),
            "Local SGD H=8": LocalSGD(period=8),
            "DiLoCo H=8": DiLoCo(period=8),
            "gossip, ring": Gossip(graph="ring"),
            "EASGD async": EASGD(alpha=0.05, period=4, mode="async"),
        }


def slug(label: str) -> str:
    """The run directory name of a strategy label.

    Examples
    --------
    >>> slug("all-reduce, PowerSGD r=2")
    'all-reduce-powersgd-r-2'
    """
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in label.lower())).strip("-")


def run_demo(
    out: str | Path,
    study: DemoStudy | None = None,
    progress: bool = False,
    on_run: Callable[[str, RunResult], None] | None = None,
) -> tuple[dict[str, RunResult], pd.DataFrame]:
    """Run the study into ``out``; returns the results and the summary table.

    Writes ``out/<strategy>/run.json``, ``metrics.parquet``, ``out/summary.csv`` and
    ``out/comparison.png``.
    """
    study = study or DemoStudy()
    out = Path(out)
    results: dict[str, RunResult] = {}
    for label, strategy in study.strategies().items():
        # A parameter server needs one more host than there are workers.
        hosts = study.workers + len(strategy.servers(study.workers + 1))
        graph = topologies.star(hosts, bandwidth=study.bandwidth, latency=study.latency)
        result = run(
            strategy,
            study.workload,
            graph,
            steps=1_000_000,
            max_time=study.budget,
            compute=study.compute,
            optimizer=study.optimizer,
            eval_every=study.eval_every,
            seed=study.seed,
            out=out / slug(label),
            progress=progress,
        )
        results[label] = result
        if on_run is not None:
            on_run(label, result)
    table = summary_table(results)
    table.to_csv(out / "summary.csv")
    title = (
        f"{study.workload}, {study.workers} workers on a {study.bandwidth} star, "
        f"{study.compute.get('straggler', 'constant')} compute times, "
        f"{study.budget:g} s simulated each"
    )
    figure = comparison(load([out / slug(label) for label in results]), title=title)
    figure.savefig(out / "comparison.png", dpi=110)
    return results, table


def summary_table(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per run: final loss and accuracy, steps, traffic, staleness."""
    rows = {}
    for label, result in results.items():
        s = result.summary
        rows[label] = {
            "loss": s["final_loss"],
            "accuracy": s.get("final_accuracy", float("nan")),
            "steps": s["steps"],
            "samples": s["samples"],
            "MB sent": s["bytes"] / 1e6,
            "stale": s["staleness_mean"],
            "wall s": s["wall_time"],
        }
    return pd.DataFrame.from_dict(rows, orient="index")
