"""The one strategy interface: roles, and one program per role, written against contexts.

A program is a generator. It yields the handles that communicator calls and
``compute_gradients`` return, and receives their values back::

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.all_reduce(grads, op="mean")
            w.apply(grads)

The simulator runs each program as a SimPy process; the real backend runs it in its own OS
process with a trampoline that waits on each handle. The strategy never knows which.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from typing import Any, ClassVar

from strategies.context import ServerContext, WorkerContext

__all__ = ["Program", "Strategy"]

#: A role program: yields handles, receives their values.
Program = Generator[Any, Any, None]


class Strategy(ABC):
    """Base class of every communication strategy.

    Subclasses set :attr:`name` (the registry key), validate their keyword arguments in
    ``__init__`` (naming the argument in errors), store them in :attr:`options`, and write
    :meth:`worker` and, if they declare servers, :meth:`server`.
    """

    #: Registry key, used by config files.
    name: ClassVar[str] = ""
    #: Which role owns optimizers: ``"workers"`` (replicas) or ``"servers"`` (shards).
    updates_on: ClassVar[str] = "workers"

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = options

    def servers(self, world_size: int) -> list[int]:
        """Ranks that act as servers; the rest are workers. Default: none."""
        return []

    def workers(self, world_size: int) -> list[int]:
        """Ranks that act as workers, in order (worker index = position here)."""
        servers = set(self.servers(world_size))
        return [r for r in range(world_size) if r not in servers]

    def primary(self, world_size: int) -> int:
        """The rank whose updates count as global model versions (and whose model is evaluated):
        the first server if servers own the model, else the first worker."""
        servers = self.servers(world_size)
        if servers and self.updates_on == "servers":
            return servers[0]
        return self.workers(world_size)[0]

    @property
    def synchronous(self) -> bool:
        """Whether every rank can tell when to stop by counting versions it has seen (the real
        backend runs only these so far; asynchronous termination across processes comes later)."""
        return True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.updates_on not in ("workers", "servers"):
            raise TypeError(
                f"{cls.__name__}.updates_on={cls.updates_on!r}; use 'workers' or 'servers'"
            )

    def check_world(self, world_size: int) -> None:
        """Raise ``ValueError`` if this strategy cannot run on ``world_size`` ranks."""
        if not self.workers(world_size):
            raise ValueError(
                f"{self.name} needs at least one worker rank; the world has {world_size}"
            )

    @abstractmethod
    def worker(self, w: WorkerContext) -> Program:
        """The program every worker rank runs."""

    def server(self, s: ServerContext) -> Program:
        """The program every server rank runs (only for strategies that declare servers)."""
        raise TypeError(f"{type(self).__name__} declares servers but has no server program")
        yield  # pragma: no cover - makes this a generator function

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as written to ``run.json``."""
        return {"name": self.name, **self.options}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({args})"
