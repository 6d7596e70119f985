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

from collections.abc import Iterable

from options import plugins
from studies.experiment import ExperimentError

__all__ = ["import_modules"]


def import_modules(modules: Iterable[str]) -> None:
    """Import each of ``modules`` (:func:`options.plugins.import_modules`, which ``commsim
    real`` uses too), a failure said as an experiment's error is.

    Raises
    ------
    ExperimentError
        A module that cannot be imported: one line naming it and the fix.
    """
    try:
        plugins.import_modules(modules)
    except plugins.PluginError as exc:
        raise ExperimentError(str(exc)) from None
