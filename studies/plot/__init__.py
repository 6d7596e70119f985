"""Figures of runs loaded with :func:`studies.load.load`, one module per kind.

Every kind takes the loaded table (plus its options) and an optional ``ax``, draws with one
style (:mod:`studies.plot.style`: a strategy keeps its colour in every figure, simulated runs
are solid and real ones dashed) and returns the figure. :data:`KINDS` maps the names
``commsim plot --kind`` accepts to the functions.

Examples
--------
>>> sorted(KINDS)
['breakdown', 'comparison', 'faults', 'loss-vs-bytes', 'loss-vs-time', 'pareto', 'speedup', 'staleness', 'time-to-target', 'utilisation']
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from studies.plot.breakdown import breakdown
from studies.plot.comparison import comparison
from studies.plot.curves import loss_vs_bytes, loss_vs_time
from studies.plot.faults import faults
from studies.plot.pareto import pareto
from studies.plot.speedup import speedup
from studies.plot.staleness import staleness
from studies.plot.time_to_target import time_to_target
from studies.plot.utilisation import utilisation

__all__ = [
    "KINDS",
    "breakdown",
    "comparison",
    "faults",
    "loss_vs_bytes",
    "loss_vs_time",
    "pareto",
    "speedup",
    "staleness",
    "time_to_target",
    "utilisation",
]

#: Plot kinds by the name the command line uses.
KINDS: dict[str, Callable[..., Figure]] = {
    "loss-vs-time": loss_vs_time,
    "loss-vs-bytes": loss_vs_bytes,
    "time-to-target": time_to_target,
    "speedup": speedup,
    "breakdown": breakdown,
    "staleness": staleness,
    "utilisation": utilisation,
    "pareto": pareto,
    "comparison": comparison,
    "faults": faults,
}
