"""The one strategy interface: roles, and one program per role, written against contexts.

A program is a generator. It yields the handles that communicator calls and
``compute_gradients`` return, and receives their values back::

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            grads = yield w.comm.all_reduce(grads, op="mean")
            w.apply(grads)

The simulator runs each program as a SimPy process; the real backend runs it in its own OS
process with a trampoline that waits on each handle. The strategy never knows which. A
failed operation raises its error at the ``yield``; when the run stops, every program is
closed at its next ``yield`` (``GeneratorExit``), so ``finally`` blocks run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

from options.declare import Declared, OptionError
from strategies.context import ServerContext, WorkerContext
from strategies.ledger import GLOBAL_MODELS

__all__ = ["Program", "ShardedServers", "Strategy", "close_program", "not_yieldable"]

#: A role program: yields handles, receives their values.
Program = Generator[Any, Any, None]


def not_yieldable(item: Any, rank: int, role: str, program: Program) -> TypeError:
    """The one error both drivers raise when a program yields something that is not a handle,
    naming the line of the program that did it."""
    frame = getattr(program, "gi_frame", None)
    where = f" at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame else ""
    return TypeError(
        f"rank {rank}'s {role} program yielded a {type(item).__name__}{where}; yield the "
        "handles that communicator calls, compute_gradients() and sleep() return"
    )


def close_program(program: Program, rank: int, role: str) -> None:
    """Close a program at its current ``yield`` (the run stopped): its ``finally`` blocks run.
    A ``finally`` that waits on communication then cannot complete (the peers have stopped
    too); both backends refuse it with the same one-line error."""
    frame = getattr(program, "gi_frame", None)
    where = f" at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame else ""
    try:
        program.close()
    except RuntimeError as exc:
        raise RuntimeError(
            f"rank {rank}'s {role} program yielded again while being closed{where}: once the "
            "run stops, a finally block may clean up but not wait on handles (the other ranks "
            "have stopped)"
        ) from exc


def _check_optimizers(optimizers: Any, owner: str) -> None:
    if not isinstance(optimizers, dict) or not optimizers:
        raise TypeError(f"{owner}.optimizers must map at least one name to a spec")
    if not all(isinstance(k, str) for k in optimizers):
        raise TypeError(f"{owner}.optimizers must map names (str) to specs")


class Strategy(Declared, ABC):
    """Base class of every communication strategy.

    Subclasses set :attr:`name` (the registry key), declare their options as annotated class
    attributes (:mod:`options.declare`: ``period: Annotated[int, Field(ge=1)] = 8``; rules
    between options in ``__post_init__``), and write :meth:`worker` and, if they declare
    servers, :meth:`server`. From the declaration come the constructor, its one-line errors,
    the attributes, :attr:`options` (written to ``run.json``, shown by ``repr``), the
    experiment schema and the docs' tables. (A subclass may instead write its own
    ``__init__`` and pass its options to ``super().__init__(**options)``.)

    A strategy *declares* what both backends must honour the same way, and no backend has a
    branch for a particular strategy:

    * :meth:`servers`: which ranks are servers (the rest are workers);
    * :attr:`global_model`: what is evaluated and whose optimizer steps count as steps:
      ``"average"`` (default: the mean of the workers' replicas, right for averaging and
      gossip), ``"primary"`` (the replica of :meth:`primary`, when replicas are equal by
      construction) or ``"servers"`` (the servers' shards; workers then get no optimizer);
    * :attr:`optimizers`: the named optimizers the strategy uses; the first is the one
      ``apply`` steps, the others are built with ``ctx.make_optimizer(name, flat)``. A value is
      the default spec; ``None`` marks the one the run's ``optimizer`` configures (a run can
      also name each: ``optimizer={"inner": ..., "outer": ...}``). An instance may set its
      own ``self.optimizers`` (e.g. from constructor arguments) before ``super().__init__``.
    """

    #: Registry key, used by config files.
    name: ClassVar[str] = ""
    #: What the global model is (see the class docstring).
    global_model: ClassVar[str] = "average"
    #: Named optimizers and their default specs; the first is stepped by ``apply``.
    optimizers: dict[str, Any] = {"main": None}
    #: Whether a rank's ``w.log`` right after its ``w.apply`` (in the same resume) is that
    #: step's row: the run's last step's is then kept, though the run stopped at that step
    #: (IMPALA's ``policy_lag``). Off by default: other strategies' rows stay as they were.
    logs_with_steps: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = options
        _check_optimizers(self.optimizers, type(self).__name__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.global_model not in GLOBAL_MODELS:
            raise TypeError(
                f"{cls.__name__}.global_model={cls.global_model!r}; use one of "
                f"{', '.join(GLOBAL_MODELS)}"
            )
        _check_optimizers(cls.optimizers, cls.__name__)

    def servers(self, world_size: int) -> list[int]:
        """Ranks that act as servers; the rest are workers. Default: none."""
        return []

    def workers(self, world_size: int) -> list[int]:
        """Ranks that act as workers, in order (worker index = position here)."""
        servers = set(self.servers(world_size))
        return [r for r in range(world_size) if r not in servers]

    def primary(self, world_size: int) -> int:
        """The rank whose replica is the global model when ``global_model == "primary"``."""
        return self.workers(world_size)[0]

    def replicas(self, world_size: int) -> list[int]:
        """The ranks whose replicas are equal copies of a ``"primary"`` global model: in a
        run with faults the first live one is the global model, and the run stops once every
        live one has applied ``steps``. Default: every worker (IMPALA: its learners)."""
        return self.workers(world_size)

    def owners(self, world_size: int) -> tuple[list[int], str]:
        """The ranks whose states make the global model, and how they combine (``"one"``,
        ``"concat"`` or ``"mean"``)."""
        if self.global_model == "servers":
            return self.servers(world_size), "concat"
        if self.global_model == "primary":
            return [self.primary(world_size)], "one"
        return self.workers(world_size), "mean"

    def check_world(self, world_size: int) -> None:
        """Raise ``ValueError`` if this strategy cannot run on ``world_size`` ranks."""
        if not self.workers(world_size):
            raise ValueError(
                f"{self.name} needs at least one worker rank; the world has {world_size}"
            )
        if self.global_model == "servers" and not self.servers(world_size):
            raise ValueError(
                f"{self.name} declares global_model='servers' but no server ranks among "
                f"{world_size}"
            )

    def reads_values(self) -> str | None:
        """Why this strategy's decisions read the numbers it trains (a loss, a norm), or None
        when they read none. A timing-only run (``sim.run(..., timing_only=True)``) has
        shapes and no numbers, so it refuses a strategy that says why here."""
        return None

    def worker_state(self) -> dict[str, float]:
        """What each worker keeps beyond its replica (parameters, gradient) and the optimizer
        ``apply`` steps: copies of its parameters, by name (the simulated device's memory
        estimate adds them, ``memory_strategy_gb``: :mod:`sim.device_memory`). A name of one
        of :attr:`optimizers` stands for that optimizer's state over that many copies (its
        buffers per parameter as the run configures it: Nesterov momentum one). Default: an
        error-feedback residual where the strategy's ``compression`` keeps one.

        Examples
        --------
        >>> from strategies import AllReduceSGD
        >>> AllReduceSGD().worker_state(), AllReduceSGD(compression="topk").worker_state()
        ({}, {'error-feedback residual': 1.0})
        """
        return feedback_state(getattr(self, "compression", None))

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


class ShardedServers:
    """Mixin for strategies whose first ``n_servers`` ranks are servers, each holding one
    contiguous shard (parameter servers, EASGD's centre); the rest are workers. A strategy
    declares the option as ``n_servers: Servers = 1`` (``strategies.fields``): it is
    written ``servers``, the name of the method below."""

    n_servers: int

    def servers(self, world_size: int) -> list[int]:
        return list(range(min(self.n_servers, world_size)))

    def check_world(self, world_size: int) -> None:
        if self.n_servers >= world_size:
            raise OptionError(
                f"servers={self.n_servers} leaves no worker among {world_size} ranks; "
                "use servers < world size",
                "servers",
            )


def feedback_state(compression: Any, codecs: float = 1.0) -> dict[str, float]:
    """``{"error-feedback residual": codecs}`` when ``compression`` (a
    ``strategies.compression.Compression`` or None) keeps a residual per codec (float32, a
    copy of what it compresses), else ``{}``: :meth:`Strategy.worker_state`'s part for
    compression.

    >>> feedback_state(None)
    {}
    """
    if compression is None or not compression.options.get("error_feedback"):
        return {}
    return {"error-feedback residual": float(codecs)}
