"""``commsim testbed up|down|status``: an emulated network of namespaces on this machine.

::

    sudo commsim testbed up star:n=4,bandwidth=100Mbps,latency=1ms
    sudo commsim testbed status
    sudo commsim testbed down

Bad input and missing prerequisites (root, ``ip``/``tc``, a topology with loops) are one line
on stderr and exit status 2.
"""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app"]

app = typer.Typer(
    help="An emulated network on this machine: namespaces, bridges, shaped veth links (root).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_NAME_HELP = "The testbed's name: the prefix of its namespaces (1-8 lower-case letters, digits)."


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.command("up")
def up_command(
    spec: Annotated[
        str,
        typer.Argument(
            help="A tree-shaped topology: 'star:n=4,bandwidth=100Mbps', a two-level tree, "
            "hierarchical, or a .json/.graphml file.",
            metavar="SPEC_OR_FILE",
        ),
    ],
    name: Annotated[str, typer.Option(help=_NAME_HELP)] = "tb",
) -> None:
    """Create the testbed: a namespace per host, a bridge per switch, a shaped veth per link."""
    import topologies
    from real.signals import terminate_interrupts
    from real.testbed import TestbedError, make_plan, preflight, up
    from topologies.units import format_bandwidth

    console = Console()
    try:
        graph = topologies.from_spec(spec)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    try:
        plan = make_plan(graph, name)
        preflight()
        with warnings.catch_warnings(record=True) as said, terminate_interrupts():
            warnings.simplefilter("always")
            netem = up(plan)
    except TestbedError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        console.print("[red]interrupted[/red]: what was created has been removed")
        raise typer.Exit(130) from None
    table = Table(title=f"testbed {name!r} is up", title_justify="left")
    for column in ("rank", "namespace", "address", "device", "management"):
        table.add_column(column)
    for host in plan.hosts:
        management = plan.management_address(host.rank)
        table.add_row(str(host.rank), host.namespace, host.address, host.device, management)
    console.print(table)
    rates = sorted({format_bandwidth(link.rate) for link in plan.links})
    latency = "with netem delay" if netem else "latency NOT emulated"
    console.print(
        f"{len(plan.links)} links shaped by tbf at {', '.join(rates)} each way; {latency}",
        soft_wrap=True,
    )
    console.print(
        f"management network (unshaped, out of the topology): this machine is {plan.gateway} "
        f"on {plan.gateway_device}, each host on its `mgmt` device",
        soft_wrap=True,
    )
    for warning in said:
        console.print(f"[yellow]note[/yellow]: {warning.message}", soft_wrap=True)
    console.print(
        f"run a command on rank 0's host: ip netns exec {plan.hosts[0].namespace} COMMAND; "
        f"remove it all: commsim testbed down {name}",
        soft_wrap=True,
    )


@app.command("down")
def down_command(
    name: Annotated[
        str | None,
        typer.Argument(help="The testbed to remove; every one this machine records if omitted."),
    ] = None,
) -> None:
    """Remove a testbed (and one a killed `up` left half made): its processes and namespaces."""
    from real.testbed import TestbedError, down, preflight

    try:
        preflight()
        removed = down(name)
    except TestbedError as exc:
        raise _fail(str(exc)) from None
    if not removed:
        typer.echo("no testbed is up")
    for testbed, namespaces in removed.items():
        typer.echo(f"removed testbed {testbed!r}: {len(namespaces)} namespaces")


@app.command("status")
def status_command() -> None:
    """List the testbeds on this machine, what of them is missing, what runs inside, and
    which have lost their owner (a killed run or `up`)."""
    from real.testbed import TestbedError, preflight, status

    try:
        preflight()
        found = status()
    except TestbedError as exc:
        raise _fail(str(exc)) from None
    if not found:
        typer.echo("no testbed is up")
        return
    table = Table()
    for column in ("name", "state", "hosts", "switches", "links", "latency", "processes"):
        table.add_column(column)
    for bed in found:
        state = bed.condition if not bed.missing else f"{bed.condition}, {len(bed.missing)} missing"
        latency = {True: "netem", False: "not emulated", None: "?"}[bed.netem]
        table.add_row(
            bed.name,
            state,
            str(bed.hosts),
            str(bed.switches),
            str(bed.links),
            latency,
            str(bed.processes),
        )
    console = Console()
    console.print(table)
    for bed in found:
        if bed.owner_alive is False:
            console.print(
                f"testbed {bed.name!r} has no live owner: remove it with `commsim testbed down "
                f"{bed.name}` (the next `commsim testbed up` or --testbed run removes it too)",
                soft_wrap=True,
            )
