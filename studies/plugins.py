"""A user's own strategies and workloads: modules imported by name before an experiment is
read, so that it can name what they register (``@strategies.register``,
``workloads.register``).

``commsim run``, ``commsim sweep`` and ``commsim real`` take them as ``--import MODULE``;
:func:`studies.run_sweep` as ``imports=[...]``, and imports them again in each worker that
did not inherit them (a spawned process, a Dask worker, where they must be importable too).

Examples
--------
>>> import_modules(["json"])
>>> import_modules(["no_such_module_here"])
Traceback (most recent call last):
...
studies.experiment.ExperimentError: --import no_such_module_here: No module named 'no_such_module_here'; give a module importable from here (the current directory is on the path)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from studies.experiment import ExperimentError

__all__ = ["import_modules"]


def import_modules(modules: Iterable[str]) -> None:
    """Import each of ``modules``, with the current directory on the path (as ``python -m``
    has it; a console script such as ``commsim`` does not).

    Raises
    ------
    ExperimentError
        A module that cannot be imported: one line naming it and the fix.
    """
    modules = list(modules)
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ExperimentError(
                f"--import {module}: {exc}; give a module importable from here (the current "
                "directory is on the path)"
            ) from None
