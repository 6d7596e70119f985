"""The one row schema of the metrics table, shared by every row either backend records.

Each observation is one row. ``kind`` says what was observed; the common columns say when
(``time``: simulated seconds in ``sim``, wall-clock seconds in ``real``), at which global
``step`` (optimizer steps of the evaluated model), and how much work had been done by then
(``samples`` computed, ``bytes`` injected into the network, over all ranks):

* ``"eval"``: the global model evaluated (``loss``, and ``accuracy`` where the workload has it;
  a workload evaluated by its mean ``return`` has that, and ``loss`` NaN: :mod:`runs.metric`);
* ``"step"``: one global step, with the ``staleness`` of its update (versions behind);
* ``"rank"``: one rank's time breakdown at the end (``rank``, its ``role``: ``"worker"`` or
  ``"server"``, ``compute_time``, ``comm_time``: exposed communication, ``idle_time``, and
  ``overlap_time``: communication that moved while the rank computed, :mod:`runs.overlap`);
* ``"log"``: values a strategy logged (``rank`` plus any names it chose).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "COMMON",
    "COMPUTE_FILE",
    "KINDS",
    "LINKS_FILE",
    "METRICS_FILE",
    "RUN_FILE",
    "TOPOLOGY_FILE",
    "TRACE_FILE",
    "check_log_names",
    "check_out",
    "new_run_directory",
    "row",
]

#: A run directory's files: the record (config, summary, status) and the rows, in every run;
#: the timeline (Chrome trace events, see ``runs.trace``), in every finished run;
#: per-link figures and the topology (``topologies.io`` JSON), in simulated runs.
RUN_FILE = "run.json"
METRICS_FILE = "metrics.parquet"
TRACE_FILE = "trace.json"
LINKS_FILE = "links.parquet"
TOPOLOGY_FILE = "topology.json"


def check_out(out: Any) -> Path | None:
    """A run's ``out`` as a path (None: write nothing), or a one-line error naming it.

    Examples
    --------
    >>> check_out("results/ring"), check_out(None)
    (PosixPath('results/ring'), None)
    >>> check_out(123)
    Traceback (most recent call last):
    ...
    TypeError: out=123 must be a directory path (a str or a pathlib.Path), or None
    """
    if out is None:
        return None
    if not isinstance(out, str | os.PathLike) or not os.fspath(out):
        raise TypeError(f"out={out!r} must be a directory path (a str or a pathlib.Path), or None")
    return Path(out)


def new_run_directory(default: str | os.PathLike[str]) -> Path:
    """A command's default run directory that never holds an earlier run: ``default`` when
    nothing is there, else the first free of ``default-2``, ``default-3`` ... It is made
    here (claimed: two runs started at once get two directories).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> [new_run_directory(root / "real").name for _ in range(3)]
    ['real', 'real-2', 'real-3']
    """
    base = Path(default)
    base.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        path = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            path.mkdir()
        except FileExistsError:
            number += 1
            continue
        return path


#: Every rank's compute seconds per gradient, in every finished run: ``rank``, ``gradient``
#: (0, 1, ... per rank), ``seconds`` (real: the rank's own work since its previous gradient,
#: the gradient included; sim: what the compute model drew). ``sim``'s ``trace`` straggler
#: model reads it as it is (``compute.path`` = the run's directory).
COMPUTE_FILE = "compute.csv"

COMMON = ("kind", "time", "step", "samples", "bytes")
#: Columns each kind always has (NaN when unmeasured), so sim and real tables line up.
COLUMNS: dict[str, tuple[str, ...]] = {
    "eval": (*COMMON, "loss"),
    "step": (*COMMON, "staleness"),
    "rank": (*COMMON, "rank", "role", "compute_time", "comm_time", "idle_time", "overlap_time"),
    "log": (*COMMON, "rank"),
    # A fault or a recovery (a crash, a restart, a rejoin, a link going down ...): markers
    # on a loss-against-time figure; ``event`` names it (strategies.recovery.FAULT_EVENTS).
    "fault": (*COMMON, "rank", "event"),
}
KINDS = tuple(COLUMNS)


def check_log_names(names: list[str]) -> None:
    """Refuse a name for ``w.log`` that is a log row's own column (or :func:`row`'s
    ``nbytes``): it would collide with the column or silently overwrite it.

    Examples
    --------
    >>> check_log_names(["loss_gap", "period"])
    >>> check_log_names(["period", "step"])
    Traceback (most recent call last):
    ...
    ValueError: w.log(step=...): 'step' is a column of every log row; log the value under another name
    """
    for name in names:
        if name in COLUMNS["log"] or name == "nbytes":
            raise ValueError(
                f"w.log({name}=...): {name!r} is a column of every log row; "
                "log the value under another name"
            )


def row(
    kind: str, *, time: float, step: int, samples: float, nbytes: float, **values: Any
) -> dict[str, Any]:
    """Build one metrics row; the only way rows are made, in both backends.

    Examples
    --------
    >>> row("step", time=0.5, step=3, samples=96, nbytes=1e3, staleness=0.0)
    {'kind': 'step', 'time': 0.5, 'step': 3, 'samples': 96.0, 'bytes': 1000.0, 'staleness': 0.0}
    >>> row("update", time=0, step=0, samples=0, nbytes=0)
    Traceback (most recent call last):
    ...
    ValueError: kind='update' is not a metrics row kind; use one of eval, step, rank, log, fault
    >>> row("rank", time=0, step=0, samples=0, nbytes=0, loss=1.0)
    Traceback (most recent call last):
    ...
    ValueError: a 'rank' row has no column 'loss'; its columns are kind, time, step, samples, bytes, rank, role, compute_time, comm_time, idle_time, overlap_time
    """
    if kind not in COLUMNS:
        raise ValueError(f"kind={kind!r} is not a metrics row kind; use one of {', '.join(KINDS)}")
    if kind != "log" and kind != "eval":  # log rows carry a strategy's names, eval a workload's
        extra = [k for k in values if k not in COLUMNS[kind]]
        if extra:
            raise ValueError(
                f"a {kind!r} row has no column {extra[0]!r}; its columns are "
                f"{', '.join(COLUMNS[kind])}"
            )
    return {
        "kind": kind,
        "time": float(time),
        "step": int(step),
        "samples": float(samples),
        "bytes": float(nbytes),
        **values,
    }
