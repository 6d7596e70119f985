"""Actor-learner (IMPALA, Espeholt et al. 2018): actors move *experience*, not gradients.

The first ``learners`` workers learn, the others act. An actor loops: collect a rollout of its
own environments with the last parameters it received, send it to its learner (actors are
dealt to learners round-robin) tagged with the parameter version that acted, and take new
parameters whenever they have arrived; it never waits for them (it starts from the same
initial parameters as every worker, version 0). A learner keeps a receive posted for each of
its actors; it waits until ``batch`` rollouts have arrived, learns from *all* that arrived
(the gradient of the V-trace-corrected actor-critic loss, or plain A2C with
``correction="none"``), steps, and every ``broadcast_every`` steps sends its parameters to its
actors. Several learners all-reduce (mean) their gradients each step, so they stay equal.

Policy lag: a rollout acted with version ``v`` and learnt at the learner's version ``V`` is
``V - v`` versions old; a step's staleness is its batch's largest lag (the ledger's
``staleness``), and ``policy_lag`` logs each step's mean.

Backpressure: a learner receives one rollout from each actor at a time, and sends from rank
to rank are rendezvous, so an actor whose last rollout the learner has not yet taken waits on
its send (IMPALA's bounded queue). A learner never waits on its actors: a broadcast to an
actor whose previous one is still undelivered is skipped (it would arrive after the newer
one the actor is about to get anyway). When the run stops, actors waiting on a send are
closed at that ``yield``, as every program is.

Faults (see docs/faults.md): actors are IMPALA's asynchronous workers, and a learner carries
on without a crashed one, as an asynchronous parameter server does: its receive from the
actor fails once the crash is detected, the learner learns from the others' rollouts, stops
sending it parameters, and looks for its return every ``IDLE_POLL`` seconds. A restarted
actor (``w.rejoined``) asks for the parameters first (a rollout of zeros tagged
:data:`~strategies.parameter_server.JOIN`, which no learner learns from, answered at once
with the learner's parameters), then acts with them. With ``fault_tolerance="quorum"`` and
several learners, the learners' all-reduce is over a quorum of the live learners each step
(``w.quorum(ranks=...)``, as ``AllReduceSGD``'s): a step whose all-reduce fails is dropped
(its rollouts lost), a restarted learner is healed from a live one, and a crashed learner's
actors keep their rollout and offer it again every ``IDLE_POLL`` seconds until their learner
is back. A single learner's crash ends the run, unless the faults' ``recovery="restart"``
restarts every rank from a checkpoint. An actor's crash loses the one rollout it held
(``w.hold``): the one it was collecting or offering, which no learner received.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated, Any

import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.base import Program, Strategy
from strategies.checks import Group, PeerFailure
from strategies.context import WorkerContext
from strategies.fields import FaultToleranceIfSet
from strategies.handles import Handle
from strategies.membership import heal
from strategies.messages import Received
from strategies.parameter_server import IDLE_POLL, JOIN
from strategies.registry import register

__all__ = ["ActorLearner", "CORRECTIONS"]

#: How a learner treats experience of a lagging policy (``workloads.reinforcement``'s list:
#: this package does not import the workloads).
CORRECTIONS = ("vtrace", "none")


@register
class ActorLearner(Strategy):
    """Actors collect rollouts and send them to learners, which learn and broadcast back.

    Parameters
    ----------
    learners
        How many of the first workers learn (the rest act; every learner needs an actor).
    correction
        ``"vtrace"``: V-trace's clipped importance weights correct for the policy lag;
        ``"none"``: plain A2C (GAE) on the lagging experience, as though it were on-policy.
    batch
        Rollouts a learner waits for before a step; it then learns from all that arrived.
    broadcast_every
        A learner sends its parameters to its actors every this many of its steps.
    rho_bar, c_bar
        V-trace's clipping thresholds of the importance weights (the paper's 1 and 1).
    fault_tolerance
        ``"quorum"`` (with ``learners >= 2``): the learners all-reduce over a quorum of the
        live ones each step, so they carry on without a crashed learner (see the module
        docstring). ``None``: a learner's crash ends the run. A crashed actor never does.

    Only reinforcement-learning workloads (those that collect experience: ``cartpole``,
    ``acrobot``) can run it; others are refused at the first call.

    Examples
    --------
    >>> ActorLearner(broadcast_every=4)
    ActorLearner(learners=1, correction='vtrace', batch=1, broadcast_every=4, rho_bar=1.0, c_bar=1.0)
    >>> ActorLearner(correction="retrace")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: correction='retrace' is unknown; use one of vtrace, none
    >>> ActorLearner(learners=2).check_world(3)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: learners=2 leaves 1 actor among 3 ranks, and every learner needs one; use learners <= 1
    >>> ActorLearner().actors_of(0, 5), ActorLearner(learners=2).actors_of(1, 5)
    ([1, 2, 3, 4], [3])
    >>> ActorLearner(fault_tolerance="quorum")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: fault_tolerance='quorum' lets the other learners carry on without a crashed one, and learners=1 has none; use learners >= 2, or the faults' recovery='restart'
    """

    name = "impala"
    # The learners hold equal parameters (one learner, or several that all-reduce their
    # gradients): the first learner's is the global model, its steps the run's.
    global_model = "primary"
    # A learner logs its step's policy lag right after applying it: the last step's too.
    logs_with_steps = True

    learners: Annotated[int, Field(ge=1, description="the first workers, which learn")] = 1
    correction: Annotated[str, OneOf(CORRECTIONS)] = "vtrace"
    batch: Annotated[int, Field(ge=1, description="rollouts a learner waits for")] = 1
    broadcast_every: Annotated[
        int, Field(ge=1, description="learner steps between broadcasts to the actors")
    ] = 1
    rho_bar: Annotated[
        float, Field(gt=0, allow_inf_nan=False, description="V-trace's clip of the weights")
    ] = 1.0
    c_bar: Annotated[
        float, Field(gt=0, allow_inf_nan=False, description="V-trace's clip of the traces")
    ] = 1.0
    fault_tolerance: FaultToleranceIfSet = None

    def __post_init__(self) -> None:
        if self.fault_tolerance is not None and self.learners < 2:
            raise OptionError(
                f"fault_tolerance={self.fault_tolerance!r} lets the other learners carry on "
                f"without a crashed one, and learners={self.learners} has none; use "
                "learners >= 2, or the faults' recovery='restart'",
                "fault_tolerance",
            )

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        actors = world_size - self.learners
        if world_size < 2:
            raise OptionError(
                f"impala needs a learner and an actor, at least 2 ranks; the world has "
                f"{world_size}",
                "learners",
            )
        if actors < self.learners:
            noun = "actor" if actors == 1 else "actors"
            raise OptionError(
                f"learners={self.learners} leaves {max(actors, 0)} {noun} among {world_size} "
                f"ranks, and every learner needs one; use learners <= {world_size // 2}",
                "learners",
            )

    def check_real_faults(self, schedule: Any, world_size: int) -> None:
        """A one-line :class:`OptionError` for the faults the real backend cannot give this
        strategy: the learners' quorum is not built there, nor a learner's restart (a new
        process has no world process group, and only actors' links to it are built: a
        restarted actor asks its learner for the parameters over a gloo group of the pair,
        :mod:`real.transport.links`). A crashed actor that stays down or comes back runs."""
        if self.fault_tolerance is not None:
            raise OptionError(
                f"fault_tolerance={self.fault_tolerance!r} is not built on the real backend yet "
                "(a learner's actors would need links to its restarted process); run it with sim",
                "fault_tolerance",
            )
        back = [r for r in range(min(self.learners, world_size)) if schedule.has_restart(r)]
        if back:
            raise OptionError(
                f"faults: impala's learner rank {back[0]} comes back, and on the real backend "
                "only a restarted actor rejoins (a learner's model and the learners' group are "
                "not rebuilt); restart only actors, drop its restart, or run it with sim",
                "faults",
            )

    def replicas(self, world_size: int) -> list[int]:
        """The learners: they hold the model (actors only act with copies of it)."""
        return self.workers(world_size)[: self.learners]

    def actors_of(self, learner: int, n_workers: int) -> list[int]:
        """The actors (worker indices) that send to learner ``learner`` (a worker index
        below ``learners``): actors are dealt round-robin."""
        return list(range(self.learners + learner, n_workers, self.learners))

    def learner_of(self, actor: int) -> int:
        """The learner (a worker index) that actor ``actor`` (a worker index) sends to."""
        return (actor - self.learners) % self.learners

    # -- programs ---------------------------------------------------------------------------
    def worker(self, w: WorkerContext) -> Program:
        try:
            w.experience_numel()
        except TypeError:
            raise TypeError(
                "strategy impala moves experience between actors and learners: it needs a "
                "reinforcement-learning workload (cartpole, acrobot); this run's trains on a "
                "dataset: choose another strategy (allreduce, parameter_server, ...)"
            ) from None
        # Every rank makes every group, in the same order, actors included.
        group = w.comm.new_group(w.workers[: self.learners]) if self.learners > 1 else None
        if w.index < self.learners:
            yield from self._learner(w, group)
        else:
            yield from self._actor(w)

    def _actor(self, w: WorkerContext) -> Program:
        learner = w.workers[self.learner_of(w.index)]
        dtype = w.replica.flat.dtype
        incoming = w.comm.recv(torch.empty(w.numel, dtype=dtype), src=learner)
        if w.rejoined:  # a new process: the learner's parameters first, asked for
            ask = torch.zeros(w.experience_numel(), dtype=dtype)
            yield from self._offer(w, ask, learner, JOIN)
            message = yield incoming
            w.load_parameters(message.tensors[0], int(message.header["version"]))
            incoming = w.comm.recv(torch.empty(w.numel, dtype=dtype), src=learner)
        # From its first rollout on, an actor holds one that no learner has received: the one
        # it collects, or offers (a send is rendezvous, and it offers one at a time). Its
        # crash loses it (lost_samples); a learner counts a rollout once it learns from it.
        w.hold(w.rollout_steps)
        while not w.done:
            if incoming.done and incoming.failed:  # the learner crashed: hear from it again
                incoming = w.comm.recv(torch.empty(w.numel, dtype=dtype), src=learner)
            if incoming.done:  # new parameters arrived: act with them from now on
                message = yield incoming
                w.load_parameters(message.tensors[0], int(message.header["version"]))
                incoming = w.comm.recv(torch.empty(w.numel, dtype=dtype), src=learner)
            acting = w.version
            rollout = yield w.collect_experience()
            yield from self._offer(w, rollout, learner, acting)

    def _offer(
        self, w: WorkerContext, rollout: torch.Tensor, learner: int, version: int
    ) -> Program:
        """A sub-program: send ``rollout`` (tagged ``version``) to ``learner``; with
        ``fault_tolerance``, while the learner is down, offered again every ``IDLE_POLL``
        seconds (a restarted learner takes it)."""
        while True:
            try:
                yield w.comm.send(rollout, dst=learner, header={"version": version})
                return
            except PeerFailure as failure:
                if self.fault_tolerance is None or learner not in failure.ranks or w.done:
                    raise
            yield w.sleep(IDLE_POLL)

    def _learner(self, w: WorkerContext, group: Group | None) -> Program:
        actors = [w.workers[r] for r in self.actors_of(w.index, len(w.workers))]
        learners = w.workers[: self.learners]
        numel = w.experience_numel()
        pending = {a: w.comm.recv(torch.empty(numel), src=a) for a in actors}
        broadcasts: dict[int, Handle[None]] = {}
        arrived: list[Received] = []
        options = {"correction": self.correction, "rho_bar": self.rho_bar, "c_bar": self.c_bar}
        while not w.done:
            arrived += yield from self._rollouts(w, actors, pending, broadcasts, len(arrived))
            if self.fault_tolerance is None:
                lags = [w.version - int(message.header["version"]) for message in arrived]
                rollouts = [m.tensors[0] for m in arrived]
                grads = yield w.compute_gradients_from(rollouts, **options)
                arrived = []
                if group is not None:
                    grads = yield w.comm.all_reduce(grads, op="mean", group=group)
            else:
                quorum = yield w.quorum(ranks=learners)
                try:
                    yield from heal(w, quorum)  # a restarted learner takes a live one's state
                    lags = [w.version - int(message.header["version"]) for message in arrived]
                    rollouts = [m.tensors[0] for m in arrived]
                    arrived = []
                    grads = yield w.compute_gradients_from(rollouts, **options)
                    grads = yield w.comm.all_reduce(grads, op="mean", group=quorum.group)
                except PeerFailure:
                    w.lose(steps=1)  # the round failed on every member: its rollouts are lost
                    continue
            w.apply(grads, staleness=max(lags))
            skipped = 0
            if w.step % self.broadcast_every == 0 and not w.done:
                parameters = w.parameters()
                for actor in actors:
                    if pending[actor].failed:  # crashed: it asks when it is back
                        continue
                    previous = broadcasts.get(actor)
                    if previous is None or previous.done:
                        broadcasts[actor] = w.comm.send(
                            parameters, dst=actor, header={"version": w.version}
                        )
                    else:  # the actor has not taken the last one yet: it gets the next
                        skipped += 1
            stats = {"policy_lag": sum(lags) / len(lags), "rollouts": len(lags)}
            w.log(**stats, **({"skipped_broadcasts": skipped} if skipped else {}))

    def _rollouts(
        self,
        w: WorkerContext,
        actors: list[int],
        pending: dict[int, Handle[Received]],
        broadcasts: dict[int, Handle[None]],
        have: int,
    ) -> Generator[Handle[Any], Any, list[Received]]:
        """A sub-program: the rollouts that have arrived, waiting until there are ``batch``
        with the ``have`` the learner holds. An actor whose receive failed (it crashed) is
        not waited for; while one is down, its receive is posted again at each step and every
        ``IDLE_POLL`` seconds of waiting, to hear its return (a request for the parameters,
        answered at once)."""
        numel = w.experience_numel()
        _look_again(w, pending, numel)
        taken = self._arrived(w, pending, broadcasts, numel)
        while have + len(taken) < self.batch:
            live = [a for a in actors if not pending[a].failed]
            waits: list[Handle[Any]] = [pending[a] for a in live]
            if len(live) < len(actors):
                waits.append(w.sleep(IDLE_POLL))
            try:
                index, message = yield w.comm.wait_any(waits)
            except PeerFailure:
                continue  # an actor crashed: its receive says so (failed)
            if index == len(live):
                _look_again(w, pending, numel)
                continue
            src = live[index]
            pending[src] = w.comm.recv(torch.empty(numel), src=src)
            taken += self._answered(w, message, broadcasts)
            taken += self._arrived(w, pending, broadcasts, numel)
        return taken

    def _arrived(
        self,
        w: WorkerContext,
        pending: dict[int, Handle[Received]],
        broadcasts: dict[int, Handle[None]],
        numel: int,
    ) -> list[Received]:
        """The rollouts that have arrived (in actor order), each actor's receive posted again."""
        taken = []
        for src, handle in pending.items():
            if handle.done and not handle.failed:
                taken += self._answered(w, handle.value, broadcasts)
                pending[src] = w.comm.recv(torch.empty(numel), src=src)
        return taken

    def _answered(
        self, w: WorkerContext, message: Received, broadcasts: dict[int, Handle[None]]
    ) -> list[Received]:
        """``[message]``, or, for a restarted actor's request (:data:`JOIN`), none: it is
        sent the learner's parameters at once."""
        if int(message.header["version"]) != JOIN:
            return [message]
        broadcasts[message.src] = w.comm.send(
            w.parameters(), dst=message.src, header={"version": w.version}
        )
        return []


def _look_again(w: WorkerContext, pending: dict[int, Handle[Received]], numel: int) -> None:
    """Post again the receives of the actors that were down (one still down fails at once)."""
    for a, handle in pending.items():
        if handle.failed:
            pending[a] = w.comm.recv(torch.empty(numel), src=a)
