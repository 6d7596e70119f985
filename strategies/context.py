"""The contexts a role program sees: who it is, its communicator, its model, and the clock.

The *runtime* (a backend) sits behind a context through the small :class:`Runtime` protocol;
the *ledger* behind the runtime owns progress (steps, stop, rows). A strategy reads
``w.done``, ``w.step``, ``w.now`` and calls ``apply``, ``load_parameters``, ``log``; it never
counts anything the run depends on by itself.

Steps and versions are two things. ``w.step`` counts the optimizer steps this role applied
(``apply``); the run's ``steps`` counts global steps of the declared global model. ``w.version``
is a tag a strategy may use to measure staleness: ``apply`` advances it by one, and
``load_parameters(p, version=v)`` adopts ``v`` (without ``version`` it stays as it was).
Loading parameters is never a step. What a step leaves behind includes the communication that
follows it: an owner's state at step ``k`` is taken when it is about to apply step ``k + 1``
(after its averaging, mixing or outer step), and the run's last step when it is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import torch

from runs.schema import check_log_names
from strategies.buckets import FIRST_BUCKET_MB, MIB, Bucket, GradientBuckets, bucket_bounds
from strategies.comm import CommTimeout, Communicator, not_a_handle
from strategies.handles import Handle, any_of
from strategies.membership import Quorum
from strategies.optim import OptimizerSpec, ScheduleSpec
from strategies.replica import FlatOptimizer, Objective, Replica
from strategies.rules import is_eval_step

__all__ = [
    "Experiences",
    "GradientWork",
    "Runtime",
    "RoleContext",
    "WorkerContext",
    "ServerContext",
]

#: What computes one gradient on a replica: the flat gradient, its samples and its loss.
GradientWork = Callable[[Replica], tuple[torch.Tensor, int, float]]


class Experiences(Protocol):
    """What a workload that collects experience (reinforcement learning) offers a worker:
    :class:`workloads.reinforcement.RLWorkload`."""

    #: The part of an on-policy step's compute time spent acting (environment steps and
    #: forward passes); the rest is the learner's forward and backward.
    actor_share: float
    #: Environment steps in one rollout (environments x rollout length).
    rollout_steps: int
    #: Floats in one packed rollout (what :meth:`collect` returns), to size a receive.
    rollout_numel: int

    def collect(self, model: torch.nn.Module, stream: Any) -> torch.Tensor:
        """A rollout of ``stream``'s environments with ``model``, packed in one tensor."""
        ...

    def experience_steps(self, experience: torch.Tensor) -> int:
        """Environment steps in a packed rollout (or a one-line error if it is not one)."""
        ...

    def experience_loss(
        self, model: torch.nn.Module, experiences: list[torch.Tensor], **options: Any
    ) -> tuple[torch.Tensor, int]:
        """The loss of ``model`` on packed rollouts, batched, and their environment steps."""
        ...


class Runtime(Protocol):
    """The backend's side of a context."""

    def stopped(self) -> bool:
        """Has the run stopped, as far as this rank knows now?"""
        ...

    def now(self) -> float:
        """Seconds since the run started: simulated in ``sim``, wall-clock in ``real``."""
        ...

    def computed(
        self,
        ctx: WorkerContext,
        work: GradientWork,
        share: float = 1.0,
        what: str = "compute_gradients",
    ) -> Handle[torch.Tensor]:
        """A handle for ``ctx``'s next gradient, ``work(replica)`` on its parameters as they
        are now; it finishes when the gradient is ready and other operations proceed beside
        it (``sim`` computes at the call and adds the compute model's time; ``real`` computes
        on the rank's compute thread or stream). ``share``: the part of one gradient's time
        the work stands for (``sim``; an actor's rollout or a learner's gradient on experience
        is part of an A2C step); ``what`` names it in spans and errors."""
        ...

    def computed_in_buckets(
        self, ctx: WorkerContext, work: GradientWork, bounds: list[tuple[int, int]]
    ) -> list[Handle[torch.Tensor]]:
        """As :meth:`computed`, with one handle per bucket ``bounds[i]`` (slices of the flat
        gradient, in the order backward produces them): each finishes with its slice (a
        tensor of its own) once backward has produced it (``sim``: at its share of the
        gradient's time, :func:`strategies.buckets.ready_fractions`; ``real``: once autograd
        has accumulated each of its parameters' gradients)."""
        ...

    def settled(self, ctx: RoleContext) -> None:
        """``ctx`` is about to apply its next optimizer step: its state for the step it applied
        last is final (the communication after a step belongs to that step)."""
        ...

    def stepped(self, ctx: RoleContext, staleness: int) -> None:
        """``ctx`` applied one optimizer step of an update ``staleness`` versions old."""
        ...

    def logged(self, ctx: RoleContext, values: dict[str, float]) -> None:
        """Record strategy-specific values."""
        ...

    def sleep(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        """A handle that finishes ``seconds`` from now (idle time)."""
        ...

    def compute(self, ctx: RoleContext, seconds: float) -> Handle[None]:
        """A handle for ``seconds`` of local work (``sim`` charges it to the rank's device;
        ``real`` finishes it at once: the work itself is whatever the strategy computed)."""
        ...

    def restored(self, ctx: RoleContext, nbytes: float) -> None:
        """``ctx`` took a state at its (new) ``step``, ``nbytes`` received for it."""
        ...

    def lost(self, ctx: RoleContext, steps: int, undone: bool) -> None:
        """``ctx`` dropped its work since its last step (and ``steps`` steps with it, which it
        had applied if ``undone``)."""
        ...

    def held(self, ctx: RoleContext, samples: int) -> None:
        """``ctx`` holds ``samples`` samples no rank has counted yet (lost if it crashes)."""
        ...

    def save_checkpoint(self, ctx: RoleContext) -> Handle[None]:
        """Write ``ctx``'s state where the run keeps checkpoints (it outlives a crash)."""
        ...

    def load_checkpoint(self, ctx: RoleContext) -> Handle[int | None]:
        """Give ``ctx`` its last checkpoint's state; the handle's value is its step, or
        None when this rank has none."""
        ...


#: Why a zero is refused where seconds must be positive, by what they are.
_ZERO = {
    "sleep": "a sleep of 0 would poll at one simulated instant forever",
    "timeout": "a timeout of 0 fails before any operation can finish; yield the handle "
    "itself to wait without a limit",
}


def _seconds(value: Any, name: str, positive: bool = False, what: str = "sleep") -> float:
    low = 0.0 if positive else -1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        bound = f"> 0 ({_ZERO[what]})" if positive else ">= 0"
        raise ValueError(f"{name}={value!r} must be a number of seconds {bound}")
    if not positive and value < 0:
        raise ValueError(f"{name}={value!r} must be a number of seconds >= 0")
    if value == float("inf"):
        raise ValueError(f"{name}=inf never ends; pass a finite number of seconds")
    return float(value)


class RoleContext:
    """What every role shares: identity, locality, communicator, counters, clock.

    Attributes
    ----------
    rank, world_size
        This rank and the number of ranks.
    workers, servers
        The ranks of each role, in order.
    node, local_rank, nodes
        Locality: this rank's node (machine), its index among that node's ranks, and every
        rank's node (``nodes[r]``), for hierarchical strategies. ``sim`` reads the topology's
        ``node`` host attribute (a host without one is a node of its own); ``real`` reads
        the launcher's.
    host_graph
        Which ranks are neighbours on the network (a read-only mapping ``{rank: (neighbour
        ranks...)}``: hosts joined by a link or through switches only), for strategies that
        follow the topology; ``None`` when the backend does not know the topology. Shared
        by every rank of a run, as are ``workers``, ``servers`` and ``nodes``: read them,
        never modify them.
    seed
        The run's seed: a strategy's own random draws seed their generators from it (and
        the rank), so both backends draw the same numbers.
    eval_every
        The run's evaluation period (see :meth:`is_eval_step`).
    device
        Where this rank's model and gradients live: the CPU, or the rank's GPU on the real
        backend under NCCL. Buffers made with ``device=w.device`` (or ``empty_like`` of a
        gradient) travel without a copy; CPU tensors are staged to the device and back.
    step
        Optimizer steps this role has applied.
    version
        The model version tag (see the module docstring).
    rejoined
        True in the program of a rank that crashed and was restarted (a new process, with
        no state: it takes a live peer's with :func:`strategies.membership.heal`).
    """

    role = "role"

    def __init__(
        self,
        rank: int,
        world_size: int,
        comm: Communicator,
        runtime: Runtime,
        workers: list[int],
        servers: list[int],
        nodes: tuple[int, ...] | None = None,
        optimizers: Mapping[str, OptimizerSpec] | None = None,
        schedule: ScheduleSpec | None = None,
        total_steps: int = 1,
        scheduled: str | None = None,
        seed: int = 0,
        eval_every: int = 1,
        host_graph: Mapping[int, tuple[int, ...]] | None = None,
        device: torch.device | None = None,
        local_rank: int | None = None,
    ) -> None:
        # Every rank of a simulated run lives in one process: the world-sized structures
        # (workers, servers, nodes, host graph) are shared, not copied per rank, so that a
        # run's memory is O(n) in its ranks (see strategies.roles.RankLayout).
        self.rank = rank
        self.world_size = world_size
        self.comm = comm
        self.workers = workers
        self.servers = servers
        self.nodes = tuple(range(world_size)) if nodes is None else tuple(nodes)
        self.node = self.nodes[rank]
        self.local_rank = (
            sum(1 for r in range(rank) if self.nodes[r] == self.node)
            if local_rank is None
            else local_rank
        )
        self.host_graph = _read_only(host_graph)
        self.seed = seed
        self.eval_every = eval_every
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.step = 0
        self.version = 0
        self.rejoined = False
        self._runtime = runtime
        self._optimizers = dict(optimizers or {})
        self._schedule = schedule
        self._scheduled = scheduled
        self._total_steps = total_steps

    @property
    def done(self) -> bool:
        """True once the run has stopped; role programs loop ``while not w.done``."""
        return self._runtime.stopped()

    @property
    def now(self) -> float:
        """Seconds since the run started (simulated in ``sim``, wall-clock in ``real``)."""
        return self._runtime.now()

    def is_eval_step(self) -> bool:
        """Whether this role's last step (``step``) is one of the run's evaluation points: a
        cheap moment for a strategy to log its own statistics (period, compression ratio)
        as often as the run evaluates."""
        return is_eval_step(self.step, self.eval_every, self._total_steps)

    def log(self, **values: float) -> None:
        """Record named values now (e.g. a strategy's own statistics)."""
        check_log_names(list(values))
        self._runtime.logged(self, values)

    def sleep(self, seconds: float) -> Handle[None]:
        """A handle that finishes after ``seconds`` (counted as idle time)."""
        return self._runtime.sleep(self, _seconds(seconds, "seconds", positive=True))

    def compute(self, seconds: float) -> Handle[None]:
        """Charge ``seconds`` of local work (e.g. encoding) to this rank's device: ``sim``
        advances the clock, ``real`` finishes at once (the work already ran)."""
        return self._runtime.compute(self, _seconds(seconds, "seconds"))

    def timeout(self, handle: Handle[Any], seconds: float) -> Handle[Any]:
        """``handle``, failing with :class:`~strategies.comm.CommTimeout` if it has not
        finished within ``seconds``. The operation itself goes on (as in torch): a late
        message still completes a timed-out ``recv``, so yield ``handle`` again to get it.

        Seconds are the backend's: simulated in ``sim``, wall-clock on ``real``, so a strategy
        whose decisions depend on time (timeouts, sleeps racing messages) takes the same
        steps in both only when both clocks agree on the outcome; check such strategies with
        ``studies.check(..., exact=False)``."""
        if not isinstance(handle, Handle):
            raise TypeError(f"timeout takes a handle from a communicator call, got {handle!r}")
        limit = _seconds(seconds, "seconds", positive=True, what="timeout")

        def first(result: tuple[int, Any]) -> Any:
            index, value = result
            if index == 1:
                raise CommTimeout(
                    f"rank {self.rank}: {handle.describe()} did not finish within {limit:g} s"
                )
            return value

        return any_of([handle, self.sleep(limit)]).then(first, like=handle)

    def quorum(
        self, min_size: int = 1, timeout: float | None = None, ranks: Sequence[int] | None = None
    ) -> Handle[Quorum]:
        """A handle for the next :class:`~strategies.membership.Quorum` of this role's ranks
        (the workers, or the servers; or ``ranks``, some of them that include this one, such
        as IMPALA's learners): it forms once every live one has asked (a crashed rank is left
        out once its crash is detected; a restarted one is waited for), or ``timeout`` seconds
        after this call with at least ``min_size`` members."""
        role = self.workers if self.role == "worker" else self.servers
        if ranks is None:
            ranks = role
        elif self.rank not in ranks or not set(ranks) <= set(role):
            raise ValueError(
                f"ranks={list(ranks)} must be {self.role}s of this run and include this rank "
                f"({self.rank}); use a subset of {list(role)}"
            )
        else:
            ranks = sorted(ranks)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size={min_size!r} must be an int >= 1 (members a quorum needs)")
        if min_size > len(ranks):
            raise ValueError(
                f"min_size={min_size} exceeds the {len(ranks)} {self.role}s of this run; "
                f"use min_size <= {len(ranks)}"
            )
        limit = None if timeout is None else _seconds(timeout, "timeout", True, "timeout")
        return self.comm.quorum(tuple(ranks), min_size, limit, self.step)

    def save_checkpoint(self) -> Handle[None]:
        """Write this rank's state (model, optimizer state, step, data position) to the
        run's checkpoint storage, which outlives a crash: ``sim`` charges ``latency + bytes /
        bandwidth`` of the fault schedule's ``checkpoint`` storage to the rank's device."""
        return self._runtime.save_checkpoint(self)

    def load_checkpoint(self) -> Handle[int | None]:
        """Take this rank's last checkpoint (``yield w.load_checkpoint()`` gives its step, or
        None when there is none): a restarted rank's way back without a live peer, as a
        parameter server's shard is restored. An owner of the global model counts again
        from that step."""
        return self._runtime.load_checkpoint(self)

    def lose(self, steps: int = 0, *, undone: bool = False) -> None:
        """This rank drops its work since its last step: a round that failed (its gradients
        are never applied: their samples are lost), and ``steps`` global steps with it (a
        step that was never committed, as all-reduce's dropped round; with ``undone``, steps
        this rank applied and now rolls back, as Local SGD's failed round: their samples are
        lost too, and the recovery goes on until the run passes them again). Recorded as
        ``lost_steps`` and ``lost_samples``."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps={steps!r} must be an int >= 0 (the steps lost)")
        self._runtime.lost(self, steps, undone)

    def hold(self, samples: int) -> None:
        """From now on this rank holds ``samples`` samples it generated that no rank has
        counted yet (an actor's rollout, until a learner has received it: the learner counts
        them when it learns from them); if it crashes while it holds them, they are
        ``lost_samples``. Each call replaces the last (0: it holds none)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise ValueError(f"samples={samples!r} must be an int >= 0 (the samples held)")
        self._runtime.held(self, samples)

    @property
    def total_steps(self) -> int:
        """The run's ``steps`` (global steps), e.g. to size a schedule's horizon."""
        return self._total_steps

    def make_optimizer(
        self, name: str, flat: torch.Tensor | None = None, horizon: int | None = None
    ) -> FlatOptimizer:
        """An optimizer declared by the strategy (``Strategy.optimizers``) over ``flat``
        (stepped in place), configured as the run asked (``optimizer={name: spec}``); steps
        taken with it are not global steps. A worker's ``flat`` defaults to its own model's
        parameter buffer, so ``opt.step(grads)`` updates the model (a local optimizer that is
        not the global model's, as EASGD's workers have).

        The run's ``lr_schedule`` applies only if this is the optimizer the run configures
        (the one declared ``None``), over ``horizon`` of its steps (default: the run's
        ``steps``; pass how many steps it will take when that differs)."""
        if flat is None:
            flat = self._own_parameters(name)
        if name not in self._optimizers:
            known = ", ".join(self._optimizers) or "none"
            raise KeyError(f"optimizer {name!r} is not declared by this strategy; it has {known}")
        schedule = self._schedule if name == self._scheduled else None
        total = self._total_steps if horizon is None else horizon
        return FlatOptimizer(flat, self._optimizers[name], schedule, total)

    def parameters(self) -> torch.Tensor:
        """A flat copy of the parameters this role owns (each role that owns some says which)."""
        raise TypeError(f"a {self.role} owns no parameters")

    def _own_parameters(self, name: str) -> torch.Tensor:
        raise TypeError(f"make_optimizer({name!r}) on a {self.role} needs the flat tensor to step")

    def _settle(self) -> None:
        if self.step:
            self._runtime.settled(self)

    def _stepped(self, staleness: int) -> None:
        self.step += 1
        self.version += 1
        self._runtime.stepped(self, staleness)


class WorkerContext(RoleContext):
    """A worker: computes gradients on its own data shard with its own model replica.

    Attributes
    ----------
    index
        The worker's position among workers (its data shard), not its rank.
    gradients
        Gradients computed so far (each over ``accumulate`` micro-batches).
    last_loss
        The training loss of the last gradient computed (on this worker's batch), for
        strategies that adapt to it; ``nan`` before the first. Read it once the gradient's
        handle has finished (``sim`` knows it at the call, ``real`` when it is ready).
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
        batches: Iterator[Any],
        objective: Objective,
        accumulate: int = 1,
        index: int | None = None,
        experience: Experiences | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(rank, world_size, comm, runtime, workers, servers, **kwargs)
        self.index = workers.index(rank) if index is None else index
        self.replica = replica
        self.gradients = 0
        self.last_loss = float("nan")
        self._batches = batches
        self._objective = objective
        self._experience = experience
        self._accumulate = accumulate
        self._buckets: dict[tuple[float, float], list[tuple[int, int]]] = {}

    @property
    def model(self) -> torch.nn.Module:
        return self.replica.model

    @property
    def numel(self) -> int:
        """Number of parameters (the length of flat gradients and parameter vectors)."""
        return self.replica.numel

    @property
    def accumulate(self) -> int:
        """Micro-batches (forward/backward passes) per gradient."""
        return self._accumulate

    def compute_gradients(self) -> Handle[torch.Tensor]:
        """Forward/backward on the next local batch, from the parameters as they are at this
        call; the handle's value is the flat gradient. Other operations proceed while it
        computes (in both backends), so a program may communicate, or load parameters,
        before it yields the handle."""
        self.gradients += 1
        return self._runtime.computed(self, self._gradient)

    def compute_gradients_in_buckets(
        self, bucket_mb: float = 25.0, first_bucket_mb: float = FIRST_BUCKET_MB
    ) -> GradientBuckets:
        """Forward/backward on the next local batch, as :meth:`compute_gradients`, with the
        gradient handed out in DDP's buckets as backward produces them: iterate the result
        and ``part = yield bucket.handle`` to get each bucket's slice of the flat gradient,
        the last parameters' first, so a program can start a bucket's all-reduce while
        backward goes on (see :mod:`strategies.buckets`). Buckets close at ``bucket_mb`` MiB
        (DDP's ``bucket_cap_mb``), the first (the first parameters', ready last) at
        ``first_bucket_mb``. The numbers are those :meth:`compute_gradients` gives."""
        for name, value in (("bucket_mb", bucket_mb), ("first_bucket_mb", first_bucket_mb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}={value!r} must be a number of MiB > 0")
        key = (float(bucket_mb), float(first_bucket_mb))
        bounds = self._buckets.get(key)
        if bounds is None:
            sizes = [p.numel() for p in self.model.parameters() if p.requires_grad]
            element = self.replica.flat.element_size()
            bounds = bucket_bounds(sizes, key[0] * MIB, key[1] * MIB, element)
            self._buckets[key] = bounds
        self.gradients += 1
        handles = self._runtime.computed_in_buckets(self, self._gradient, bounds)
        return GradientBuckets([Bucket(a, b, h) for (a, b), h in zip(bounds, handles)])

    def _gradient(self, replica: Replica) -> tuple[torch.Tensor, int, float]:
        """One gradient on ``replica`` (this worker's, or the copy a backend computes on)."""
        grads, samples, loss = replica.compute_gradients(
            self._batches, self._objective, self._accumulate
        )
        self.last_loss = loss
        return grads, samples, loss

    def collect_experience(self) -> Handle[torch.Tensor]:
        """Act in this worker's environments with the parameters as they are at this call
        and return the experience (a reinforcement-learning workload's rollout: observations,
        actions, rewards, episode ends and the behaviour policy's log-probabilities, packed
        into one flat tensor a program can send as it is). It takes the actor's part of a
        step's compute time (environment steps and forward passes); no sample counts here:
        experience counts where a gradient computed from it is applied."""
        source = self._need_experience("collect_experience")
        self.gradients += 1

        def work(replica: Replica) -> tuple[torch.Tensor, int, float]:
            return source.collect(replica.model, self._batches), 0, math.nan

        return self._runtime.computed(self, work, source.actor_share, "collect_experience")

    def compute_gradients_from(
        self, experiences: torch.Tensor | list[torch.Tensor], **options: Any
    ) -> Handle[torch.Tensor]:
        """The gradient of the workload's loss on experience collected elsewhere (one packed
        tensor of :meth:`collect_experience`'s, or a list of them, batched), from this worker's
        parameters as they are at this call; ``options`` go to the workload's loss (e.g.
        ``correction="vtrace"``). It takes the learner's part of a step's compute time, in
        proportion to the environment steps in the batch, and counts those steps as samples."""
        source = self._need_experience("compute_gradients_from")
        batch = [experiences] if isinstance(experiences, torch.Tensor) else list(experiences)
        if not batch or not all(isinstance(e, torch.Tensor) for e in batch):
            raise TypeError(
                "w.compute_gradients_from(experiences): pass a tensor from "
                "w.collect_experience(), or a non-empty list of them"
            )
        steps = sum(source.experience_steps(e) for e in batch)
        share = (1.0 - source.actor_share) * steps / source.rollout_steps
        self.gradients += 1

        def work(replica: Replica) -> tuple[torch.Tensor, int, float]:
            replica.grad.zero_()
            loss, used = source.experience_loss(replica.model, batch, **options)
            loss.backward()
            self.last_loss = loss.item()
            return replica.grad.clone(), used, self.last_loss

        return self._runtime.computed(self, work, share, "compute_gradients_from")

    def experience_numel(self) -> int:
        """Floats in one packed rollout of :meth:`collect_experience` (every worker's is the
        same size), to size a receive for experience before it arrives."""
        return self._need_experience("experience_numel").rollout_numel

    @property
    def rollout_steps(self) -> int:
        """Environment steps in one rollout of :meth:`collect_experience` (the samples a
        learner counts when it learns from it)."""
        return self._need_experience("rollout_steps").rollout_steps

    def _need_experience(self, call: str) -> Experiences:
        if self._experience is None:
            raise TypeError(
                f"w.{call}() needs a reinforcement-learning workload (one that collects "
                "experience, such as cartpole); this run's workload trains on a dataset: "
                "use w.compute_gradients()"
            )
        return self._experience

    def apply(self, grads: torch.Tensor, *, staleness: int = 0, lr_scale: float = 1.0) -> None:
        """One step of the local optimizer with a flat gradient: ``step`` and ``version``
        advance by one."""
        _check_flat(grads, self.numel, "w.apply(grads)")
        self._settle()
        self.replica.apply(grads, lr_scale)
        self._stepped(staleness)

    def parameters(self) -> torch.Tensor:
        """A flat copy of the local parameters."""
        return self.replica.parameters()

    def _own_parameters(self, name: str) -> torch.Tensor:
        return self.replica.flat

    def resume_data(self, gradients: int) -> None:
        """Continue this worker's data where a run that had computed ``gradients`` gradients
        left it (a restart from a checkpoint): the batches before are skipped."""
        resume = getattr(self._batches, "resume", None)
        if resume is not None:  # environments, which cannot be replayed: see the stream
            resume(gradients)
        else:
            for _ in range(gradients * self._accumulate):
                next(self._batches)
        self.gradients = gradients

    def export(self) -> tuple[torch.Tensor, dict[str, float]]:
        """This worker's state for a peer that rejoins: one flat tensor (parameters, then the
        optimizer's buffers) and plain numbers (see :meth:`FlatOptimizer.export`)."""
        if self.replica.optimizer is None:
            return self.replica.parameters(), {}
        return self.replica.optimizer.export()

    def export_numel(self) -> int:
        """The length of :meth:`export`'s tensor (to size a receive for it)."""
        if self.replica.optimizer is None:
            return self.numel
        return self.replica.optimizer.export_numel()

    def restore(
        self,
        flat: torch.Tensor,
        *,
        step: int,
        version: int | None = None,
        numbers: Mapping[str, float] | None = None,
        nbytes: float = 0.0,
    ) -> None:
        """Take a peer's (or a checkpoint's) :meth:`export`: parameters, optimizer state and
        ``step``; the rank counts again as an owner of the global model from that step.
        ``nbytes``: what was received for it (the run's ``heal_bytes``)."""
        if self.replica.optimizer is None:
            self.replica.load(flat[: self.numel])
        else:
            self.replica.optimizer.restore(flat, numbers or {})
        self.step = int(step)
        self.version = int(step if version is None else version)
        self._runtime.restored(self, nbytes)

    def load_parameters(self, flat: torch.Tensor, version: int | None = None) -> None:
        """Replace the local parameters (e.g. pulled from a server or averaged). Not a step;
        ``version`` tags them (left unchanged if not given)."""
        _check_flat(flat, self.numel, "w.load_parameters(flat)")
        self.replica.load(flat)
        if version is not None:
            self.version = int(version)


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
        index: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(rank, world_size, comm, runtime, workers, servers, **kwargs)
        self.index = servers.index(rank) if index is None else index
        self.shard = shard
        self.bounds = bounds

    @property
    def numel(self) -> int:
        return self.bounds[1] - self.bounds[0]

    def parameters(self) -> torch.Tensor:
        """A copy of this server's parameter shard."""
        return self.shard.param.detach().clone()

    def apply(self, grads: torch.Tensor, *, staleness: int = 0, lr_scale: float = 1.0) -> None:
        """Step this shard's optimizer: ``step`` and ``version`` advance by one."""
        _check_flat(grads, self.numel, "s.apply(grads)")
        self._settle()
        self.shard.step(grads, lr_scale)
        self._stepped(staleness)


def _read_only(
    host_graph: Mapping[int, tuple[int, ...]] | None,
) -> Mapping[int, tuple[int, ...]] | None:
    """``host_graph`` as a read-only mapping that every rank may share: a dict is viewed,
    not copied (a copy per rank is O(n^2) for the run); any other mapping is read-only by
    its protocol and kept as is (a topology's lazily computed host graph stays lazy).

    Examples
    --------
    >>> view = _read_only({0: (1,), 1: (0,)})
    >>> view[1], type(view).__name__
    ((0,), 'mappingproxy')
    """
    if host_graph is None or isinstance(host_graph, MappingProxyType):
        return host_graph
    if isinstance(host_graph, MutableMapping):
        return MappingProxyType(host_graph)
    return host_graph


def _check_flat(tensor: Any, numel: int, call: str) -> None:
    not_a_handle(tensor, call)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{call} takes a flat torch.Tensor, got {type(tensor).__name__}")
    if tensor.numel() != numel:
        raise ValueError(
            f"{call} got {tensor.numel()} values for {numel} parameters; pass a flat tensor "
            "of the model's size"
        )
