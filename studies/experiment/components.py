"""Each component of an experiment checked against its own code: the strategy and the
workload by their declared options (:mod:`options.declare`), the topology by its builder,
the optimizer by torch, the compute model by itself, the network by its declared options. A bad option is said at its field path,
which the error carries (``OptionError.field``, ``TopologyError.field``): no message is
read back for it.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from studies.experiment.schema import (
    ComputeSection,
    Experiment,
    ExperimentError,
    FaultsSection,
    NetworkSection,
    OptimizerSection,
    StrategySection,
    TopologySection,
    WorkloadSection,
    pydantic_message,
    suggest,
)

if typing.TYPE_CHECKING:
    import networkx as nx

__all__ = ["compute_model", "fault_field", "first_line", "validated"]


def validated(data: dict[str, Any]) -> Experiment:
    """``data`` as an :class:`Experiment`, its schema and components checked (not its sweep's
    points: :func:`studies.experiment.points.check_sweep`)."""
    _check_numbers(data)
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(pydantic_message(exc)) from None
    _check_components(experiment)
    return experiment


def _check_numbers(data: Any, path: str = "") -> None:
    """NaN anywhere is refused, naming its field: TOML writes it (``nan``) but no field
    means anything by it, and it would pass range checks (every comparison is false).
    Infinity is left to each field's own check (``gossip.max_lead = inf`` means unbounded)."""
    if isinstance(data, float) and math.isnan(data):
        raise ExperimentError(f"{path}: nan is not a value; give a number")
    if isinstance(data, Mapping):
        for key, value in data.items():
            _check_numbers(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            _check_numbers(value, f"{path}[{index}]")


def _check_components(exp: Experiment) -> None:
    import topologies

    _check_strategy(exp.strategy)
    workload = _check_workload(exp.workload)
    _check_target(exp, workload)
    graph = _check_topology(exp.topology)
    _check_optimizer(exp.optimizer)
    _check_compute(exp.compute, len(topologies.hosts(graph)))
    _check_network(exp.network)
    if exp.faults is not None:
        _check_faults(exp.faults, graph, exp.run.steps)
    if exp.run.timing_only:
        _check_timing_only(exp)


def _check_strategy(section: StrategySection) -> None:
    from strategies import registry

    _check_registered("strategy", section, registry.names(), registry.strategy_class)


def _check_workload(section: WorkloadSection) -> Any:
    from workloads import registry

    # Built, as the strategy is: rules between options (n_samples >= dim ...) are the
    # builder's. Building is cheap: data and models are made on first use.
    return _check_registered("workload", section, registry.names(), registry.builder)


def _check_target(exp: Experiment, workload: Any) -> None:
    """``run.target_loss`` or ``run.target_return``: the one that is a level of the
    workload's metric (:mod:`runs.metric`), said at its field."""
    from runs.metric import target_of

    run = exp.run
    try:
        target_of(
            workload,
            target_loss=run.target_loss,
            target_return=run.target_return,
            name=exp.workload.name,
        )
    except ValueError as exc:
        field = "target_loss" if run.target_loss is not None else "target_return"
        raise ExperimentError(f"run.{field}: {first_line(exc)}") from None


def _check_registered(
    kind: str,
    section: StrategySection | WorkloadSection,
    names: list[str],
    maker: Callable[[str], Callable[..., Any]],
) -> Any:
    """A strategy or workload by name: known (else the closest name), and built from its
    options (a bad one said at its field path)."""
    if section.name not in names:
        raise ExperimentError(
            f"{kind}.name: unknown {kind} {section.name!r}{suggest(section.name, names)}"
        )
    return _build(kind, maker(section.name), section.options)


def _build(section: str, build: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """``build(**options)``; a bad option is said at its field path, which the error carries
    (``OptionError.field``); one of your own classes or builders that declares nothing
    is said at the section."""
    from options.declare import OptionError

    try:
        return build(**options)
    except OptionError as exc:
        where = f"{section}.{exc.field}" if exc.field else section
        raise ExperimentError(f"{where}: {first_line(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise ExperimentError(f"{section}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """An error's message in one line (its first), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _at_field(section: str, exc: BaseException) -> str:
    """``section.field: message`` for an error that names its field (``.field``)."""
    field = getattr(exc, "field", None)
    return f"{section}.{field}: {first_line(exc)}" if field else f"{section}: {first_line(exc)}"


def _check_topology(section: TopologySection) -> nx.Graph:
    """The topology, built (checked by its builder), for the checks that depend on it."""
    import topologies

    if section.file is not None and (section.kind is not None or section.model_extra):
        raise ExperimentError(
            "topology: give either file = PATH or kind = NAME with its parameters, not both"
        )
    if section.file is None and section.kind is None:
        raise ExperimentError(
            'topology.kind: missing; name a builder (e.g. kind = "star") or give file = PATH'
        )
    if section.kind is not None and section.kind not in topologies.BUILDERS:
        raise ExperimentError(
            f"topology.kind: unknown topology {section.kind!r}"
            f"{suggest(section.kind, topologies.BUILDERS)}"
        )
    if section.file is not None and not Path(section.file).is_file():
        raise ExperimentError(f"topology.file: {section.file} does not exist")
    try:
        return topologies.from_spec(section.spec())
    except (ValueError, TypeError) as exc:
        raise ExperimentError(_at_field("topology", exc)) from None


def _check_optimizer(section: OptimizerSection) -> None:
    from strategies.optim import OptimizerSpec, ScheduleSpec

    try:
        OptimizerSpec.parse({"name": section.name, **section.options})
    except ValueError as exc:
        raise ExperimentError(_at_field("optimizer", exc)) from None
    try:
        ScheduleSpec.parse(section.schedule)
    except ValueError as exc:
        raise ExperimentError(f"optimizer.schedule: {exc}") from None


def _check_compute(section: ComputeSection, world: int) -> None:
    try:
        model = compute_model(section)
    except (ValueError, TypeError) as exc:
        raise ExperimentError(_at_field("compute", exc)) from None
    bad = [rank for rank in model.slowdown if rank < 0]
    if bad:
        raise ExperimentError(f"compute.slowdown: rank {bad[0]} is negative; ranks start at 0")
    beyond = sorted(rank for rank in model.slowdown if rank >= world)
    if beyond:
        raise ExperimentError(
            f"compute.slowdown: rank {beyond[0]} is not in this topology's ranks 0..{world - 1}"
        )


def _check_timing_only(exp: Experiment) -> None:
    """What a timing-only run refuses (``sim.timing_only``), said at its field."""
    from sim.timing_only import check_timing_compute, check_timing_only
    from strategies import registry

    try:
        check_timing_only(True, exp.run.target_loss, target_return=exp.run.target_return)
    except ValueError as exc:
        field = "target_loss" if exp.run.target_loss is not None else "target_return"
        raise ExperimentError(f"run.{field}: {exc}") from None
    try:
        check_timing_compute(True, compute_model(exp.compute))
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None  # it starts with its path (compute.base)
    why = registry.get(exp.strategy.name, **exp.strategy.options).reads_values()
    if why is not None:
        raise ExperimentError(f"strategy: {why}, and run.timing_only computes no numbers; drop one")


def _check_network(section: NetworkSection) -> None:
    """Checked by the options' one declaration (``sim.network_options``) and kept as checked
    (numbers as floats, ``collectives`` as its mapping): what the run gets and the key hashes."""
    from sim.network_options import network_options

    checked = _build("network", network_options, section.model_dump())
    for name, value in checked.items():
        setattr(section, name, value)


def _check_faults(section: FaultsSection, graph: nx.Graph, steps: int) -> None:
    """The schedule, checked against the run as ``sim.run`` checks it (ranks, links, steps);
    an error is said at its path in the file (``faults.events[1].rank``), which
    :class:`faults.FaultError` carries (``.field``): no message is read back for it."""
    import topologies
    from faults import FaultError, FaultSchedule

    try:
        FaultSchedule.parse(
            section.schedule(),
            world_size=len(topologies.hosts(graph)),
            links=[(str(u), str(v)) for u, v in graph.edges],
            steps=steps,
        )
    except FaultError as exc:
        raise ExperimentError(f"{fault_field(exc.field)}: {exc.reason}") from None


def fault_field(field: str) -> str:
    """A schedule's field path as the experiment file spells it: the schedule's ``faults[1]``
    is the file's ``faults.events[1]``.

    Examples
    --------
    >>> fault_field("faults[1].rank"), fault_field("faults.detect"), fault_field("")
    ('faults.events[1].rank', 'faults.detect', 'faults')
    """
    if field.startswith("faults["):
        return "faults.events" + field[len("faults") :]
    return field or "faults"


def compute_model(section: ComputeSection) -> Any:
    """The section as ``sim.compute.ComputeModel`` (which checks its own fields): its fields
    by name, the straggler's parameters (the extra keys) as ``options``."""
    from sim.compute import ComputeModel

    fields = {name: getattr(section, name) for name in type(section).model_fields}
    return ComputeModel(**fields, options=section.options)
