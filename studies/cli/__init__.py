"""The ``commsim`` command line: one Typer app with a sub-command per job.

Sub-apps live in sibling modules (``topo.py``, ``sweep.py`` ...) and are registered here, so
that each stays small and ``commsim --help`` lists them all.
"""

from __future__ import annotations

import typer

from real.cli import real_command
from real.testbed.cli import app as testbed_app
from studies.cli.calibrate import calibrate_command
from studies.cli.plot import plot
from studies.cli.run import run_command
from studies.cli.sweep import sweep_command
from studies.cli.topo import app as topo_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="commsim",
    help="Simulate and run distributed-training communication strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(topo_app, name="topo")
app.add_typer(testbed_app, name="testbed")
app.command(name="run")(run_command)
app.command(name="sweep")(sweep_command)
app.command()(plot)
app.command(name="real")(real_command)
app.command(name="calibrate")(calibrate_command)


def main() -> None:
    """Entry point of the ``commsim`` console script."""
    app()
