"""A user's own modules, imported by name before anything is read, so that a strategy or a
workload they register (``@strategies.register``, ``workloads.register``) can be named: the
one helper behind ``--import`` in ``commsim run``, ``sweep`` and ``real``, below both the
studies and the real backend (neither imports the other).

Examples
--------
>>> import_modules(["json"])
>>> import_modules(["no_such_module_here"])
Traceback (most recent call last):
...
options.plugins.PluginError: --import no_such_module_here: No module named 'no_such_module_here'; give a module importable from here (the current directory is on the path)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

__all__ = ["PluginError", "import_modules"]


class PluginError(ValueError):
    """A module that cannot be imported: one line naming it and the fix."""


def import_modules(modules: Iterable[str]) -> None:
    """Import each of ``modules``, with the current directory on the path (as ``python -m``
    has it; a console script such as ``commsim`` does not).

    Raises
    ------
    PluginError
        A module that cannot be imported: one line naming it and the fix.
    """
    modules = list(modules)
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise PluginError(
                f"--import {module}: {exc}; give a module importable from here (the current "
                "directory is on the path)"
            ) from None
