"""The contexts a role program sees: rank, communicator, local model, and the runtime's hooks.

The *runtime* (a backend) owns step counters, the global model version, stop conditions and
metrics; a strategy only reads them. Contexts call back into the runtime through the small
:class:`Runtime` protocol, which is the whole difference between simulated and real runs on
this side of the communicator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from strategies.comm import Communicator
from strategies.replica import FlatOptimizer, Replica

__all__ = ["Runtime", "RoleContext", "WorkerContext", "ServerContext"]


class Runtime(Protocol):
    """The backend's side of a context."""

    def finished(self, ctx: RoleContext) -> bool:
        """Has the run's stop condition been reached, as far as ``ctx`` can know?"""
        ...

    def computed(self, ctx: WorkerContext, grads: torch.Tensor, samples: int, loss: float) -> Any:
        """Wrap a finished local computation in a handle (the simulator adds compute time)."""
        ...

    def updated(self, ctx: RoleContext, staleness: int) -> None:
        """Record that ``ctx`` applied one update computed ``staleness`` versions ago."""
        ...

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        """Record strategy-specific values."""
        ...

    def versioned(self, ctx: RoleContext) -> None:
        """``ctx.version`` has just changed (an update applied, or parameters loaded)."""
        ...


class RoleContext:
    """What every role shares: identity, communicator, version and stop condition."""

    role = "role"

    def __init__(
        self,
        rank: int,
        world_size: int,
        comm: Communicator,
        runtime: Runtime,
        workers: list[int],
        servers: list[int],
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.comm = comm
        self.workers = workers
        self.servers = servers
        self.version = 0
        self._runtime = runtime

    @property
    def done(self) -> bool:
        """True once the runtime's stop condition holds; role programs loop ``while not done``."""
        return self._runtime.finished(self)

    def log(self, **values: float) -> None:
        """Record named values at the current time (e.g. a strategy's own statistics)."""
        self._runtime.logged(self, values)


class WorkerContext(RoleContext):
    """A worker: computes gradients on its own data shard with its own model replica.

    Attributes
    ----------
    index
        The worker's position among workers (its data shard), not its rank.
    steps
        Gradients computed so far (each over ``accumulate`` micro-batches).
    """

    role = "worker"

    def __init__(
        self,
        rank: int,
        world_size: int,
        comm: Communicator,
        runtime: Runtime,
        workers: list[int],
        servers: list[int],
        replica: Replica,
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        accumulate: int = 1,
    ) -> None:
        super().__init__(rank, world_size, comm, runtime, workers, servers)
        self.index = workers.index(rank)
        self.replica = replica
        self.steps = 0
        self._batches = batches
        self._loss_fn = loss_fn
        self._accumulate = accumulate

    @property
    def model(self) -> torch.nn.Module:
        return self.replica.model

    @property
    def numel(self) -> int:
        """Number of parameters (the length of flat gradients and parameter vectors)."""
        return self.replica.numel

    def compute_gradients(self) -> Any:
        """Forward/backward on the next local batch; the handle's value is the flat gradient."""
        grads, samples, loss = self.replica.compute_gradients(
            self._batches, self._loss_fn, self._accumulate
        )
        self.steps += 1
        return self._runtime.computed(self, grads, samples, loss)

    def apply(self, grads: torch.Tensor, *, staleness: int = 0, lr_scale: float = 1.0) -> None:
        """Step the local optimizer with a flat gradient; this replica's version advances."""
        self.replica.apply(grads, lr_scale)
        self.version += 1
        self._runtime.versioned(self)
        self._runtime.updated(self, staleness)

    def parameters(self) -> torch.Tensor:
        """A flat copy of the local parameters."""
        return self.replica.parameters()

    def load_parameters(self, flat: torch.Tensor, version: int | None = None) -> None:
        """Replace the local parameters (e.g. pulled from a server) and adopt their version."""
        self.replica.load(flat)
        self.version = self.version + 1 if version is None else int(version)
        self._runtime.versioned(self)


class ServerContext(RoleContext):
    """A parameter server holding one contiguous shard ``[start, stop)`` of the flat model."""

    role = "server"

    def __init__(
        self,
        rank: int,
        world_size: int,
        comm: Communicator,
        runtime: Runtime,
        workers: list[int],
        servers: list[int],
        shard: FlatOptimizer,
        bounds: tuple[int, int],
    ) -> None:
        super().__init__(rank, world_size, comm, runtime, workers, servers)
        self.index = servers.index(rank)
        self.shard = shard
        self.bounds = bounds

    @property
    def numel(self) -> int:
        return self.bounds[1] - self.bounds[0]

    def parameters(self) -> torch.Tensor:
        """A copy of this server's parameter shard."""
        return self.shard.param.detach().clone()

    def apply(self, grads: torch.Tensor, *, staleness: int = 0, lr_scale: float = 1.0) -> None:
        """Step this shard's optimizer; the global model version advances."""
        self.shard.step(grads, lr_scale)
        self.version += 1
        self._runtime.versioned(self)
        self._runtime.updated(self, staleness)
