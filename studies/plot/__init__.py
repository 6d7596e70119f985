"""Figures of runs loaded with :func:`studies.load.load`, one module per kind.

Every kind takes the loaded table (plus its options) and an optional ``ax``, draws with one
style (:mod:`studies.plot.style`: a strategy keeps its colour in every figure, simulated runs
are solid and real ones dashed) and returns the figure. :data:`KINDS` maps the names
``commsim plot --kind`` accepts to the functions. The curves are of the runs' own metric (the
loss, or a reinforcement-learning workload's return): ``metric-vs-time`` and
``metric-vs-bytes``, which the older names ``loss-vs-time`` and ``loss-vs-bytes`` still draw
(:data:`ALIASES`).

Examples
--------
>>> sorted(k for k in KINDS if k not in ALIASES)
['breakdown', 'comparison', 'faults', 'metric-vs-bytes', 'metric-vs-time', 'pareto', 'speedup', 'staleness', 'time-to-target', 'utilisation']
>>> KINDS["loss-vs-time"] is KINDS[ALIASES["loss-vs-time"]]
True
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
    "ALIASES",
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
    "metric-vs-time": loss_vs_time,
    "metric-vs-bytes": loss_vs_bytes,
    "time-to-target": time_to_target,
    "speedup": speedup,
    "breakdown": breakdown,
    "staleness": staleness,
    "utilisation": utilisation,
    "pareto": pareto,
    "comparison": comparison,
    "faults": faults,
}

#: Older kind names, kept: each draws what the kind it names does (its figure is labelled by
#: the runs' metric, a return too).
ALIASES = {"loss-vs-time": "metric-vs-time", "loss-vs-bytes": "metric-vs-bytes"}
KINDS.update({alias: KINDS[kind] for alias, kind in ALIASES.items()})
