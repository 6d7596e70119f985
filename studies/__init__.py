"""Experiments people run: studies, plots and the ``commsim`` command line.

The study layer (TOML experiment files, sweeps, a results store across runs) grows here; today
it holds the cost-versus-convergence plots and the quick-start study behind ``commsim demo``.
"""

from studies.demo import DemoStudy, run_demo, summary_table
from studies.plots import comparison, loss_curves, time_breakdown

__all__ = ["DemoStudy", "comparison", "loss_curves", "run_demo", "summary_table", "time_breakdown"]
