"""Running one experiment on a backend: ``sim`` simulates it on its topology, ``real``
starts one process per host and ignores what only a simulation has (and says so).
"""

from __future__ import annotations

import os
import typing
import warnings
from typing import Any, Literal

from studies.experiment.components import compute_model, first_line
from studies.experiment.schema import Experiment, ExperimentError

if typing.TYPE_CHECKING:
    from runs import RunResult

__all__ = ["SIM_ONLY", "check_real_faults", "run_experiment", "sim_only_fields"]

#: Fields only a simulation has; ``real`` ignores them (and says so once).
SIM_ONLY = ("compute", "network")


def check_real_faults(exp: Experiment) -> None:
    """Refuse, before anything starts, a ``[faults]`` section the real backend cannot apply
    (link faults on a local run, ``recovery = "restart"`` without ``checkpoint_every`` or for a
    strategy whose ranks' steps do not line up, a server's restart with no checkpoint to
    restore its shard from): one line naming the field
    (``faults.events[0]: ...``), as a load error does."""
    if exp.faults is None:
        return
    import topologies
    from faults import FaultError
    from real.checkpoints import check_restartable
    from real.crashes import check_rejoinable, check_schedule
    from strategies import registry

    hosts = len(topologies.hosts(exp.graph()))
    try:
        schedule = check_schedule(exp.faults.schedule(), hosts, exp.run.steps)
        try:
            strategy = registry.get(exp.strategy.name, **exp.strategy.options)
        except Exception:  # the strategy's own options: the run says what is wrong
            strategy = None
        if strategy is not None:
            if schedule.recovery == "restart":
                check_restartable(strategy, hosts)
            check_rejoinable(strategy, schedule, hosts)
    except FaultError as exc:
        field = str(exc.field).replace("faults[", "faults.events[", 1)
        raise ExperimentError(f"{field}: {exc.reason}") from None


def sim_only_fields(exp: Experiment) -> list[str]:
    """The fields set away from their defaults that a real run ignores.

    Examples
    --------

    >>> from studies.experiment import load_experiment
    >>> sim_only_fields(load_experiment({"compute": {"straggler": "lognormal"},
    ...                                  "run": {"target_loss": 0.5}}))
    ['compute.straggler']
    """
    defaults = Experiment().to_dict()
    data = exp.to_dict()
    ignored = []
    for field in SIM_ONLY:
        section, _, name = field.partition(".")
        if name:
            if data[section].get(name) != defaults[section].get(name):
                ignored.append(field)
        else:
            for key in sorted(set(data[section]) | set(defaults[section])):
                if data[section].get(key) != defaults[section].get(key):
                    ignored.append(f"{section}.{key}")
    return ignored


def run_experiment(
    exp: Experiment,
    out: str | os.PathLike[str] | None = None,
    *,
    backend: Literal["sim", "real"] = "sim",
    progress: bool = False,
    **real_options: Any,
) -> RunResult:
    """Run one experiment (without a sweep; see :func:`expand`) on a backend.

    ``sim`` simulates it on the topology; ``real`` starts one local process per topology
    host (``real.run``; ``real_options`` go to it, e.g. ``timeout``, ``backend``). The run
    directory, when ``out`` is given, records the experiment beside the resolved config.
    What only the backend can check (more servers than the topology has ranks) fails as an
    :class:`ExperimentError` naming the field (``strategy.servers: ...``), in a sweep's
    record too.

    Examples
    --------

    >>> from studies.experiment import load_experiment
    >>> exp = load_experiment({"workload": "quadratic", "run": {"steps": 10},
    ...                        "topology": "ring:n=2"})
    >>> run_experiment(exp).summary["steps"]
    10
    """
    import workloads
    from options.declare import OptionError, option_fields
    from strategies import registry

    if exp.sweep is not None:
        raise ExperimentError(
            "sweep: this experiment is a sweep; run it with `commsim sweep` or run each of "
            "studies.experiment.expand(exp)"
        )
    if backend not in ("sim", "real"):
        raise ExperimentError(f"backend={backend!r}: use 'sim' or 'real'")
    if backend == "real":
        check_real_faults(exp)
        if exp.run.timing_only:
            raise ExperimentError(
                "run.timing_only: only a simulation times a run without computing it; "
                "use the sim backend or drop run.timing_only"
            )
    # What both backends take from the file; the rest is the simulation's or the launcher's.
    shared: dict[str, Any] = {
        "strategy": registry.get(exp.strategy.name, **exp.strategy.options),
        "workload": workloads.get(exp.workload.name, **exp.workload.options),
        "steps": exp.run.steps,
        "optimizer": {"name": exp.optimizer.name, **exp.optimizer.options},
        "lr_schedule": exp.optimizer.schedule,
        "seed": exp.run.seed,
        "eval_every": exp.run.eval_every,
        "accumulate": exp.run.accumulate,
        "out": out,
        "progress": progress,
        "record": {"experiment": exp.to_dict(), "experiment_key": exp.key()},
    }
    try:
        return _run_on(exp, backend, shared, real_options)
    except OptionError as exc:
        # What only the backend can check (the strategy against the world it runs on: more
        # servers than ranks ...) is said as a field of this experiment, as a load error is;
        # the error names its option (OptionError.field), no message is read for it.
        if exc.field is None or exc.field not in option_fields(type(shared["strategy"])):
            raise
        raise ExperimentError(f"strategy.{exc.field}: {first_line(exc)}") from exc


def _run_on(
    exp: Experiment, backend: str, shared: dict[str, Any], real_options: dict[str, Any]
) -> RunResult:
    shared = dict(shared)
    strategy, workload = shared.pop("strategy"), shared.pop("workload")
    if backend == "sim":
        import sim

        return sim.run(
            strategy,
            workload,
            exp.graph(),
            compute=compute_model(exp.compute),
            network=exp.network.model_dump(),
            max_time=exp.run.max_time,
            target_loss=exp.run.target_loss,
            target_return=exp.run.target_return,
            faults=exp.faults.schedule() if exp.faults is not None else None,
            timing_only=exp.run.timing_only,
            **shared,
        )
    if backend == "real":
        import real
        import topologies

        ignored = sim_only_fields(exp)
        if ignored:
            warnings.warn(
                f"the real backend ignores {', '.join(ignored)}: only a simulation has them",
                stacklevel=3,
            )
        graph = exp.graph()
        return real.run(
            strategy,
            workload,
            nproc=len(topologies.hosts(graph)),
            topology=graph,
            max_time=exp.run.max_time,
            target_loss=exp.run.target_loss,
            target_return=exp.run.target_return,
            faults=exp.faults.schedule() if exp.faults is not None else None,
            **shared,
            **real_options,
        )
    raise ExperimentError(f"backend={backend!r}: use 'sim' or 'real'")
