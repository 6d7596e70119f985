"""Build each rank's context and program: the set-up both backends share.

Given a strategy, a workload and a rank, this makes the rank's replica (or parameter shard),
data stream and context, so that a simulated run and a real run start from bit-identical
state. Workloads are used through the small :class:`WorkloadLike` protocol, so this package
still depends on torch alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from strategies.aggregate import shard_bounds
from strategies.base import Program, Strategy
from strategies.comm import Communicator
from strategies.context import RoleContext, Runtime, ServerContext, WorkerContext
from strategies.optim import OptimizerSpec, ScheduleSpec
from strategies.registry import get as get_strategy
from strategies.replica import FlatOptimizer, Replica

__all__ = [
    "TrainingSetup",
    "WorkloadLike",
    "build_role",
    "evaluate_parameters",
    "initial_parameters",
    "positive_int",
]


class WorkloadLike(Protocol):
    """What role set-up needs from a workload (see ``workloads.Workload``)."""

    batch_size: int

    def make_model(self, seed: int) -> torch.nn.Module: ...

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    def batches(
        self, rank: int, n_workers: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

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


_WORKLOAD_METHODS = ("make_model", "loss", "batches", "evaluate", "config")


@dataclass(frozen=True)
class TrainingSetup:
    """Everything about a run that is the same on every rank (build it with :meth:`create`)."""

    strategy: Strategy
    workload: WorkloadLike
    world_size: int
    steps: int
    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    seed: int = 0
    accumulate: int = 1
    eval_every: int = 10

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
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be an integer >= 0")
        resolved = get_strategy(strategy)
        missing = [m for m in _WORKLOAD_METHODS if not callable(getattr(workload, m, None))]
        if missing:
            raise TypeError(
                f"workload={workload!r} lacks {', '.join(missing)}; pass a workloads.Workload "
                "or a registered workload name"
            )
        resolved.check_world(world_size)
        return cls(
            strategy=resolved,
            workload=workload,
            world_size=world_size,
            steps=steps,
            optimizer=OptimizerSpec.parse(optimizer),
            schedule=ScheduleSpec.parse(lr_schedule),
            seed=seed,
            accumulate=accumulate,
            eval_every=eval_every,
        )

    def config(self) -> dict[str, Any]:
        """The part of ``run.json`` both backends share."""
        return {
            "strategy": self.strategy.config(),
            "workload": self.workload.config(),
            "optimizer": {"name": self.optimizer.name, **self.optimizer.options},
            "lr_schedule": {"name": self.schedule.name, **self.schedule.options},
            "steps": self.steps,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "accumulate": self.accumulate,
            "world_size": self.world_size,
        }

    @property
    def workers(self) -> list[int]:
        return self.strategy.workers(self.world_size)

    @property
    def servers(self) -> list[int]:
        return self.strategy.servers(self.world_size)


def initial_parameters(setup: TrainingSetup) -> torch.Tensor:
    """The flat initial parameters every replica and shard starts from."""
    return Replica(setup.workload.make_model(setup.seed)).parameters()


def evaluate_parameters(setup: TrainingSetup, flat: torch.Tensor) -> dict[str, float]:
    """Held-out metrics of the model with these flat parameters (built fresh, then loaded)."""
    replica = Replica(setup.workload.make_model(setup.seed))
    replica.load(flat)
    return setup.workload.evaluate(replica.model)


def build_role(
    setup: TrainingSetup,
    rank: int,
    comm: Communicator,
    runtime: Runtime,
    initial: Callable[[], torch.Tensor] | None = None,
) -> tuple[RoleContext, Program]:
    """The context and (not yet started) program of ``rank``.

    ``initial`` supplies the flat initial parameters for servers (defaults to building the
    model once more); the simulator passes a cached copy so that 1000 ranks build it once.
    """
    strategy, workers, servers = setup.strategy, setup.workers, setup.servers
    if rank in servers:
        flat = (initial or (lambda: initial_parameters(setup)))()
        bounds = shard_bounds(flat.numel(), len(servers))[servers.index(rank)]
        shard = FlatOptimizer(
            flat[bounds[0] : bounds[1]].clone(), setup.optimizer, setup.schedule, setup.steps
        )
        server = ServerContext(
            rank, setup.world_size, comm, runtime, workers, servers, shard, bounds
        )
        return server, strategy.server(server)
    spec = setup.optimizer if strategy.updates_on == "workers" else None
    replica = Replica(setup.workload.make_model(setup.seed), spec, setup.schedule, setup.steps)
    index = workers.index(rank)
    worker = WorkerContext(
        rank,
        setup.world_size,
        comm,
        runtime,
        workers,
        servers,
        replica,
        setup.workload.batches(index, len(workers), setup.seed),
        setup.workload.loss,
        setup.accumulate,
    )
    return worker, strategy.worker(worker)
