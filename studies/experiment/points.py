"""The points of a sweep: the product of ``grid`` lists, times the rows of ``zip``, times
``seeds``; each a validated experiment named after the values it sets.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from studies.experiment.components import validated
from studies.experiment.schema import Experiment, ExperimentError, suggest
from studies.experiment.shorthand import normalise, set_path

__all__ = ["check_sweep", "expand", "short_value", "sweep_values"]


def expand(exp: Experiment) -> list[Experiment]:
    """The runs a sweep makes, each a validated experiment without a sweep.

    The product of ``sweep.grid``'s lists (in the order written), times the rows of
    ``sweep.zip``, times ``sweep.seeds`` (which set ``run.seed``). Each run's ``run.name`` is
    the base name followed by the values that vary. An experiment without a sweep is one run.

    Examples
    --------

    >>> from studies.experiment import load_experiment
    >>> exp = load_experiment({"sweep": {
    ...     "grid": {"topology.bandwidth": ["100Mbps", "1Gbps"]},
    ...     "zip": {"strategy.name": ["allreduce", "local_sgd"], "run.steps": [10, 20]},
    ...     "seeds": [0, 1]}})
    >>> runs = expand(exp)
    >>> len(runs), runs[0].run.name
    (8, 'experiment topology.bandwidth=100Mbps strategy.name=allreduce run.steps=10 seed=0')
    >>> len({r.key() for r in runs})
    8
    """
    if exp.sweep is None:
        return [exp]
    base = exp.to_dict()
    base.pop("sweep")
    return [_sweep_point(base, assigned) for assigned in sweep_values(exp)]


def sweep_values(exp: Experiment) -> list[dict[str, Any]]:
    """The fields each point of :func:`expand` sets and their values, in the same order.

    Examples
    --------

    >>> from studies.experiment import load_experiment
    >>> exp = load_experiment({"sweep": {"grid": {"optimizer.lr": [0.1, 0.2]}, "seeds": [3]}})
    >>> sweep_values(exp)
    [{'optimizer.lr': 0.1, 'run.seed': 3}, {'optimizer.lr': 0.2, 'run.seed': 3}]
    """
    sweep = exp.sweep
    if sweep is None:
        return [{}]
    grid = list(itertools.product(*sweep.grid.values())) if sweep.grid else [()]
    zipped = list(zip(*sweep.zip.values(), strict=True)) if sweep.zip else [()]
    seeds: list[int | None] = list(sweep.seeds) if sweep.seeds is not None else [None]
    points = []
    for grid_values, zip_values, seed in itertools.product(grid, zipped, seeds):
        assigned = {**dict(zip(sweep.grid, grid_values)), **dict(zip(sweep.zip, zip_values))}
        if seed is not None:
            assigned["run.seed"] = seed
        points.append(assigned)
    return points


def _sweep_point(base: dict[str, Any], assigned: dict[str, Any]) -> Experiment:
    """``base`` with the sweep's values set, named after them, validated."""
    data = copy.deepcopy(base)
    for key, value in assigned.items():
        section, _, field = key.partition(".")
        if section in ("strategy", "workload") and field == "name":
            # Another strategy (or workload) takes its own arguments, not the base's; a table
            # value (name and arguments together) replaces the whole section.
            data[section] = dict(value) if isinstance(value, dict) else {"name": value}
    for key, value in assigned.items():
        section, _, field = key.partition(".")
        if not (section in ("strategy", "workload") and field == "name"):
            set_path(data, key, value)
    parts = [f"{'seed' if k == 'run.seed' else k}={short_value(v)}" for k, v in assigned.items()]
    data["run"]["name"] = " ".join([base["run"]["name"], *parts])
    try:
        return validated(normalise(data, None))
    except ExperimentError as exc:
        raise ExperimentError(f"sweep point {', '.join(parts)}: {exc}") from None


def short_value(value: Any) -> str:
    """A swept value as a run's name shows it.

    Examples
    --------
    >>> short_value({"name": "local_sgd", "period": 4}), short_value(0.10)
    ('local_sgd(period=4)', '0.1')
    """
    if isinstance(value, dict):
        args = ",".join(f"{k}={short_value(v)}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '')}({args})" if args else str(value.get("name", ""))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_sweep(exp: Experiment) -> None:
    """Every value of the sweep, set alone on the base, must make a valid experiment (a
    typo in a field path or a bad value fails at load time, not half-way through a sweep)."""
    sweep = exp.sweep
    assert sweep is not None
    lengths = {key: len(values) for key, values in sweep.zip.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ExperimentError(f"sweep.zip: lists must have one length; {listed}")
    sections = [s for s in Experiment.model_fields if s != "sweep"]
    base = exp.to_dict()
    base.pop("sweep")
    for table, entries in (("grid", sweep.grid), ("zip", sweep.zip)):
        for key, values in entries.items():
            if not values:
                raise ExperimentError(f"sweep.{table}.{key}: an empty list makes no runs")
            section = key.split(".")[0]
            if section not in sections:
                raise ExperimentError(
                    f"sweep.{table}: {key!r} is not a section.field path{suggest(section, sections)}"
                )
            for value in values:
                _sweep_point(base, {key: value})
