"""``commsim calibrate``: measure loopback or a testbed, write what the simulator needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["calibrate_command"]


def calibrate_command(
    workload: Annotated[
        str, typer.Option(help="Workload whose steps are timed, e.g. 'mlp_digits:hidden=4096'.")
    ] = "mlp_digits",
    out: Annotated[Path, typer.Option(help="Calibration directory to write.")] = Path(
        "results/calibration"
    ),
    nproc: Annotated[
        int | None, typer.Option(help="Measure this many local processes (loopback).")
    ] = None,
    testbed: Annotated[
        str | None,
        typer.Option(
            help="Measure an emulated network of this tree topology (root; made and removed).",
            metavar="SPEC_OR_FILE",
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Worker steps timed on every rank at once.")] = 30,
    min_size: Annotated[int, typer.Option(help="Smallest message (bytes).")] = 1024,
    max_size: Annotated[int, typer.Option(help="Largest message (bytes).")] = 4 * 2**20,
    points: Annotated[int, typer.Option(help="Message sizes, log-spaced.")] = 7,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per size.")] = 3,
    progress: Annotated[bool, typer.Option(help="Show the probe's progress bar.")] = True,
    refit: Annotated[
        bool,
        typer.Option(help="Fit OUT's measurements again (after an upgrade), measuring nothing."),
    ] = False,
) -> None:
    """Fit latency, bandwidth, protocol efficiency, collectives and compute to measurements.

    Writes OUT/topology.json, OUT/compute.csv (the trace straggler model), OUT/calibrated.toml
    (experiment sections using them), OUT/report.md, OUT/calibration.json and a figure.
    """
    from studies.calibration import calibrate
    from studies.calibration import refit as refit_directory

    try:
        if refit:
            refit_directory(out)
        else:
            calibrate(
                workload,
                out,
                nproc=nproc,
                testbed=testbed,
                steps=steps,
                min_size=min_size,
                max_size=max_size,
                points=points,
                repeats=repeats,
                progress=progress,
            )
    except (ValueError, OSError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo((out / "report.md").read_text())
    typer.echo(f"wrote {out}/ (topology.json, compute.csv, calibrated.toml, report.md)")
