"""``commsim plot``: a figure of run directories (see :mod:`studies.load`, :mod:`studies.plot`).

::

    commsim plot results/sweep --kind time-to-target --x topology.bandwidth --out ttt.png
    commsim plot 'results/**/seed=0' runs/real --kind metric-vs-time --out loss.pdf

A bad kind, field, suffix or path prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["plot"]

_SUFFIXES = (".png", ".pdf", ".svg")
# The kind names, repeated here so that --help does not import matplotlib and pandas.
_KINDS = (
    "metric-vs-time",
    "metric-vs-bytes",
    "time-to-target",
    "speedup",
    "breakdown",
    "staleness",
    "utilisation",
    "pareto",
    "comparison",
    "faults",
)
#: Older names of kinds (``studies.plot.ALIASES``), still accepted.
_ALIASES = ("loss-vs-time", "loss-vs-bytes")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def plot(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Run directories, directories holding runs (at any depth), or globs.",
            metavar="DIRS_OR_GLOBS...",
            show_default=False,
        ),
    ],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            "-k",
            help=f"What to draw: {', '.join(_KINDS)}. The curves are of the runs' metric (the "
            f"loss, or the return); {' and '.join(_ALIASES)} are their older names.",
        ),
    ] = "metric-vs-time",
    x: Annotated[
        str | None,
        typer.Option(
            help="Swept field on the x axis (time-to-target, speedup) or the field that picks "
            "markers (pareto), e.g. topology.bandwidth, world_size.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            help="Target loss, or return for runs evaluated by their return (time-to-target, "
            "speedup, pareto, faults); default: the runs' target_loss (target_return).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Figure file; the suffix picks the format (png, pdf, svg)."
        ),
    ] = Path("plot.png"),
    title: Annotated[
        str | None, typer.Option(help="Figure title (above the network's).", show_default=False)
    ] = None,
) -> None:
    """Draw a figure of run directories: loss curves, time to target, speed-up, breakdowns."""
    if kind not in _KINDS + _ALIASES:
        choices = list(_KINDS + _ALIASES)
        raise _fail(
            f"--kind {kind!r} is unknown{_suggest(kind, choices)} (kinds: {', '.join(_KINDS)})"
        )
    if out.suffix.lower() not in _SUFFIXES:
        raise _fail(
            f"--out {str(out)!r}: unsupported suffix {out.suffix or '(none)'!r}; use one of {', '.join(_SUFFIXES)}"
        )

    import matplotlib

    matplotlib.use("Agg")  # a file is the output: no display needed, none opened

    from studies.load import LoadError, LoadWarning, load
    from studies.plot import KINDS

    function = KINDS[kind]
    accepted = inspect.signature(function).parameters
    options = {"x": x, "target": target}
    for name, value in options.items():
        if value is not None and name not in accepted:
            takes = [k for k, f in KINDS.items() if name in inspect.signature(f).parameters]
            raise _fail(
                f"--{name} does not apply to --kind {kind}; it applies to {', '.join(takes)}"
            )
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", LoadWarning)
            df = load(paths)
    except LoadError as exc:
        raise _fail(str(exc)) from None
    for warning in skipped:  # a corrupt run directory: said in one line, the others drawn
        typer.echo(f"warning: {warning.message}", err=True)
    if x is not None and x not in df.columns:
        columns = [str(c) for c in df.columns]
        raise _fail(f"--x {x!r} is not a column of the runs{_suggest(x, columns)}")
    try:
        figure = function(df, **{k: v for k, v in options.items() if v is not None})
    except ValueError as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    if title:
        figure.suptitle(f"{title}\n{figure.get_suptitle()}".strip())
    try:
        figure.savefig(out)
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot write {str(out)!r}: {exc}") from None
    runs = df["run"].nunique()
    typer.echo(f"wrote {out} ({kind}, {runs} run{'s' if runs != 1 else ''})")
