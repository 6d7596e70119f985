"""The schema of an experiment file: its sections as pydantic models, the one error type,
and the one-line message of a validation error (field path, what is wrong, the closest name).
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from options.spec import did_you_mean

if typing.TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "ComputeSection",
    "Experiment",
    "ExperimentError",
    "FaultsSection",
    "NetworkSection",
    "OptimizerSection",
    "RunSection",
    "StrategySection",
    "SweepSection",
    "TopologySection",
    "WorkloadSection",
    "pydantic_message",
    "suggest",
]

#: The largest seed (``strategies.roles.MAX_SEED``, torch's signed 64-bit limit), repeated so
#: that loading an experiment does not import torch.
MAX_SEED = 2**63 - 1


class ExperimentError(ValueError):
    """An experiment that cannot run: one line naming the field path and the fix."""


# Its public home, as users see it in tracebacks and pickles: ``studies.experiment``.
ExperimentError.__module__ = "studies.experiment"


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
    #: A workload evaluated by its mean return (reinforcement learning): stop at or above it.
    target_return: float | None = Field(None, allow_inf_nan=False)
    accumulate: int = Field(1, ge=1)
    #: Time the run without computing it (``sim.run(timing_only=True)``; ``sim.timing_only``).
    timing_only: bool = False


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
    base: float | Literal["measure", "flops", "roofline"] = 0.01
    straggler: str = "constant"
    slowdown: dict[int, float] = Field(default_factory=dict)
    device: str = "H100"
    efficiency: float = 0.4
    server: float | Literal["measure"] = 0.0
    contention: float = 1.0
    #: With a device (``base = "flops"`` or ``"roofline"``): refuse a worker that does not
    #: fit its memory (``"check"``), or time it and report the estimate (``"report"``).
    memory: Literal["check", "report"] = "check"
    #: ZeRO's stage (0, 1, 2) for that estimate: ``allreduce``'s optimizer state (1) and
    #: gradients (2) sharded over the workers.
    zero: int = 0

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NetworkSection(_Section):
    """The network model: ``flow`` (max-min or RTT-weighted sharing) or ``analytic``.

    The options are declared once, by ``sim.network_options``, which checks them (with the
    field's path) when the experiment loads; this section only names them with their
    defaults, so that a misspelt key is refused here without importing the simulator (a
    test keeps the two in step)."""

    model: Any = "flow"
    sharing: Any = "maxmin"
    efficiency: Any = 1.0
    collectives: Any = Field(default_factory=dict)
    unfairness: Any = 0.0
    routing: Any = "ecmp"


class FaultsSection(_Section):
    """The run's fault schedule (:class:`faults.FaultSchedule`): ``[[faults.events]]`` tables
    with the keys of a fault file (``kind``, ``rank``, ``step``/``at``, ``restart`` ...), the
    delays ``detect`` (a crash until its peers fail) and ``reroute`` (a downed link until its
    flows move), and the run's recovery policy: ``recovery = "restart"`` from checkpoints
    every ``checkpoint_every`` steps on the ``checkpoint`` storage (``{bandwidth, latency}``).
    Each event is checked against the run when the experiment loads."""

    events: list[dict[str, Any]] = Field(default_factory=list)
    detect: float | str | None = None
    reroute: float | str | None = None
    recovery: str | None = None
    checkpoint_every: int | None = None
    checkpoint: dict[str, Any] | None = None

    def schedule(self) -> dict[str, Any]:
        """What ``sim.run(faults=...)`` takes: the events and the delays that are set.

        Examples
        --------
        >>> FaultsSection(events=[{"kind": "crash", "rank": 1, "at": "2s"}], detect="1s").schedule()
        {'events': [{'kind': 'crash', 'rank': 1, 'at': '2s'}], 'detect': '1s'}
        """
        delays = {
            k: getattr(self, k)
            for k in ("detect", "reroute", "recovery", "checkpoint_every", "checkpoint")
            if getattr(self, k) is not None
        }
        return {"events": [dict(event) for event in self.events], **delays}


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
    faults: FaultsSection | None = None
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

        >>> from studies.experiment import load_experiment
        >>> a = load_experiment({"run": {"name": "a"}, "topology": "star:n=4,bandwidth=1Gbps"})
        >>> b = load_experiment({"run": {"name": "b"}, "topology": "star:n=4,bandwidth=1000Mbps"})
        >>> a.key() == b.key(), len(a.key())
        (True, 12)
        """
        from strategies import registry

        data = self.to_dict()
        data.pop("sweep", None)
        data["run"].pop("name", None)
        if not data["run"].get("timing_only"):  # keys from before the field existed hold
            data["run"].pop("timing_only", None)
        data["topology"] = _network_fingerprint(self.graph())
        data["strategy"] = registry.get(self.strategy.name, **self.strategy.options).config()
        if self.faults is not None:
            # As the run records it (times in seconds): mtbf = "1s" and 1.0 are one run.
            data["faults"] = self._schedule().record()
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _schedule(self) -> Any:
        """The ``[faults]`` section as the checked :class:`faults.FaultSchedule` of this run."""
        import topologies
        from faults import FaultSchedule

        assert self.faults is not None
        graph = self.graph()
        return FaultSchedule.parse(
            self.faults.schedule(),
            world_size=len(topologies.hosts(graph)),
            links=[(str(u), str(v)) for u, v in graph.edges],
            steps=self.run.steps,
        )

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


def pydantic_message(exc: ValidationError) -> str:
    """The first error, as ``field.path: what is wrong, got X; the fix``."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc)
    if error["type"] == "extra_forbidden":
        section_model = _model_at(Experiment, loc[:-1])
        valid = list(section_model.model_fields) if section_model else []
        return f"{path}: unknown field{suggest(loc[-1], valid)}"
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


def suggest(name: str, valid: Iterable[str]) -> str:
    """The closest valid name, and the valid ones.

    Examples
    --------
    >>> suggest("stepz", ["steps", "seed"])
    "; did you mean 'steps'? (valid: steps, seed)"
    """
    valid = list(valid)
    hint = did_you_mean(name, valid)
    return f"{hint} (valid: {', '.join(valid)})" if valid else hint
