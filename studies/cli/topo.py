"""``commsim topo``: describe and draw network topologies.

A topology is given as a spec string, ``"fat_tree:k=4,bandwidth=100Gbps,latency=1us"``, or a
saved ``.graphml`` / ``.json`` file::

    commsim topo describe fat_tree:k=4
    commsim topo draw hierarchical:nodes=4,gpus_per_node=8 --out topo.png

A bad spec prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import networkx as nx
import typer
from rich.console import Console
from rich.table import Table

import topologies

__all__ = ["app"]

app = typer.Typer(
    help="Describe and draw network topologies (a spec like 'fat_tree:k=4' or a file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SPEC_HELP = (
    "'family:name=value,...' (families: "
    + ", ".join(topologies.BUILDERS)
    + ") or a .graphml/.json file"
)


def _build(spec: str) -> nx.Graph:
    try:
        return topologies.from_spec(spec)
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


@app.command("describe")
def describe_command(
    spec: Annotated[str, typer.Argument(help=_SPEC_HELP, metavar="SPEC_OR_FILE")],
) -> None:
    """Print hosts, switches, links, diameters and bisection bandwidth."""
    summary = topologies.describe(_build(spec))
    table = Table(title=spec, show_header=True)
    table.add_column("quantity")
    table.add_column("value")
    for name, value in summary.rows():
        table.add_row(name, value)
    Console().print(table)


@app.command("draw")
def draw_command(
    spec: Annotated[str, typer.Argument(help=_SPEC_HELP, metavar="SPEC_OR_FILE")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Image file; the suffix picks the format (png, pdf, svg)."
        ),
    ] = Path("topology.png"),
) -> None:
    """Draw the topology to an image file."""
    g = _build(spec)
    figure = topologies.draw(g)
    try:
        figure.savefig(out, dpi=150)
    except (ValueError, OSError) as error:
        typer.echo(f"error: cannot write {str(out)!r}: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {out}")
