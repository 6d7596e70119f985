"""Experiments people run: studies, plots, the conformance kit and the ``commsim`` command line.

The study layer (TOML experiment files, sweeps, a results store across runs) grows here; today
it holds :func:`load` (run directories into one table), the figures of :mod:`studies.plot`,
the quick-start study behind ``commsim demo``, and :func:`check`, which runs a strategy on
both backends and reports where they differ.
"""

from studies.conformance import Conformance, check
from studies.demo import DemoStudy, run_demo, summary_table
from studies.load import load
from studies.plot import comparison

__all__ = [
    "Conformance",
    "DemoStudy",
    "check",
    "comparison",
    "load",
    "run_demo",
    "summary_table",
]
