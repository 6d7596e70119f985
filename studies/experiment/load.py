"""Loading an experiment: a TOML file, a dict or an :class:`Experiment`, with ``--set``
overrides, validated in one place (the schema, then each component against its own code,
then every point of a sweep).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from studies.experiment.components import validated
from studies.experiment.points import check_sweep
from studies.experiment.schema import Experiment, ExperimentError
from studies.experiment.shorthand import normalise, parse_override, set_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["load_experiment"]


def load_experiment(
    source: str | os.PathLike[str] | Mapping[str, Any] | Experiment,
    overrides: Iterable[str] = (),
) -> Experiment:
    """Read, override and validate an experiment.

    Parameters
    ----------
    source
        A TOML file, a dict with the same sections, or an :class:`Experiment`.
    overrides
        ``"section.field=value"`` strings (``--set``); values are TOML literals
        (``3``, ``0.5``, ``true``, ``"async"``, ``[1, 2]``), or plain strings.

    Raises
    ------
    ExperimentError
        One line naming the field path (``strategy.staleness: ...``) and the fix.
    """
    base_dir: Path | None = None
    if isinstance(source, Experiment):
        data = source.to_dict()
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        data = _read_toml(path)
        base_dir = path.parent
    else:
        raise ExperimentError(
            f"an experiment is a TOML file's path, a dict of sections or an Experiment, "
            f"not {type(source).__name__}"
        )
    if isinstance(overrides, str):  # one --set given as a string, not a list of them
        overrides = [overrides]
    data = normalise(data, base_dir)
    for override in overrides:
        if not isinstance(override, str):
            raise ExperimentError(f"--set {override!r}: write section.field=value as a string")
        key, value = parse_override(override)
        set_path(data, key, value)
        # A path typed on the command line is relative to where it was typed; the file's own
        # are absolute by now, so this leaves them alone.
        data = normalise(data, Path.cwd() if base_dir is not None else None)
    if not data:
        where = f"{source}: " if base_dir is not None else ""
        raise ExperimentError(
            f"{where}the experiment is empty; say what to run, at least one of the sections "
            f"{', '.join(s for s in Experiment.model_fields if s != 'sweep')} "
            '(e.g. [strategy] name = "allreduce")'
        )
    return validate(data)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExperimentError(f"{path}: no such experiment file; give a .toml file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not a text file; give a .toml experiment file") from None


def validate(data: dict[str, Any]) -> Experiment:
    """The experiment ``data`` describes, checked: schema, components, sweep points."""
    experiment = validated(data)
    if experiment.sweep is not None:
        check_sweep(experiment)
    return experiment
