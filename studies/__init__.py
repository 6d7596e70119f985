"""Experiments people run: experiment files, sweeps, the results table, plots, the conformance
kit and the ``commsim`` command line.

A study is a file (:func:`load_experiment`: TOML or a dict, validated), run once
(:func:`run_experiment`, on ``sim`` or ``real``) or swept (:func:`run_sweep`: resumable, on
local processes or a Dask cluster); :func:`load` reads run directories into one table, which
the figures of :mod:`studies.plot` draw. :func:`check` runs a strategy on both backends and
reports where they differ. The quick start (``make demo``) is a sweep:
``commsim sweep examples/sweep_bandwidth.toml``.

The names are imported on first use, so that ``commsim --help`` (``studies.cli``) starts
without torch, pandas and matplotlib; :func:`load` alone is imported here (its module
imports pandas only when a table is made), because importing a submodule binds its name on
the package: a lazy ``load`` would turn into the module ``studies.load`` as soon as anything
imported it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from studies.load import load

if TYPE_CHECKING:
    from studies.conformance import Conformance, check
    from studies.experiment import Experiment, ExperimentError, load_experiment, run_experiment
    from studies.plot import comparison
    from studies.sweep import SweepError, SweepResult, run_sweep

__all__ = [
    "Conformance",
    "Experiment",
    "ExperimentError",
    "SweepError",
    "SweepResult",
    "check",
    "comparison",
    "load",
    "load_experiment",
    "run_experiment",
    "run_sweep",
]

_LAZY = {
    "Conformance": "studies.conformance",
    "check": "studies.conformance",
    "Experiment": "studies.experiment",
    "ExperimentError": "studies.experiment",
    "load_experiment": "studies.experiment",
    "run_experiment": "studies.experiment",
    "comparison": "studies.plot",
    "SweepError": "studies.sweep",
    "SweepResult": "studies.sweep",
    "run_sweep": "studies.sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'studies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
