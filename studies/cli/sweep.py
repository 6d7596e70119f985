"""``commsim sweep FILE --out DIR``: every point of an experiment's ``[sweep]``, resumable."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from studies.cli.options import Imports

if TYPE_CHECKING:
    from rich.table import Table

    from studies.sweep import SweepResult

__all__ = ["sweep_command", "sweep_table"]


def sweep_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Experiment file (TOML) with a \\[sweep], e.g. examples/sweep_bandwidth.toml."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Sweep directory: runs/<key>/ per run and the index sweep.json."),
    ],
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Runs at once: local worker processes (default 1, in this process), or on "
            "Dask (default: the cluster's worker threads).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local, or dask://HOST:PORT for a Dask scheduler (pip install 'commsim\\[dask]'; "
            "--out must be on a file system its workers share)."
        ),
    ] = "local",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a field: --set run.steps=50 --set 'sweep.seeds=[0, 1, 2]' (repeatable).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    imports: Imports = None,
    figures: Annotated[
        bool,
        typer.Option(
            help="Draw the study's figures into DIR/figures/: loss against time and bytes, "
            "time to target per swept field, Pareto, breakdown."
        ),
    ] = True,
) -> None:
    """Run every point of an experiment's sweep (grid, zipped lists, seeds), simulated.

    Each run goes to DIR/runs/<key>/ (the key hashes everything that decides its results)
    as soon as it ends, and DIR/sweep.json indexes them. Finished runs are kept: run the same
    command again to resume an interrupted sweep or retry failed runs. A failed run does
    not stop the others; the command then exits with status 1.
    """
    from studies.executors import ExecutorError
    from studies.experiment import ExperimentError
    from studies.sweep import SweepError, run_sweep

    console = Console()
    try:
        result = run_sweep(
            file,
            out,
            jobs=jobs,
            executor=executor,
            overrides=set_ or (),
            progress=progress,
            console=console,
            imports=imports or (),
        )
    except ExperimentError as exc:
        if str(exc).startswith("--import"):
            _fail(console, str(exc))
        # A file's own problems (missing, not TOML) already name it.
        _fail(console, str(exc) if str(exc).startswith(str(file)) else f"{file}: {exc}")
    except ExecutorError as exc:
        _fail(console, str(exc))
    except OSError as exc:
        _fail(console, f"--out {out}: {exc.strerror or exc}; choose a writable directory")
    except SweepError as exc:  # every run failed: the first says why (each run.json too)
        console.print(sweep_table(exc.result))
        console.print(
            f"[red]error:[/red] {escape(str(exc))}; run the same command again to retry them",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(
            f"[red]interrupted[/red]: finished runs are kept in {out}; "
            "run the same command again to resume"
        )
        raise typer.Exit(130) from None
    console.print(sweep_table(result))
    reused = sum(run.reused for run in result.runs)
    kept = f" ({reused} kept from before)" if reused else ""
    console.print(
        f"{len(result.runs)} runs{kept} in [bold]{out / 'runs'}[/bold], "
        f"indexed in [bold]{result.index}[/bold]",
        soft_wrap=True,
    )
    if figures and result.finished:
        try:
            _draw_figures(console, result, out / "figures")
        except KeyboardInterrupt:
            console.print(
                f"[red]interrupted[/red] while drawing the figures: every run is kept in {out}; "
                "run the same command again to draw them",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
    failed = result.failed
    if failed:
        for run in failed:
            console.print(
                f"[red]failed[/red] {escape(run.name)}: {escape(str(run.error))}", soft_wrap=True
            )
        console.print(
            f"[red]error:[/red] {len(failed)} of {len(result.runs)} runs failed (each run.json "
            "says why); run the same command again to retry them",
            soft_wrap=True,
        )
        raise typer.Exit(1)


def sweep_table(result: SweepResult) -> Table:
    """The sweep's runs: the values each sets, status (``kept`` when finished before), final
    loss and time to target.

    One column per swept field keeps a row on one line in an 80-column terminal, where the
    runs' full names (every value spelled out) would wrap.
    """
    from rich import box
    from rich.table import Table

    from studies.experiment import short_value

    table = Table(title=f"sweep {result.name!r}", title_justify="left", box=box.SIMPLE_HEAD)
    fields = list(dict.fromkeys(field for run in result.runs for field in run.values))
    for field in fields:
        # A strategy with its arguments is the one long value: it alone may wrap.
        table.add_column(
            "seed" if field == "run.seed" else field.removeprefix("topology."),
            no_wrap=not field.startswith(("strategy", "workload")),
            min_width=18 if field.startswith(("strategy", "workload")) else None,
            overflow="fold",
        )
    table.add_column("status", no_wrap=True)
    # The runs' metric: the loss, or a return for a workload evaluated by it (runs.metric).
    metrics = sorted({str(r.summary.get("metric", "loss")) for r in result.runs if r.summary})
    table.add_column(" / ".join(metrics) or "loss", justify="right", no_wrap=True)
    table.add_column("to target (s)", justify="right", no_wrap=True)
    for run in result.runs:
        status = {
            "finished": "[green]finished[/green]",
            "failed": "[red]failed[/red]",
            "interrupted": "[yellow]interrupted[/yellow]",
        }.get(run.status, run.status)
        if run.reused:
            status = "[green]kept[/green]"
        table.add_row(
            *(escape(short_value(run.values[f])) if f in run.values else "" for f in fields),
            status,
            _number(run.summary.get(f"final_{run.summary.get('metric', 'loss')}")),
            _to_target(run.summary),
        )
    return table


def _draw_figures(console: Console, result: SweepResult, directory: Path) -> None:
    """The study's figures from its finished runs; a figure that cannot be drawn is named."""
    import warnings

    from studies.plot.study import study_figures

    swept = list(dict.fromkeys(field for run in result.runs for field in run.values))
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        written = study_figures(result.load(), directory, swept)
    for warning in skipped:
        console.print(f"[yellow]figure[/yellow] {escape(str(warning.message))}", soft_wrap=True)
    if written:
        names = ", ".join(path.name for path in written)
        console.print(f"figures in [bold]{directory}[/bold]: {names}", soft_wrap=True)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _to_target(summary: dict[str, Any]) -> str:
    if "target_loss" not in summary and "target_return" not in summary:
        return "-"  # no target set
    value = summary.get("time_to_target")
    return "not reached" if value is None else _number(value)


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)
