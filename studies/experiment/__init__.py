"""Experiment files: one TOML file (or dict) that says what to run, validated in one place.

An experiment has the sections ``run`` (name, seed, steps, eval_every, max_time, target_loss
or, for a workload evaluated by its return, target_return, accumulate, timing_only),
``topology`` (a builder spec: ``kind`` and its parameters, a spec string, or a ``file``),
``workload`` and ``strategy`` (a registered ``name`` and the builder's or
constructor's arguments), ``optimizer`` (``name``, the torch optimizer's options and an
optional ``schedule``), ``compute`` (``base`` seconds or ``"measure"``, a ``straggler`` model
with its parameters (``trace`` reads a real run's or a calibration's ``compute.csv``),
per-rank ``slowdown``, a ``server`` step's seconds, ``contention``), ``network`` (``model``:
``flow`` or ``analytic``; ``sharing``: ``maxmin`` or ``rtt``; ``efficiency``: the payload
fraction of links without their own; ``collectives``: what ``auto`` stands for;
``unfairness``: how unevenly concurrent flows share a bottleneck; ``routing``: ``ecmp``,
``spray`` or ``single``, how flows use equal-cost paths), an optional ``faults`` (the run's
fault schedule, :class:`faults.FaultSchedule`: ``detect``, ``reroute`` and ``[[faults.events]]``
tables, checked against the topology's ranks and links and ``run.steps``; an error is said at
``faults.events[i].field``; simulated only) and an
optional ``sweep`` (``grid``, ``zip`` and ``seeds``:
see :func:`expand`; a field may index a list of tables, ``faults.events[0].mtbf``). The same file drives ``sim`` and ``real``; ``real`` ignores what only a
simulation has (compute model, network model) and says so once.

The sections are pydantic models, so a misspelt key, a wrong type or an out-of-range value
fails at load time with one line naming the field path and the fix. Strategy and workload
options are checked by their own declarations (:mod:`options.declare`): the class (or the
builder) is the one source of truth, there is no second list to keep in step, and an error
carries the option it is about, so its field path is exact.

One module per job: :mod:`~studies.experiment.schema` (the sections, the error),
:mod:`~studies.experiment.shorthand` (spec strings, paths, ``--set``),
:mod:`~studies.experiment.components` (each component against its own code),
:mod:`~studies.experiment.points` (a sweep's points), :mod:`~studies.experiment.load`
(all of it, in order) and :mod:`~studies.experiment.running` (one experiment on a backend).

Examples
--------
>>> exp = load_experiment(
...     {"strategy": {"name": "parameter_server", "mode": "ssp", "staleness": 2},
...      "topology": "star:n=4,bandwidth=1Gbps", "run": {"steps": 20}},
...     overrides=["strategy.staleness=3"])
>>> exp.strategy.options, exp.topology.spec()["n"], exp.run.steps
({'mode': 'ssp', 'staleness': 3}, 4, 20)
>>> load_experiment({"strategy": {"name": "parameter_server", "stalenes": 1}})
Traceback (most recent call last):
...
studies.experiment.ExperimentError: strategy.stalenes: parameter_server has no argument 'stalenes'; did you mean 'staleness'? (valid: mode, staleness, servers, staleness_lr, compression, backup_workers, timeout, checkpoint_every)
>>> load_experiment({"strategy": {"name": "parameter_server", "mode": "ssp", "staleness": -1}})
Traceback (most recent call last):
...
studies.experiment.ExperimentError: strategy.staleness: staleness=-1 must be an integer >= 0 or None (the SSP bound)
"""

from __future__ import annotations

from studies.experiment.load import load_experiment
from studies.experiment.points import expand, short_value, sweep_values
from studies.experiment.running import SIM_ONLY, run_experiment, sim_only_fields
from studies.experiment.schema import Experiment, ExperimentError
from studies.experiment.shorthand import parse_override

__all__ = [
    "Experiment",
    "ExperimentError",
    "SIM_ONLY",
    "expand",
    "load_experiment",
    "parse_override",
    "run_experiment",
    "sim_only_fields",
    "short_value",
    "sweep_values",
]
