"""Command-line options that several ``commsim`` commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["Imports"]

#: ``--import MODULE`` (repeatable): modules that register a user's strategies or workloads,
#: imported before the experiment is read (:func:`studies.plugins.import_modules`).
Imports = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        help="Module to import first (repeatable): one that registers your own strategy "
        "or workload, which the file can then name, e.g. 'my_strategies'.",
    ),
]
