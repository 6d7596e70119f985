"""Build each rank's context and program: the set-up both backends share.

Given a strategy, a workload and a rank, this makes the rank's replica (or parameter shard),
data stream and context, so that a simulated run and a real run start from bit-identical
state. Workloads are used through the small :class:`WorkloadLike` protocol, so this package
still depends on torch alone.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, cast

import torch

from runs.metric import metric_of
from runs.trace import Trace
from strategies.aggregate import shard_bounds
from strategies.base import Program, Strategy
from strategies.comm import Communicator
from strategies.context import Experiences, RoleContext, Runtime, ServerContext, WorkerContext
from strategies.ledger import Ledger
from strategies.operations import span_name
from strategies.optim import OptimizerSpec, ScheduleSpec
from strategies.registry import get as get_strategy
from strategies.replica import FlatOptimizer, Replica
from strategies.shapes import META, ShapeReplica, meta_model, no_batches

__all__ = [
    "Evaluator",
    "MAX_SEED",
    "RankLayout",
    "TrainingSetup",
    "WorkloadLike",
    "build_role",
    "initial_parameters",
    "initial_state",
    "make_ledger",
    "make_trace",
    "positive_int",
    "resolve_optimizers",
    "run_optimizer",
]


class WorkloadLike(Protocol):
    """What role set-up needs from a workload (see ``workloads.Workload``)."""

    batch_size: int
    collects_experience: ClassVar[bool]

    def make_model(self, seed: int) -> torch.nn.Module: ...

    def step_loss(
        self, model: torch.nn.Module, batches: Iterator[Any]
    ) -> tuple[torch.Tensor, int]: ...

    def stream(
        self, rank: int, n_workers: int, seed: int, device: torch.device | None = None
    ) -> Iterator[Any]: ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]: ...

    def config(self) -> dict[str, Any]: ...


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive integer, else raise a one-line error naming ``name``.

    Examples
    --------
    >>> positive_int("nproc", 0)
    Traceback (most recent call last):
    ...
    ValueError: nproc=0 must be a positive integer
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


#: The largest seed: torch's generators take a signed 64-bit one.
MAX_SEED = 2**63 - 1

_WORKLOAD_METHODS = ("make_model", "loss", "batches", "evaluate", "config")


@dataclass(frozen=True)
class TrainingSetup:
    """Everything about a run that is the same on every rank (build it with :meth:`create`)."""

    strategy: Strategy
    workload: WorkloadLike
    world_size: int
    steps: int
    optimizers: dict[str, OptimizerSpec]
    schedule: ScheduleSpec
    seed: int = 0
    accumulate: int = 1
    eval_every: int = 10
    #: Network neighbours of each rank (``topologies.host_graph``), when the backend knows
    #: the topology; strategies read it as ``ctx.host_graph``.
    host_graph: Mapping[int, tuple[int, ...]] | None = None
    #: Each rank's node, when the run is given a topology (the real backend otherwise asks
    #: its launcher).
    nodes: tuple[int, ...] | None = None
    #: Shapes without numbers (``strategies.shapes``): the model, its replicas and payloads
    #: on the meta device, no gradient computed, no evaluation.
    timing_only: bool = False

    @classmethod
    def create(
        cls,
        strategy: str | Strategy,
        workload: WorkloadLike,
        world_size: int,
        *,
        steps: int,
        optimizer: Any = None,
        lr_schedule: Any = None,
        seed: int = 0,
        accumulate: int = 1,
        eval_every: int = 10,
        host_graph: Mapping[int, tuple[int, ...]] | None = None,
        nodes: Sequence[int] | None = None,
        timing_only: bool = False,
    ) -> TrainingSetup:
        """Validate a run's common arguments, each error naming its argument.

        Examples
        --------
        >>> TrainingSetup.create("allreduce", None, 2, steps=0)
        Traceback (most recent call last):
        ...
        ValueError: steps=0 must be a positive integer
        """
        positive_int("steps", steps)
        positive_int("eval_every", eval_every)
        positive_int("accumulate", accumulate)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed={seed!r} must be an integer in [0, 2**63 - 1]")
        resolved = get_strategy(strategy)
        if not isinstance(getattr(resolved, "options", None), dict):
            raise TypeError(
                f"{type(resolved).__name__}.__init__ did not call super().__init__(**options); "
                "call it with the strategy's arguments (they are recorded in run.json)"
            )
        missing = [m for m in _WORKLOAD_METHODS if not callable(getattr(workload, m, None))]
        if missing:
            raise TypeError(
                f"workload={workload!r} lacks {', '.join(missing)}; pass a workloads.Workload "
                "or a registered workload name"
            )
        resolved.check_world(world_size)
        if not isinstance(timing_only, bool):
            raise ValueError(f"timing_only={timing_only!r} must be True or False")
        why = resolved.reads_values() if timing_only else None
        if why is not None:
            raise ValueError(
                f"strategy {resolved.name}: {why}, and timing_only computes no numbers; "
                "drop timing_only or choose another setting"
            )
        if host_graph is not None and sorted(host_graph) != list(range(world_size)):
            raise ValueError(
                f"the topology's hosts have ranks {sorted(host_graph)}, but the run has "
                f"{world_size} ranks; give every rank 0..{world_size - 1} one host"
            )
        return cls(
            strategy=resolved,
            workload=workload,
            world_size=world_size,
            steps=steps,
            optimizers=resolve_optimizers(resolved, optimizer),
            schedule=ScheduleSpec.parse(lr_schedule),
            seed=seed,
            accumulate=accumulate,
            eval_every=eval_every,
            # A dict is copied (the caller keeps its own); any other mapping (the topology's
            # lazily computed host graph) is read-only already, and stays lazy.
            host_graph=dict(host_graph) if isinstance(host_graph, dict) else host_graph,
            nodes=None if nodes is None else tuple(nodes),
            timing_only=timing_only,
        )

    def config(self) -> dict[str, Any]:
        """The part of ``run.json`` both backends share."""
        specs = {n: {"name": s.name, **s.options} for n, s in self.optimizers.items()}
        return {
            "strategy": self.strategy.config(),
            "workload": self.workload.config(),
            # One spec for the usual single optimizer; a mapping by name when there are more.
            "optimizer": specs if len(specs) > 1 else next(iter(specs.values())),
            "lr_schedule": {"name": self.schedule.name, **self.schedule.options},
            "steps": self.steps,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "accumulate": self.accumulate,
            "world_size": self.world_size,
        }

    @property
    def optimizer(self) -> OptimizerSpec:
        """The optimizer ``apply`` steps (the strategy's first declared one)."""
        return next(iter(self.optimizers.values()))

    # Computed once per set-up, not once per call: every rank's context holds these lists,
    # and one list per rank would make a run's memory grow as the square of its ranks.
    @cached_property
    def workers(self) -> list[int]:
        """The worker ranks, in order (one list per set-up, shared by every rank)."""
        return self.strategy.workers(self.world_size)

    @cached_property
    def servers(self) -> list[int]:
        """The server ranks, in order (one list per set-up, shared by every rank)."""
        return self.strategy.servers(self.world_size)

    @cached_property
    def shape_model(self) -> torch.nn.Module:
        """The model on the meta device (shapes, no numbers), built once: a timing-only
        run's replicas all stand for it."""
        return meta_model(self.workload.make_model, self.seed)

    def roles(self) -> dict[int, str]:
        """Every rank's role, ``"server"`` or ``"worker"`` (for rank rows and trace tracks)."""
        servers = set(self.servers)
        return {r: "server" if r in servers else "worker" for r in range(self.world_size)}


@dataclass(frozen=True)
class RankLayout:
    """Who is who in one run, built once and shared by every rank's context.

    Every context reads the run's worker and server lists, each rank's node and the host
    graph. Built once per run (:meth:`of`) and handed to every rank, they cost O(n) for the
    run; a copy per rank, as before, cost O(n^2) (2 GB of set-up for 4,096 ranks on a star).
    The structures are read-only: the host graph is a read-only view, and the lists must
    not be modified by a strategy.

    Examples
    --------
    >>> layout = RankLayout(4, [1, 2, 3], [0], (0, 0, 1, 1), None)
    >>> layout.local_ranks, layout.position(2), layout.position(0)
    ((0, 1, 0, 1), 1, 0)
    """

    world_size: int
    workers: list[int]
    servers: list[int]
    #: Each rank's node (``nodes[r]``).
    nodes: tuple[int, ...]
    #: Network neighbours of each rank, read-only, or ``None``.
    host_graph: Mapping[int, tuple[int, ...]] | None

    @classmethod
    def of(cls, setup: TrainingSetup, nodes: Sequence[int] | None = None) -> RankLayout:
        """The layout of ``setup``'s ranks; ``nodes`` maps every rank to its node (by default
        each rank is a node of its own)."""
        host_graph = setup.host_graph
        if isinstance(host_graph, dict):  # one read-only view, not a copy per rank
            host_graph = MappingProxyType(host_graph)
        return cls(
            setup.world_size,
            setup.workers,
            setup.servers,
            tuple(range(setup.world_size)) if nodes is None else tuple(nodes),
            host_graph,
        )

    @cached_property
    def local_ranks(self) -> tuple[int, ...]:
        """Each rank's index among the ranks of its node."""
        seen: dict[int, int] = {}
        ranks = []
        for node in self.nodes:
            ranks.append(seen.get(node, 0))
            seen[node] = ranks[-1] + 1
        return tuple(ranks)

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {
            **{r: i for i, r in enumerate(self.workers)},
            **{r: i for i, r in enumerate(self.servers)},
        }

    def position(self, rank: int) -> int:
        """``rank``'s index among the ranks of its role (a worker's data shard)."""
        return self._positions[rank]

    def is_server(self, rank: int) -> bool:
        """Whether ``rank`` is a server."""
        return rank in self._server_set

    @cached_property
    def _server_set(self) -> frozenset[int]:
        return frozenset(self.servers)


def run_optimizer(strategy: Strategy) -> str:
    """The declared optimizer a run's single ``optimizer`` spec and its ``lr_schedule``
    configure: the first declared with default ``None``, else the first declared.

    Examples
    --------
    >>> from strategies.diloco import DiLoCo
    >>> from strategies.easgd import EASGD
    >>> run_optimizer(DiLoCo()), run_optimizer(EASGD())
    ('inner', 'local')
    """
    declared = dict(strategy.optimizers)
    runs = [name for name, default in declared.items() if default is None]
    return (runs or list(declared))[0]


def resolve_optimizers(strategy: Strategy, optimizer: Any) -> dict[str, OptimizerSpec]:
    """The strategy's named optimizers, as the run configures them.

    ``optimizer`` is one spec (``"sgd"``, ``{"name": "adam", "lr": 1e-3}``, a callable) for
    the optimizer the strategy leaves to the run (the first declared with default ``None``,
    else the first declared), or a mapping from declared names to specs.

    Examples
    --------
    >>> from strategies.allreduce import AllReduceSGD
    >>> resolve_optimizers(AllReduceSGD(), {"name": "sgd", "lr": 0.5})["main"].options
    {'lr': 0.5}
    >>> resolve_optimizers(AllReduceSGD(), {"outer": "sgd"})
    Traceback (most recent call last):
    ...
    ValueError: optimizer names 'outer', which AllReduceSGD does not declare; it declares main
    """
    declared = dict(strategy.optimizers)
    overrides: dict[str, Any]
    if isinstance(optimizer, Mapping) and "name" not in optimizer and optimizer:
        overrides = dict(optimizer)
        unknown = [k for k in overrides if k not in declared]
        if unknown:
            raise ValueError(
                f"optimizer names {', '.join(map(repr, unknown))}, which "
                f"{type(strategy).__name__} does not declare; it declares {', '.join(declared)}"
            )
    else:
        overrides = {run_optimizer(strategy): optimizer}
    specs = {}
    for name, default in declared.items():
        given = overrides.get(name)
        specs[name] = OptimizerSpec.parse(given if given is not None else default)
    return specs


def initial_parameters(setup: TrainingSetup) -> torch.Tensor:
    """The flat initial parameters every replica and shard starts from (on the meta device
    in a timing-only run: their shape and dtype)."""
    if setup.timing_only:
        return Replica(setup.shape_model).parameters()
    return Replica(setup.workload.make_model(setup.seed)).parameters()


def initial_state(setup: TrainingSetup, rank: int, flat: torch.Tensor) -> torch.Tensor:
    """What ``rank`` holds before any step, given the flat initial parameters: a server its
    shard, a worker the whole model."""
    if rank in setup.servers:
        start, stop = shard_bounds(flat.numel(), len(setup.servers))[setup.servers.index(rank)]
        return flat[start:stop].clone()
    return flat.clone()


class Evaluator:
    """Held-out metrics of flat parameters, on one model built once and reloaded each time."""

    def __init__(self, setup: TrainingSetup) -> None:
        self._workload = setup.workload
        self._metric = metric_of(setup.workload).name
        self._replica = Replica(setup.workload.make_model(setup.seed))

    def __call__(self, flat: torch.Tensor) -> dict[str, float]:
        self._replica.load(flat)
        values = self._workload.evaluate(self._replica.model)
        if self._metric not in values:  # targets, summaries and plots would read nothing
            raise ValueError(
                f"workload {getattr(self._workload, 'name', '?')!r} declares metric="
                f"{self._metric!r} but its evaluate() returned {sorted(values)}; return "
                f"{self._metric!r}, or declare the metric it reports"
            )
        return values


def make_ledger(
    setup: TrainingSetup,
    clock: Callable[[], float] | None = None,
    bytes_sent: Callable[[], float] | None = None,
    faults: bool = False,
    **observers: Any,
) -> Ledger:
    """The run's ledger, over the owners of the strategy's declared global model; both
    backends build it here. ``clock``, ``bytes_sent``: the backend's (``None``: the recorded
    events' time and bytes, as in a replay). ``faults``: ranks may crash, so a ``"primary"``
    model is any live replica's (the first of ``Strategy.replicas``: every worker, or
    IMPALA's learners), not one rank's that may die. ``observers``:
    ``target`` (:func:`runs.metric.check_target`), ``target_loss``, ``on_step``, ``on_eval``.
    The ledger's metric is the workload's (:func:`runs.metric.metric_of`)."""
    owners, combine = setup.strategy.owners(setup.world_size)
    if faults and setup.strategy.global_model == "primary":
        owners = setup.strategy.replicas(setup.world_size)
    ledger = Ledger(
        owners,
        combine,
        steps=setup.steps,
        eval_every=setup.eval_every,
        # A timing-only run has no numbers to evaluate: it makes no evaluation rows.
        evaluate=None if setup.timing_only else Evaluator(setup),
        clock=clock,
        bytes_sent=bytes_sent,
        metric=metric_of(setup.workload),
        **observers,
    )
    ledger.with_faults = ledger.counts.keep_history = faults
    ledger.logs_with_steps = bool(getattr(setup.strategy, "logs_with_steps", False))
    return ledger


def make_trace(setup: TrainingSetup, backend: str, limit: int | None = None) -> Trace:
    """The run's timeline recorder (see :mod:`runs.trace`), one track per rank named after its
    role, showing operations by :func:`strategies.operations.span_name`; both backends build it
    here. ``limit``: spans kept per rank (default: a share of ``runs.trace.SPAN_BUDGET``)."""
    world = setup.world_size
    workload = setup.workload.config().get("name", type(setup.workload).__name__)
    trace = Trace(
        world,
        backend=backend,
        limit=limit,
        names=partial(span_name, world_size=world),
        title=f"{setup.strategy.name} on {workload}",
    )
    for rank, role in setup.roles().items():
        trace.role(rank, role)
    return trace


def build_role(
    setup: TrainingSetup,
    rank: int,
    comm: Communicator,
    runtime: Runtime,
    initial: Callable[[], torch.Tensor] | None = None,
    nodes: tuple[int, ...] | None = None,
    device: torch.device | None = None,
    layout: RankLayout | None = None,
) -> tuple[RoleContext, Program]:
    """The context and (not yet started) program of ``rank``.

    ``initial`` supplies the flat initial parameters for servers (defaults to building the
    model once more); the simulator passes a cached copy so that 1000 ranks build it once.
    ``nodes`` maps every rank to its node (locality); by default each rank is its own node.
    ``device`` (the real backend's GPU under NCCL) is where the model, its batches and a
    server's shard live; the model is built on the CPU first, so that every backend starts
    from the same initial parameters. ``layout``: the run's :class:`RankLayout`, built once
    and passed for every rank by a backend that builds many ranks in one process (the
    simulator); by default one is built from ``setup`` and ``nodes``.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    if setup.timing_only:  # buffers made with device=w.device have shapes only too
        device = META
    if layout is None:
        layout = RankLayout.of(setup, nodes)
    strategy, workers, servers = setup.strategy, layout.workers, layout.servers
    scheduled = run_optimizer(strategy)
    # The run's lr schedule drives the optimizer the run configures, no other (an outer or
    # centre optimizer keeps its own learning rate).
    schedule = setup.schedule if next(iter(setup.optimizers)) == scheduled else None
    common: dict[str, Any] = {
        "nodes": layout.nodes,
        "local_rank": layout.local_ranks[rank],
        "index": layout.position(rank),
        "optimizers": setup.optimizers,
        "schedule": setup.schedule,
        "scheduled": scheduled,
        "total_steps": setup.steps,
        "seed": setup.seed,
        "eval_every": setup.eval_every,
        "host_graph": layout.host_graph,
        "device": device,
    }
    if layout.is_server(rank):
        flat = (initial or (lambda: initial_parameters(setup)))()
        bounds = shard_bounds(flat.numel(), len(servers))[layout.position(rank)]
        shard = FlatOptimizer(
            flat[bounds[0] : bounds[1]].clone().to(device), setup.optimizer, schedule, setup.steps
        )
        server = ServerContext(
            rank, setup.world_size, comm, runtime, workers, servers, shard, bounds, **common
        )
        return server, _program(strategy.server(server), strategy, "server")
    spec = setup.optimizer if strategy.global_model != "servers" else None
    replica: Replica
    if setup.timing_only:  # no model of its own: a gradient's shape is all it computes
        flat = (initial or (lambda: initial_parameters(setup)))()
        replica = ShapeReplica(
            flat.numel(),
            flat.dtype,
            setup.workload.batch_size,
            spec,
            schedule,
            setup.steps,
            model=setup.shape_model,
        )
    else:
        model = setup.workload.make_model(setup.seed).to(device)
        replica = Replica(model, spec, schedule, setup.steps)
    index = layout.position(rank)
    worker = WorkerContext(
        rank,
        setup.world_size,
        comm,
        runtime,
        workers,
        servers,
        replica,
        no_batches()
        if setup.timing_only
        else setup.workload.stream(index, len(workers), setup.seed, device),
        setup.workload.step_loss,
        setup.accumulate,
        experience=cast(Experiences, setup.workload)
        if setup.workload.collects_experience
        else None,
        **common,
    )
    return worker, _program(strategy.worker(worker), strategy, "worker")


def _program(program: Any, strategy: Strategy, role: str) -> Program:
    if not isinstance(program, Generator):
        raise TypeError(
            f"{type(strategy).__name__}.{role}() returned {program!r}, not a generator: a role "
            "program yields the handles of communicator calls (`value = yield handle`)"
        )
    return program
