"""Experiments people run: studies, plots, the conformance kit and the ``commsim`` command line.

The study layer (TOML experiment files, sweeps, a results store across runs) grows here; today
it holds the cost-versus-convergence plots, the quick-start study behind ``commsim demo``, and
:func:`check`, which runs a strategy on both backends and reports where they differ.
"""

from studies.conformance import Conformance, check
from studies.demo import DemoStudy, run_demo, summary_table
from studies.plots import comparison, loss_curves, time_breakdown

__all__ = [
    "Conformance",
    "DemoStudy",
    "check",
    "comparison",
    "loss_curves",
    "run_demo",
    "summary_table",
    "time_breakdown",
]
