"""``commsim run FILE``: one experiment file, simulated (or on local processes), summarised."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from studies.cli.options import Imports

if TYPE_CHECKING:
    from studies.experiment import Experiment

__all__ = ["run_command", "slug"]


def slug(name: str) -> str:
    """A directory name for a run name.

    Examples
    --------
    >>> slug("PS async, staleness_lr=inverse")
    'ps-async-staleness_lr-inverse'
    """
    return re.sub(r"[^a-z0-9_.]+", "-", name.lower()).strip("-") or "run"


def run_command(
    file: Annotated[
        Path, typer.Argument(help="Experiment file (TOML), e.g. examples/allreduce.toml.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory; default results/<run.name>, or results/<run.name>-2, -3 ... "
            "when taken (an earlier run is never overwritten)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a field: --set strategy.mode=async --set run.steps=50 (repeatable).",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="sim (simulated time) or real (one local process per host).")
    ] = "sim",
    faults: Annotated[
        Path | None,
        typer.Option(
            help="Fault file (TOML or JSON: a list of events, detect, reroute), e.g. "
            "examples/fault_files/crash_restart.toml; replaces the experiment's faults section."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    timing_only: Annotated[
        bool,
        typer.Option(
            "--timing-only",
            help="Time the run without computing it: shapes on the meta device, true bytes, "
            "no losses (as --set run.timing_only=true; sim only).",
        ),
    ] = False,
    imports: Imports = None,
) -> None:
    """Run one experiment: write its run directory and print a summary table."""
    from studies.experiment import ExperimentError, load_experiment, run_experiment
    from studies.plugins import import_modules
    from studies.report import summary_table

    console = Console()
    if backend not in ("sim", "real"):
        _fail(console, f"--backend {backend!r}: use sim or real")
    if timing_only and backend == "real":
        _fail(
            console,
            "--timing-only: only a simulation times a run without computing it; "
            "drop --backend real",
        )
    try:
        import_modules(imports or ())
    except ExperimentError as exc:
        _fail(console, str(exc))
    try:
        overrides = [*(set_ or ()), *(["run.timing_only=true"] if timing_only else [])]
        experiment = load_experiment(file, overrides)
    except ExperimentError as exc:
        # A file's own problems (missing, not TOML) already name it.
        _fail(console, str(exc) if str(exc).startswith(str(file)) else f"{file}: {exc}")
    if faults is not None:
        experiment = _with_faults(console, experiment, faults)
    if backend == "real":
        from studies.experiment.running import check_real_faults

        try:
            check_real_faults(experiment)
        except ExperimentError as exc:
            _fail(console, str(exc))
    if experiment.sweep is not None:
        _fail(
            console,
            f"{file} has a [sweep]: run it with `commsim sweep {file} --out DIR`, or run "
            "one point from a copy of the file without its [sweep] section",
        )
    if out is not None:
        directory = out
    else:
        from runs import new_run_directory

        try:
            directory = new_run_directory(Path("results") / slug(experiment.run.name))
        except OSError as exc:
            _fail(console, f"results/: {exc.strerror or exc}; give --out a writable directory")
    if backend == "real":
        from studies.experiment import sim_only_fields

        ignored = sim_only_fields(experiment)
        if ignored:
            console.print(f"[yellow]note:[/yellow] the real backend ignores {', '.join(ignored)}")
    # What the run will run on: the simulated network, or local processes over loopback
    # (the topology then only names the ranks' nodes and neighbours, not their links).
    where = (
        _describe_topology(experiment)
        if backend == "sim"
        else f"{_hosts(experiment)} local processes over loopback (not the "
        "topology's links: those are simulated only)"
    )
    console.print(
        f"[bold]{experiment.run.name}[/bold]: {experiment.strategy.name} on {where}, "
        f"{experiment.run.steps} steps ({backend})",
        soft_wrap=True,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # said once, above
            on: Literal["sim", "real"] = "real" if backend == "real" else "sim"  # checked above
            result = run_experiment(experiment, directory, backend=on, progress=progress)
    except KeyboardInterrupt:
        console.print(f"[red]interrupted[/red]: what was measured is in {directory}")
        raise typer.Exit(130) from None
    except OSError as exc:
        _fail(console, f"--out {directory}: {exc.strerror or exc}; choose a writable directory")
    except Exception as exc:  # a run that fails says why in one line; run.json keeps the rest
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = f" (see {directory})"
        if out is None and _left_empty(directory):  # refused before it wrote anything
            directory.rmdir()
            where = ""
        console.print(f"[red]error:[/red] {type(exc).__name__}: {message}{where}")
        raise typer.Exit(1) from None
    console.print(summary_table(result, title=experiment.run.name))
    console.print(f"run written to [bold]{directory}[/bold]")


def _left_empty(directory: Path) -> bool:
    """Is the run directory this command made still empty (the run refused at its start)?"""
    try:
        return directory.is_dir() and not any(directory.iterdir())
    except OSError:
        return False


def _with_faults(console: Console, experiment: object, path: Path) -> Experiment:
    """``experiment`` with the fault file's schedule as its ``[faults]`` section, checked
    against the run like one written in the file (errors name the file and the field)."""
    from faults import FaultError
    from faults.sources import read_source
    from studies.experiment import Experiment, ExperimentError, load_experiment

    assert isinstance(experiment, Experiment)
    try:
        events, options = read_source(path)
    except FaultError as exc:
        raise _fail(console, f"--faults {path}: {exc}") from None
    data = experiment.to_dict()
    data["faults"] = {"events": events, **options}
    try:
        return load_experiment(data)
    except ExperimentError as exc:
        raise _fail(console, f"--faults {path}: {exc}") from None


def _hosts(experiment: object) -> int:
    import topologies
    from studies.experiment import Experiment

    assert isinstance(experiment, Experiment)
    return len(topologies.hosts(experiment.graph()))


def _describe_topology(experiment: object) -> str:
    from studies.experiment import Experiment

    assert isinstance(experiment, Experiment)
    spec = experiment.topology.spec()
    if isinstance(spec, str):
        return spec
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "kind")
    return f"{spec['kind']}({args})"


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)
