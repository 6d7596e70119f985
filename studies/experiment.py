"""Experiment files: one TOML file (or dict) that says what to run, validated in one place.

An experiment has the sections ``run`` (name, seed, steps, eval_every, max_time, target_loss,
accumulate), ``topology`` (a builder spec: ``kind`` and its parameters, a spec string, or a
``file``), ``workload`` and ``strategy`` (a registered ``name`` and the builder's or
constructor's arguments), ``optimizer`` (``name``, the torch optimizer's options and an
optional ``schedule``), ``compute`` (``base`` seconds or ``"measure"``, a ``straggler`` model
with its parameters (``trace`` reads a real run's or a calibration's ``compute.csv``),
per-rank ``slowdown``, a ``server`` step's seconds, ``contention``), ``network`` (``model``:
``flow`` or ``analytic``; ``sharing``: ``maxmin`` or ``rtt``; ``efficiency``: the payload
fraction of links without their own; ``collectives``: what ``auto`` stands for;
``unfairness``: how unevenly concurrent flows share a bottleneck; ``routing``: ``ecmp``,
``spray`` or ``single``, how flows use equal-cost paths) and an
optional ``sweep`` (``grid``, ``zip`` and ``seeds``:
see :func:`expand`). The same file drives ``sim`` and ``real``; ``real`` ignores what only a
simulation has (compute model, network model, ``max_time``, ``target_loss``) and says so once.

The sections are pydantic models, so a misspelt key, a wrong type or an out-of-range value
fails at load time with one line naming the field path and the fix. Strategy and workload
arguments are checked against the constructor's own signature and then by the constructor
itself: the class is the one source of truth, there is no second list to keep in step.

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
studies.experiment.ExperimentError: strategy.stalenes: parameter_server has no argument 'stalenes'; did you mean 'staleness'? (valid: mode, staleness, servers, staleness_lr, compression)
>>> load_experiment({"strategy": {"name": "parameter_server", "mode": "ssp", "staleness": -1}})
Traceback (most recent call last):
...
studies.experiment.ExperimentError: strategy.staleness: staleness=-1 must be an integer >= 0 (the SSP bound)
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import sys
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if typing.TYPE_CHECKING:
    import networkx as nx

    from runs import RunResult

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

#: The largest seed (``strategies.roles.MAX_SEED``, torch's signed 64-bit limit), repeated so
#: that loading an experiment does not import torch.
MAX_SEED = 2**63 - 1

#: Fields only a simulation has; ``real`` ignores them (and says so once).
SIM_ONLY = ("compute", "network", "run.max_time", "run.target_loss")


class ExperimentError(ValueError):
    """An experiment that cannot run: one line naming the field path and the fix."""


# --------------------------------------------------------------------------------------------
# Sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSection(_Section):
    """What to run for how long: name, seed, global steps, evaluation and stop conditions."""

    name: str = "experiment"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    steps: int = Field(100, ge=1)
    eval_every: int = Field(10, ge=1)
    max_time: float | None = Field(None, ge=1e-9, allow_inf_nan=False)  # sim.run.MIN_TIME
    target_loss: float | None = Field(None, allow_inf_nan=False)
    accumulate: int = Field(1, ge=1)


class _Named(BaseModel):
    """A registered ``name`` and keyword arguments for its constructor (the extra keys)."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StrategySection(_Named):
    """A registered strategy (``strategies.registry.names()``) and its constructor's arguments."""

    name: str = "allreduce"


class WorkloadSection(_Named):
    """A registered workload (``workloads.registry.names()``) and its builder's arguments."""

    name: str = "mlp_digits"


class OptimizerSection(_Named):
    """A torch optimizer by name with its options (``lr``, ``momentum`` ...) and a schedule."""

    name: str = "sgd"
    schedule: str | dict[str, Any] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items()}


class TopologySection(BaseModel):
    """A topology builder (``kind`` and its parameters) or a ``file`` written by ``topologies.save``."""

    model_config = ConfigDict(extra="allow")
    kind: str | None = None
    file: str | None = None

    def spec(self) -> dict[str, Any] | str:
        """What ``topologies.from_spec`` takes: the builder dict, or the file's path."""
        if self.file is not None:
            return self.file
        return {"kind": self.kind, **(self.model_extra or {})}


class ComputeSection(BaseModel):
    """``sim.compute.ComputeModel``'s fields; the straggler's parameters (``sigma``, ``cv``,
    ``prob``, ``scale``, ``path``) sit beside them."""

    model_config = ConfigDict(extra="allow")
    base: float | Literal["measure", "flops"] = 0.01
    straggler: str = "constant"
    slowdown: dict[int, float] = Field(default_factory=dict)
    device: str = "H100"
    efficiency: float = 0.4
    server: float | Literal["measure"] = 0.0
    contention: float = 1.0

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NetworkSection(_Section):
    """The network model: ``flow`` (max-min or RTT-weighted sharing) or ``analytic``."""

    model: Literal["flow", "analytic"] = "flow"
    sharing: Literal["maxmin", "rtt"] = "maxmin"
    efficiency: float = Field(1.0, gt=0, le=1)
    #: What ``auto`` stands for: a rule ("commsim", "gloo", "nccl") and/or algorithms by collective.
    collectives: dict[str, str] | str = Field(default_factory=dict)
    unfairness: float = Field(0.0, ge=0, allow_inf_nan=False)
    routing: Literal["ecmp", "spray", "single", "dmodk"] = "ecmp"

    @field_validator("collectives")
    @classmethod
    def _known_algorithms(cls, value: dict[str, str] | str) -> dict[str, str]:
        from sim.collectives.select import check_auto

        return check_auto(value)


class SweepSection(_Section):
    """Runs to make from one experiment: the product of ``grid`` lists, times the rows of
    ``zip`` (lists of one length, taken together), times ``seeds``."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] | None = None


class Experiment(_Section):
    """A validated experiment. Build it with :func:`load_experiment`, which also checks the
    strategy, workload, topology, optimizer and compute model against their own code."""

    run: RunSection = Field(default_factory=RunSection)
    topology: TopologySection = Field(
        default_factory=lambda: TopologySection(kind="star", n=4, bandwidth="1Gbps")
    )
    workload: WorkloadSection = Field(default_factory=WorkloadSection)
    strategy: StrategySection = Field(default_factory=StrategySection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    sweep: SweepSection | None = None

    def to_dict(self) -> dict[str, Any]:
        """The experiment as plain data (what a TOML file would say), without defaults left out.

        Examples
        --------
        >>> Experiment().to_dict()["strategy"]
        {'name': 'allreduce'}
        """
        data = self.model_dump(mode="json", exclude_none=True)
        if self.sweep is None:
            data.pop("sweep", None)
        return data

    def key(self) -> str:
        """A hash of everything that decides the run's results (not its name, not the sweep):
        two experiments with the same key produce the same metrics.

        The topology counts as the network it builds (its hosts, switches and links, not how
        it was written or which file held it) and the strategy as its resolved arguments
        (defaults included), so ``bandwidth = "1Gbps"`` and ``"1000Mbps"``, or a file and the
        spec it was saved from, are one run. The code is not in the key: after upgrading
        commsim, sweep into a new directory to rerun what a change may affect.

        Examples
        --------
        >>> a = load_experiment({"run": {"name": "a"}, "topology": "star:n=4,bandwidth=1Gbps"})
        >>> b = load_experiment({"run": {"name": "b"}, "topology": "star:n=4,bandwidth=1000Mbps"})
        >>> a.key() == b.key(), len(a.key())
        (True, 12)
        """
        from strategies import registry

        data = self.to_dict()
        data.pop("sweep", None)
        data["run"].pop("name", None)
        data["topology"] = _network_fingerprint(self.graph())
        data["strategy"] = registry.get(self.strategy.name, **self.strategy.options).config()
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def graph(self) -> nx.Graph:
        """The topology, built."""
        import topologies

        return topologies.from_spec(self.topology.spec())


def _network_fingerprint(graph: nx.Graph) -> dict[str, Any]:
    """The network a topology builds, as plain data: nodes and links with their attributes."""
    return {
        "nodes": [[str(node), sorted(data.items())] for node, data in graph.nodes(data=True)],
        "links": [[str(u), str(v), sorted(data.items())] for u, v, data in graph.edges(data=True)],
    }


# --------------------------------------------------------------------------------------------
# Loading


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
    data = _normalise(data, base_dir)
    for override in overrides:
        if not isinstance(override, str):
            raise ExperimentError(f"--set {override!r}: write section.field=value as a string")
        key, value = parse_override(override)
        _set_path(data, key, value)
        # A path typed on the command line is relative to where it was typed; the file's own
        # are absolute by now, so this leaves them alone.
        data = _normalise(data, Path.cwd() if base_dir is not None else None)
    if not data:
        where = f"{source}: " if base_dir is not None else ""
        raise ExperimentError(
            f"{where}the experiment is empty; say what to run, at least one of the sections "
            f"{', '.join(s for s in Experiment.model_fields if s != 'sweep')} "
            '(e.g. [strategy] name = "allreduce")'
        )
    return _validate(data)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExperimentError(f"{path}: no such experiment file; give a .toml file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not a text file; give a .toml experiment file") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"strategy.mode=async"`` into a dotted path and a value.

    Examples
    --------
    >>> parse_override("strategy.staleness=2"), parse_override("strategy.mode=async")
    (('strategy.staleness', 2), ('strategy.mode', 'async'))
    >>> parse_override("sweep.seeds=[0, 1]"), parse_override("run.max_time=1e-3")
    (('sweep.seeds', [0, 1]), ('run.max_time', 0.001))
    >>> parse_override("strategy")
    Traceback (most recent call last):
    ...
    studies.experiment.ExperimentError: --set 'strategy': write section.field=value, e.g. strategy.mode=async
    """
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key or "." not in key and key not in ("topology", "strategy", "workload"):
        raise ExperimentError(
            f"--set {text!r}: write section.field=value, e.g. strategy.mode=async"
        )
    return key, _literal(raw.strip())


def _literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: async, 1Gbps, cosine


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ExperimentError(f"{key}: {where} is {child!r}, not a section with fields")
        node = child
    node[last] = value


def _normalise(data: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Shorthands into sections: ``topology = "star:n=4"`` and ``strategy = "allreduce"``;
    relative file paths become relative to the experiment file, so a sweep can run anywhere."""
    from topologies.io import parse_spec

    if not isinstance(data, dict):
        raise ExperimentError(f"an experiment is a table of sections, not {type(data).__name__}")
    topology = data.get("topology")
    if isinstance(topology, str | os.PathLike):
        text = os.fspath(topology)
        looks_like_file = Path(text).suffix.lower() in (".json", ".graphml", ".gml")
        data["topology"] = {"file": text} if looks_like_file else _spec_dict(parse_spec, text)
    for section in ("strategy", "workload", "optimizer"):
        if isinstance(data.get(section), str):  # "local_sgd", or "local_sgd:period=8"
            data[section] = _named_dict(section, data[section])
    if base_dir is not None:
        topo = data.get("topology")
        if isinstance(topo, dict) and isinstance(topo.get("file"), str):
            topo["file"] = _relative_to(base_dir, topo["file"])
        compute = data.get("compute")
        if isinstance(compute, dict) and isinstance(compute.get("path"), str):
            compute["path"] = _relative_to(base_dir, compute["path"])
    return data


def _named_dict(section: str, text: str) -> dict[str, Any]:
    from strategies.specs import parse_spec

    try:
        name, options = parse_spec(text, section)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    return {"name": name, **options}


def _spec_dict(parse_spec: Callable[[str], dict[str, Any]], text: str) -> dict[str, Any]:
    try:
        return parse_spec(text)
    except ValueError as exc:
        raise ExperimentError(f"topology: {exc}") from None


def _relative_to(base_dir: Path, path: str) -> str:
    # Absolute: a worker in another directory (a Dask cluster's) finds the same file.
    return path if os.path.isabs(path) else os.path.normpath(base_dir.resolve() / path)


def _validate(data: dict[str, Any]) -> Experiment:
    _check_numbers(data)
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(_pydantic_message(exc)) from None
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


def _pydantic_message(exc: ValidationError) -> str:
    """The first error, as ``field.path: what is wrong, got X; the fix``."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc)
    if error["type"] == "extra_forbidden":
        section_model = _model_at(Experiment, loc[:-1])
        valid = list(section_model.model_fields) if section_model else []
        return f"{path}: unknown field{_suggest(loc[-1], valid)}"
    message = error["msg"]
    if error["type"] not in ("missing",):
        message += f", got {error['input']!r}"
    return f"{path}: {message[0].lower()}{message[1:]}"


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = typing.get_args(annotation) or (annotation,)
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _suggest(name: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid: {', '.join(valid)})" if valid else hint


# --------------------------------------------------------------------------------------------
# Checking each component against its own code


def _check_components(exp: Experiment) -> None:
    import topologies

    _check_strategy(exp.strategy)
    _check_workload(exp.workload)
    graph = _check_topology(exp.topology)
    _check_optimizer(exp.optimizer)
    _check_compute(exp.compute, len(topologies.hosts(graph)))
    if exp.sweep is not None:
        _check_sweep(exp)


def _check_strategy(section: StrategySection) -> None:
    from strategies import registry

    if section.name not in registry.names():
        raise ExperimentError(
            f"strategy.name: unknown strategy {section.name!r}"
            f"{_suggest(section.name, registry.names())}"
        )
    cls = registry.strategy_class(section.name)
    _call_checked("strategy", section.name, cls, section.options)


def _check_workload(section: WorkloadSection) -> None:
    from workloads import registry

    if section.name not in registry.names():
        raise ExperimentError(
            f"workload.name: unknown workload {section.name!r}"
            f"{_suggest(section.name, registry.names())}"
        )
    # Built, as the strategy is: the builder checks ranges (hidden >= 1 ...) that a
    # signature cannot say. Building is cheap: data and models are made on first use.
    _call_checked("workload", section.name, registry.builder(section.name), section.options)


def _check_topology(section: TopologySection) -> nx.Graph:
    """The topology, built (checked by its builder), for the checks that depend on it."""
    import topologies
    from topologies.model import TopologyError

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
            f"{_suggest(section.kind, topologies.BUILDERS)}"
        )
    if section.file is not None and not Path(section.file).is_file():
        raise ExperimentError(f"topology.file: {section.file} does not exist")
    try:
        return topologies.from_spec(section.spec())
    except (TopologyError, ValueError, TypeError) as exc:
        raise ExperimentError(
            _field_message(
                "topology", exc, [*(section.model_extra or {}), *_builder_params(section)]
            )
        ) from None


def _builder_params(section: TopologySection) -> list[str]:
    import topologies

    if section.kind not in topologies.BUILDERS:
        return []
    return list(inspect.signature(topologies.BUILDERS[section.kind]).parameters)


def _check_optimizer(section: OptimizerSection) -> None:
    from strategies.optim import OptimizerSpec, ScheduleSpec

    try:
        OptimizerSpec.parse({"name": section.name, **section.options})
    except ValueError as exc:
        raise ExperimentError(_field_message("optimizer", exc, section.options)) from None
    try:
        ScheduleSpec.parse(section.schedule)
    except ValueError as exc:
        raise ExperimentError(f"optimizer.schedule: {exc}") from None


def _check_compute(section: ComputeSection, world: int) -> None:
    try:
        model = _compute_model(section)
    except (ValueError, TypeError) as exc:
        keys = [*section.options, *ComputeSection.model_fields]
        raise ExperimentError(_field_message("compute", exc, keys)) from None
    bad = [rank for rank in model.slowdown if rank < 0]
    if bad:
        raise ExperimentError(f"compute.slowdown: rank {bad[0]} is negative; ranks start at 0")
    beyond = sorted(rank for rank in model.slowdown if rank >= world)
    if beyond:
        raise ExperimentError(
            f"compute.slowdown: rank {beyond[0]} is not in this topology's ranks 0..{world - 1}"
        )


def _check_sweep(exp: Experiment) -> None:
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
                    f"sweep.{table}: {key!r} is not a section.field path{_suggest(section, sections)}"
                )
            for value in values:
                _sweep_point(base, {key: value})


def _signature_check(
    section: str, name: str, fn: Callable[..., Any], options: Mapping[str, Any]
) -> None:
    """Type-check ``options`` against ``fn``'s signature (one pydantic model per signature)."""
    model, valid, open_ended = _signature_model(fn)
    if not open_ended:
        for key in options:
            if key not in valid:
                raise ExperimentError(
                    f"{section}.{key}: {name} has no argument {key!r}{_suggest(key, valid)}"
                )
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        expected = _annotation_text(fn, field)
        raise ExperimentError(
            f"{section}.{field}: {name} takes {expected}, got {error.get('input')!r}"
        ) from None


def _annotation_text(fn: Callable[..., Any], field: str) -> str:
    annotation = inspect.signature(fn).parameters[field].annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return f"{field}: {text}" if text else "another type"


def _call_checked(section: str, name: str, fn: Callable[..., Any], options: dict[str, Any]) -> Any:
    """Check ``options`` against the signature, then build: the constructor checks ranges."""
    _signature_check(section, name, fn, options)
    try:
        return fn(**options)
    except (ValueError, TypeError) as exc:
        raise ExperimentError(_field_message(section, exc, options)) from None


def _field_message(section: str, exc: BaseException, keys: Iterable[str]) -> str:
    """``section.field: message`` when the message names one of ``keys`` (``field=...``,
    ``'field'`` or ``field:``), with a close match when the name was not a valid one."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    keys = list(keys)
    for match in re.finditer(r"'?\b(\w+)\b'?(?==|:)|'(\w+)'|\b(\w+)\[|\[(?:')?(\w+)", message):
        name = next(group for group in match.groups() if group)
        if name in keys:
            return f"{section}.{name}: {message}"
    return f"{section}: {message}"


_SIGNATURES: dict[Callable[..., Any], tuple[type[BaseModel], list[str], bool]] = {}


def _signature_model(fn: Callable[..., Any]) -> tuple[type[BaseModel], list[str], bool]:
    if fn in _SIGNATURES:
        return _SIGNATURES[fn]
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a hint naming a type only imported for type checkers: check names only
        hints = {}
    fields: dict[str, Any] = {}
    open_ended = False
    for name, parameter in inspect.signature(fn).parameters.items():
        if parameter.kind is parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    model = create_model(
        f"{getattr(fn, '__name__', 'builder')}_arguments",
        __config__=ConfigDict(arbitrary_types_allowed=True, extra="allow"),
        **fields,
    )
    _SIGNATURES[fn] = (model, list(fields), open_ended)
    return _SIGNATURES[fn]


# --------------------------------------------------------------------------------------------
# Sweeps


def expand(exp: Experiment) -> list[Experiment]:
    """The runs a sweep makes, each a validated experiment without a sweep.

    The product of ``sweep.grid``'s lists (in the order written), times the rows of
    ``sweep.zip``, times ``sweep.seeds`` (which set ``run.seed``). Each run's ``run.name`` is
    the base name followed by the values that vary. An experiment without a sweep is one run.

    Examples
    --------
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
            _set_path(data, key, value)
    parts = [f"{'seed' if k == 'run.seed' else k}={short_value(v)}" for k, v in assigned.items()]
    data["run"]["name"] = " ".join([base["run"]["name"], *parts])
    try:
        return _validate(_normalise(data, None))
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


# --------------------------------------------------------------------------------------------
# Running


def sim_only_fields(exp: Experiment) -> list[str]:
    """The fields set away from their defaults that a real run ignores.

    Examples
    --------
    >>> sim_only_fields(load_experiment({"compute": {"straggler": "lognormal"},
    ...                                  "run": {"target_loss": 0.5}}))
    ['compute.straggler', 'run.target_loss']
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


def _compute_model(section: ComputeSection) -> Any:
    from sim.compute import ComputeModel

    return ComputeModel(
        base=section.base,
        straggler=section.straggler,
        options=section.options,
        slowdown=dict(section.slowdown),
        device=section.device,
        efficiency=section.efficiency,
        server=section.server,
        contention=section.contention,
    )


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
    >>> exp = load_experiment({"workload": "quadratic", "run": {"steps": 10},
    ...                        "topology": "ring:n=2"})
    >>> run_experiment(exp).summary["steps"]
    10
    """
    import workloads
    from strategies import registry

    if exp.sweep is not None:
        raise ExperimentError(
            "sweep: this experiment is a sweep; run it with `commsim sweep` or run each of "
            "studies.experiment.expand(exp)"
        )
    if backend not in ("sim", "real"):
        raise ExperimentError(f"backend={backend!r}: use 'sim' or 'real'")
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
    except ExperimentError:
        raise
    except (ValueError, TypeError) as exc:
        # What only the backend can check (the strategy against the world it runs on: more
        # servers than ranks ...) is said as a field of this experiment, as a load error is.
        field = _field_named_in(exp, exc)
        if field is None:
            raise
        raise ExperimentError(f"{field}: {str(exc).strip().splitlines()[0]}") from exc


def _field_named_in(exp: Experiment, exc: BaseException) -> str | None:
    """The experiment's ``section.field`` that an error's message names as ``field=...``
    (the arguments' own checks write it so), or None."""
    from strategies import registry
    from workloads import registry as workload_registry

    fields: dict[str, str] = {}
    candidates = [
        ("strategy", inspect.signature(registry.strategy_class(exp.strategy.name)).parameters),
        ("workload", inspect.signature(workload_registry.builder(exp.workload.name)).parameters),
        ("optimizer", exp.optimizer.options),
        ("topology", _builder_params(exp.topology) or exp.topology.model_extra or {}),
        ("compute", [*ComputeSection.model_fields, *exp.compute.options]),
        ("network", NetworkSection.model_fields),
        ("run", RunSection.model_fields),
    ]
    for section, names in candidates:
        for name in names:
            fields.setdefault(name, f"{section}.{name}")
    for match in re.finditer(r"\b(\w+)=", str(exc)):
        if match.group(1) in fields:
            return fields[match.group(1)]
    return None


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
            compute=_compute_model(exp.compute),
            network=exp.network.model_dump(),
            max_time=exp.run.max_time,
            target_loss=exp.run.target_loss,
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
            **shared,
            **real_options,
        )
    raise ExperimentError(f"backend={backend!r}: use 'sim' or 'real'")
