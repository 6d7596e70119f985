"""``commsim real`` / ``python -m real``: train with a strategy on real processes.

One entry point for a laptop, a GPU node and a cluster. Outside any launcher it starts
``--nproc`` local processes itself; under torchrun or srun it is one rank of the launcher's
world (rank, world size, local rank and node come from the launcher's environment), and
rank 0 draws the progress bar, gathers every rank's measurements and writes the run
directory. Nothing in the strategy changes.

Laptop (4 processes, gloo on CPU)::

    commsim real --nproc 4 --strategy allreduce --workload mlp_digits --steps 200 --out results/laptop

One GPU node (8 processes, one per GPU, NCCL chosen automatically)::

    torchrun --standalone --nproc-per-node=8 -m real --strategy local_sgd:period=8 \\
        --workload tiny_transformer --steps 1000 --out results/node

Two nodes with torchrun (run on each node; HOST is node 0's address)::

    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        -m real --strategy diloco:period=50 --workload tiny_transformer --steps 2000 --out results/2nodes

A SLURM cluster (one task per GPU; rank 0 runs on the first node of the allocation)::

    srun --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 python -m real \\
        --strategy allreduce --workload tiny_transformer --steps 1000 --out results/slurm

Strategies take their options as ``name:key=value,...`` (``parameter_server:mode=ssp,
staleness=2``); your own strategy runs by name once ``--import my_module`` has registered
it (``@strategies.register``). Every rank must be given the same arguments (checked).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from options.plugins import PluginError, import_modules

# The one reader of "name:key=value" strings (needs no torch: `commsim --help` stays quick).
from options.spec import parse_spec

__all__ = ["app", "main", "parse_spec", "ran_on", "real_command"]


#: Where a run goes without ``--out``: this, or the first free ``results/real-N``.
DEFAULT_OUT = Path("results/real")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(code=2)


def real_command(
    strategy: Annotated[
        str, typer.Option(help="Strategy and options, e.g. 'local_sgd:period=8'.")
    ] = "allreduce",
    workload: Annotated[
        str, typer.Option(help="Workload and options, e.g. 'mlp_digits'.")
    ] = "mlp_digits",
    steps: Annotated[int, typer.Option(help="Global steps to train.")] = 100,
    nproc: Annotated[
        int | None,
        typer.Option(help="Local processes to start (outside torchrun/srun; default 2)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="auto (NCCL when there is a GPU per process), gloo or nccl.")
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (run.json, metrics.parquet); default results/real, or "
            "results/real-2, -3 ... when taken (an earlier run is never overwritten)."
        ),
    ] = None,
    optimizer: Annotated[
        str, typer.Option(help="Optimizer and options, e.g. 'sgd:lr=0.1,momentum=0.9'.")
    ] = "sgd",
    lr_schedule: Annotated[
        str, typer.Option(help="Schedule and options, e.g. 'cosine:warmup=10'.")
    ] = "constant",
    seed: Annotated[int, typer.Option(help="Seed for model and data.")] = 0,
    eval_every: Annotated[int, typer.Option(help="Evaluate the global model every N steps.")] = 10,
    accumulate: Annotated[int, typer.Option(help="Micro-batches per gradient.")] = 1,
    target_loss: Annotated[
        float | None,
        typer.Option(help="Stop once the global model's held-out loss reaches this."),
    ] = None,
    target_return: Annotated[
        float | None,
        typer.Option(
            help="Stop once the global model's mean return reaches this (a workload "
            "evaluated by its return: reinforcement learning)."
        ),
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(help="Stop after this many wall seconds of training."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds any one wait may take before the run fails.")
    ] = 300.0,
    silence: Annotated[
        float,
        typer.Option(
            help="Seconds without a heartbeat after which a rank that others wait on "
            "(stopped, hung) fails the run, naming it; inf: never."
        ),
    ] = 10.0,
    portable: Annotated[
        bool,
        typer.Option(help="Never receive from any source (as NCCL must); off: gloo's own."),
    ] = True,
    port: Annotated[
        int, typer.Option(help="Local rendezvous port (0: any free one; not under a launcher).")
    ] = 0,
    topology: Annotated[
        str | None,
        typer.Option(help="Topology spec or file naming the ranks' nodes and neighbours."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Draw a progress bar.")] = True,
    testbed: Annotated[
        str | None,
        typer.Option(
            help="Run each rank in its own host's namespace of an emulated network of this "
            "tree-shaped topology (root; made for the run, removed after): the ranks talk "
            "over its shaped links, the run's store is this launcher's, on a management "
            "network of its own.",
            metavar="SPEC_OR_FILE",
        ),
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Fault schedule file (TOML or JSON, as sim's): crashes kill rank processes, "
            "restarts start new ones, stragglers slow down (local runs and --testbed); "
            "link_slow and a transient link_down change the testbed's links (--testbed); "
            'under torchrun, crashes at a step with recovery = "restart" (--max-restarts).',
            metavar="FILE",
        ),
    ] = None,
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            help="Module to import first (repeatable): one that registers your own strategy "
            "or workload with @register, e.g. 'my_strategies'.",
        ),
    ] = None,
) -> None:
    """Train with STRATEGY on real processes (local, torchrun or srun); write the run."""
    from real.placement import LaunchError, Placement
    from real.testbed.plan import TestbedError

    if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` has it
        sys.path.insert(0, os.getcwd())
    try:
        placement = Placement.from_env(os.environ)
        name, options = parse_spec(strategy, "--strategy")
        workload_name, workload_options = parse_spec(workload, "--workload")
        opt_name, opt_options = parse_spec(optimizer, "--optimizer")
        schedule_name, schedule_options = parse_spec(lr_schedule, "--lr-schedule")
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if placement is not None and nproc is not None and nproc != placement.world_size:
        raise _fail(
            f"--nproc {nproc} but the launcher ({placement.launcher}) started "
            f"{placement.world_size} ranks; drop --nproc under a launcher, or make them agree"
        )
    if placement is None and nproc is not None and nproc < 1:
        raise _fail(f"--nproc {nproc}: must be at least 1")
    if placement is not None and port != 0:
        raise _fail("--port is for local runs; under a launcher, set MASTER_PORT / --rdzv-endpoint")
    if testbed is not None:
        if placement is not None:
            raise _fail("--testbed launches the ranks itself; drop it under torchrun or srun")
        try:
            nproc = _testbed_hosts(testbed, nproc)
        except ValueError as exc:
            raise _fail(f"--testbed: {exc}") from None
        topology = topology or testbed
    try:
        import_modules(imports or [])
    except PluginError as exc:
        raise _fail(str(exc)) from None
    try:
        import strategies
        import topologies
        import workloads

        built = strategies.get(name, **options)
        work = workloads.get(workload_name, **workload_options)
        graph = topologies.from_spec(topology) if topology is not None else None
        run_args: dict[str, Any] = {
            "steps": steps,
            "optimizer": {"name": opt_name, **opt_options},
            "lr_schedule": {"name": schedule_name, **schedule_options},
            "seed": seed,
            "eval_every": eval_every,
            "accumulate": accumulate,
        }
        stops: dict[str, Any] = {"target_loss": target_loss, "max_time": max_time}
        if target_return is not None:  # (as given: run() refuses the one the workload lacks)
            stops["target_return"] = target_return
        if faults is not None:
            if placement is not None and out is None:  # (before rank 0 makes its own)
                raise _fail(
                    "--faults under a launcher needs --out (the same directory on every "
                    "node): the ranks' checkpoints go there, and every restart writes that run"
                )
            stops["faults"] = faults
        if testbed is not None:
            stops["testbed"] = testbed
        out = _default_out(out, placement)
        if placement is None:
            result = _run_local(
                built,
                work,
                graph,
                nproc or 2,
                run_args,
                backend,
                out,
                timeout,
                portable,
                port,
                progress,
                silence,
                stops,
            )
        else:
            from real.signals import terminate_interrupts

            # A cluster's scheduler (and the testbed's launcher) stops a rank with SIGTERM:
            # it stops the run at the next yield once training, and before that it ends
            # the set-up as Ctrl-C does, with the run directory written.
            with terminate_interrupts():
                result = _run_launched(
                    built,
                    work,
                    graph,
                    placement,
                    run_args,
                    backend,
                    out,
                    timeout,
                    portable,
                    progress,
                    silence,
                    stops,
                )
    except typer.Exit:  # a refusal said above (click's Exit is a RuntimeError: not a failure)
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise _fail(str(exc)) from None
    except TestbedError as exc:  # no root, no `ip`; a testbed of that name is up
        raise _fail(f"--testbed: {exc}") from None
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM: what was measured is written
        said = str(exc) or "interrupted before the ranks started training"
        typer.echo(said if said.startswith("interrupted") else f"interrupted: {said}", err=True)
        raise typer.Exit(code=143 if "SIGTERM" in said else 130) from None
    except RuntimeError as exc:  # a rank failed: what it measured is written already
        typer.echo(f"error: {exc}", err=True)
        if out is not None:
            typer.echo(f"what was measured until then is in {out}", err=True)
        raise typer.Exit(code=1) from None
    if result is not None:
        _print_summary(result.summary, out, result.config.get("placement"))


def _default_out(out: Path | None, placement: Any) -> Path | None:
    """``out``, or (once the arguments are checked) a new directory on the rank that writes
    the run: ``results/real``, else the first free ``results/real-N``."""
    if out is not None or (placement is not None and placement.rank != 0):
        return out
    from runs import new_run_directory

    return new_run_directory(DEFAULT_OUT)


def _testbed_hosts(spec: str, nproc: int | None) -> int:
    """The testbed's hosts (one rank each): ``--nproc`` must agree when given."""
    import topologies
    from real.testbed import TestbedError
    from real.testbed.launch import check_testbed_arguments

    try:
        graph = topologies.from_spec(spec)
        check_testbed_arguments(nproc, graph)
    except (TestbedError, OSError) as exc:
        raise ValueError(str(exc)) from None
    return len(topologies.hosts(graph))


def _run_local(
    strategy: Any,
    workload: Any,
    graph: Any,
    nproc: int,
    run_args: dict[str, Any],
    backend: str,
    out: Path | None,
    timeout: float,
    portable: bool,
    port: int,
    progress: bool,
    silence: float,
    stops: dict[str, Any],
) -> Any:
    from real.launch import run

    return run(
        strategy,
        workload,
        nproc=nproc,
        backend=backend,
        out=out,
        timeout=timeout,
        topology=graph,
        portable=portable,
        port=port,
        progress=progress,
        silence=silence,
        **stops,
        **run_args,
    )


def _run_launched(
    strategy: Any,
    workload: Any,
    graph: Any,
    placement: Any,
    run_args: dict[str, Any],
    backend: str,
    out: Path | None,
    timeout: float,
    portable: bool,
    progress: bool,
    silence: float,
    stops: dict[str, Any],
) -> Any:
    import topologies
    from real.cluster import run_launched
    from real.launch import check_silence, check_timeout
    from strategies.roles import TrainingSetup

    setup = TrainingSetup.create(
        strategy,
        workload,
        placement.world_size,
        host_graph=None if graph is None else topologies.host_graph(graph),
        nodes=None if graph is None else topologies.rank_nodes(graph),
        **run_args,
    )
    return run_launched(
        setup,
        placement,
        backend=backend,
        portable=portable,
        timeout=check_timeout(timeout),
        out=out,
        progress=progress,
        topology=graph,
        silence=check_silence(silence),
        **stops,
    )


_SUMMARY_ROWS = (
    ("steps", "steps", 1.0),
    ("final_loss", "final loss", 1.0),
    # A workload evaluated by its return (runs.metric) has these instead of a loss.
    ("final_return", "final return", 1.0),
    ("best_return", "best return", 1.0),
    ("final_accuracy", "final accuracy", 1.0),
    ("time", "training time (s)", 1.0),
    ("wall_time", "wall time, with start-up (s)", 1.0),
    ("bytes", "sent (MB)", 1e-6),
    ("samples_per_s", "samples/s", 1.0),
    ("stop_reason", "stopped on", 1.0),
)


def ran_on(placement: dict[str, Any]) -> str:
    """What a real run ran on, from its ``config.placement`` (not the topology's links, which
    only the simulator and the testbed have).

    Examples
    --------
    >>> from real.placement import placement_record
    >>> ran_on(placement_record(4, 4, "local"))
    '1 node x 4 processes (local launcher) over loopback'
    """
    nodes, per_node = placement["nodes"], placement["processes_per_node"]
    return (
        f"{nodes} node{'s' if nodes != 1 else ''} x {per_node} process"
        f"{'es' if per_node != 1 else ''} ({placement['launcher']} launcher) over "
        f"{placement['links']}"
    )


def _print_summary(
    summary: dict[str, Any], out: Path | None, placement: dict[str, Any] | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="real run")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, label, scale in _SUMMARY_ROWS:
        value = summary.get(key)
        if value is None:
            continue
        shown = f"{value * scale:.4g}" if isinstance(value, float) else str(value)
        table.add_row(label, shown)
    console = Console()
    console.print(table)
    if placement:
        console.print(f"ran on {ran_on(placement)}", soft_wrap=True)
    if out is not None:
        console.print(f"run written to [bold]{out}[/bold]")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(name="real")(real_command)


def main() -> None:
    """``python -m real``: the ``commsim real`` command, for launchers that run modules.

    A rank leaves at once, without tearing its process group down: operations abandoned at
    the stop may still be pending in the library, and waiting on them (or a peer's closed
    connection surfacing in them) would hang or abort a run that has already been written."""
    code: Any = 0
    try:
        typer.main.get_command(app)(prog_name="python -m real")
    except SystemExit as exit_:  # how the command line ends, usage errors included
        code = exit_.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
