"""``commsim demo``: the quick-start study (see :mod:`studies.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["demo"]


def demo(
    out: Annotated[Path, typer.Option(help="Directory for runs, table and figure.")] = Path(
        "results/demo"
    ),
    budget: Annotated[float, typer.Option(min=1e-6, help="Simulated seconds per strategy.")] = 1.0,
    workers: Annotated[int, typer.Option(min=1, help="Number of workers.")] = 8,
    bandwidth: Annotated[str, typer.Option(help="Link bandwidth, e.g. 100Mbps, 25GB/s.")] = "1Gbps",
    seed: Annotated[int, typer.Option(min=0, help="Seed for model, data and stragglers.")] = 0,
) -> None:
    """Compare all-reduce and parameter servers under stragglers on a simulated star network."""
    from studies.demo import DemoStudy, run_demo
    from topologies import UnitError, parse_bandwidth

    console = Console()
    try:
        parse_bandwidth(bandwidth)
    except UnitError as exc:
        console.print(f"[red]error:[/red] --bandwidth: {exc}")
        raise typer.Exit(2) from None
    study = DemoStudy(workers=workers, budget=budget, bandwidth=bandwidth, seed=seed)
    console.print(
        f"Simulating {len(study.strategies())} strategies, {workers} workers, "
        f"{budget:g} simulated seconds each, into [bold]{out}[/bold]"
    )
    try:
        with console.status("simulating...") as status:
            results, table = run_demo(
                out,
                study,
                on_run=lambda label, r: status.update(
                    f"done: {label} ({r.summary['steps']} steps)"
                ),
            )
    except OSError as exc:
        console.print(
            f"[red]error:[/red] --out {out}: {exc.strerror or exc}; choose a writable directory"
        )
        raise typer.Exit(2) from None
    console.print(_rich_table(table))
    console.print(f"runs, summary.csv and comparison.png written to [bold]{out}[/bold]")


def _rich_table(frame: object) -> Table:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    # Fits an 80-column terminal: short headers, no samples (summary.csv has every column).
    short = {"accuracy": "acc", "MB sent": "MB", "wall s": "wall s"}
    shown = [c for c in frame.columns if c != "samples"]
    table = Table(title="same simulated time budget, who got furthest?")
    table.add_column("strategy", no_wrap=True, min_width=10)
    for column in shown:
        table.add_column(short.get(column, column), justify="right", no_wrap=True)
    for label, row in frame[shown].iterrows():
        table.add_row(str(label), *(_fmt(v) for v in row))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value.is_integer():  # counts come back as floats from a mixed-type row
            return f"{int(value):,}"
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
