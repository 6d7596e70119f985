"""The ledger: the one place that owns a run's progress, in both backends.

A backend reports typed *events* to the ledger (:mod:`strategies.events`: a gradient
computed, an optimizer step applied, a state settled, a value logged, bytes sent) through
:meth:`Ledger.record`, and never counts steps or builds result rows itself. The ledger owns:

* the **global step**: optimizer steps of the model that is evaluated. A strategy declares
  what that model is (:data:`GLOBAL_MODELS`): ``"primary"`` (one rank's replica, when all
  replicas are equal by construction), ``"servers"`` (the concatenated shards of the server
  ranks) or ``"average"`` (the mean of the workers' replicas). Its *owners* are the ranks
  whose state makes it; global step ``k`` exists once every owner has applied ``k`` optimizer
  steps (:mod:`strategies.owners`). Loading parameters is never a step;
* the **state of a step**: an owner's state at step ``k`` is its parameters when it is about
  to apply step ``k + 1`` (the communication that follows a step -- averaging, mixing, an
  outer optimizer step -- belongs to it), except for the run's last step, whose state is taken
  when it is applied (the run stops there). Evaluating step ``k`` waits until every owner's
  state at ``k`` is known;
* the **consensus distance** of a global model that is an average: the mean squared distance
  of the owners' states to their mean, recorded with each evaluation;
* the stop conditions (``steps``, a target: ``target_loss``, ``target_return``, a level of the
  workload's metric, :mod:`runs.metric`; the backends stop the clock on a time budget and
  tell the ledger), and the evaluation points: the rules in
  :class:`strategies.rules.RunRules`, which real ranks also follow live;
* staleness of each step's update, the counters (samples of applied gradients,
  :mod:`strategies.counts`; bytes) and every metrics row, built with :func:`runs.schema.row`.

The simulator feeds the ledger live. The real backend records each rank's events with wall
times and replays them into a ledger after the run, in time order (with ``clock=None`` the
ledger's time is the last event's). The same code therefore decides the step count, the
evaluation points and the rows of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from runs.metric import LOSS, Metric, Target
from runs.schema import row
from strategies.aggregate import reduce_tensors
from strategies.counts import SampleCounts
from strategies.evaluations import Evaluations
from strategies.events import (
    Checkpointed,
    Computed,
    Crashed,
    Event,
    Held,
    Logged,
    Lost,
    Restarted,
    Restored,
    Sent,
    Settled,
    Stepped,
)
from strategies.owners import OwnerStates
from strategies.recovery import FAULT_ROW, FaultTally, record_fault
from strategies.rules import RunawayError, RunRules, check_runaway, is_eval_step, runaway_limit

__all__ = [
    "GLOBAL_MODELS",
    "Ledger",
    "RunawayError",
    "check_runaway",
    "consensus_distance",
    "is_eval_step",
]

#: What a strategy may declare as its global model.
GLOBAL_MODELS = ("primary", "servers", "average")


def consensus_distance(states: Sequence[torch.Tensor]) -> float:
    """Mean squared Euclidean distance of the states to their average (0 when all agree).

    Computed in float64, so replicas that agree give exactly 0 (a float32 mean of equal
    vectors can be off by a rounding).

    Examples
    --------
    >>> consensus_distance([torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])])
    1.0
    >>> consensus_distance([torch.full((3,), 0.1)] * 16)
    0.0
    """
    if any(s.is_meta for s in states):  # a timing-only run's states: shapes, no numbers
        return math.nan
    wide = [s.double() for s in states]
    mean = reduce_tensors(wide, "mean")
    return float(sum(float((s - mean).pow(2).sum()) for s in wide) / len(wide))


class Ledger:
    """Progress of one run: global step, stop, staleness, evaluation points, rows.

    Parameters
    ----------
    owners
        Ranks whose state makes the global model, in the order their states combine.
    combine
        ``"one"`` (the single owner's state), ``"concat"`` (shards) or ``"mean"`` (replicas).
    steps, eval_every, target
        The stop conditions and evaluation period, as given to ``sim.run``/``real.run``
        (``target``: :func:`runs.metric.check_target`'s; ``target_loss``: a loss target, the
        same as ``Target(LOSS, target_loss)``).
    metric
        The workload's metric (:func:`runs.metric.metric_of`): what the summary reports.
    evaluate
        Held-out metrics (``{"loss": ..., ...}``, ``{"return": ...}``) of flat global
        parameters; None makes no evaluation rows (a timing-only run, which has no numbers).
    clock, bytes_sent
        The backend's time and bytes sent so far (``None``: the recorded events').
    on_step, on_eval
        Observers: each new global step (progress bars), the rows after each evaluation.

    Examples
    --------
    Two shards; the global step advances once both have applied it:

    >>> ledger = Ledger([0, 1], "concat", steps=2, eval_every=1,
    ...                 evaluate=lambda p: {"loss": float(p.sum())})
    >>> ledger.start({0: torch.ones(1), 1: torch.ones(1)})
    >>> ledger.record(Stepped(0.1, 0, 0, torch.zeros(1))); ledger.step
    0
    >>> ledger.record(Stepped(0.2, 1, 0, torch.zeros(1))); ledger.step
    1
    >>> [(r["kind"], r["step"], r["time"]) for r in ledger.rows]
    [('eval', 0, 0.0), ('step', 1, 0.2)]

    Step 1 is evaluated once both owners' states at step 1 are final: when each is about to
    apply step 2 (here the shards were averaged to 0.5 in between):

    >>> ledger.record(Settled(0.3, 0, torch.full((1,), 0.5)))
    >>> ledger.record(Settled(0.3, 1, torch.full((1,), 0.5)))
    >>> [(r["kind"], r["step"], r.get("loss")) for r in ledger.rows][-1]
    ('eval', 1, 1.0)
    """

    def __init__(
        self,
        owners: Sequence[int],
        combine: str,
        *,
        steps: int,
        eval_every: int,
        evaluate: Callable[[torch.Tensor], dict[str, float]] | None,
        clock: Callable[[], float] | None = None,
        bytes_sent: Callable[[], float] | None = None,
        target_loss: float | None = None,
        on_step: Callable[[int], None] | None = None,
        on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
        target: Target | None = None,
        metric: Metric = LOSS,
    ) -> None:
        if target_loss is not None:
            if target is not None:
                raise ValueError("give the ledger target or target_loss, not both")
            target = Target(LOSS, target_loss)
        self._owners = OwnerStates(owners, combine)
        self.owners = self._owners.owners
        self.owner_set = frozenset(self.owners)
        self.combine = combine
        self.rules = RunRules(steps, eval_every, tuple(self.owners))
        self.steps = steps
        self.eval_every = eval_every
        self.metric = metric
        #: The run's target (None: none), and its level when it is a loss (as it always was).
        self.target = target
        self.target_loss = (
            target.value if target is not None and target.key == "target_loss" else None
        )
        self._now, self._sent = 0.0, 0.0
        self._clock = clock if clock is not None else (lambda: self._now)
        self._bytes = bytes_sent if bytes_sent is not None else (lambda: self._sent)
        self._on_step = on_step
        self.step = 0
        self.counts = SampleCounts()
        self.faults = FaultTally()
        #: Whether the run had a fault schedule (its summary then counts what faults cost).
        self.with_faults = False
        #: Whether a rank's log right after its step belongs to that step
        #: (``Strategy.logs_with_steps``): the rank whose step stopped the run has its next
        #: event kept if it is a log, as has each rank that applies the same step after the
        #: stop (several learners), :meth:`record`.
        self.logs_with_steps = False
        self._step_logs: set[int] = set()  # ranks whose next event, a log, is kept
        self.rows: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self._cut: set[int] = set()  # live ranks a partition keeps out of the quorums
        self._staleness: dict[int, float] = {}
        self._evals = Evaluations(
            self._owners,
            evaluate,
            consensus_distance if combine == "mean" else None,
            target,
            self.rows,
            lambda kind, values, k: self._row(kind, values, at_step=k),
            self.stop,
            lambda: self.stop_reason is not None,
            on_eval,
        )
        self._runaway = runaway_limit(steps)
        #: Whether the run evaluates its global model (a timing-only run does not).
        self.evaluates = evaluate is not None

    # -- what the backends report ---------------------------------------------------------------
    def record(self, event: Event) -> None:
        """The one entry point for what happened: ``sim`` calls it live, ``real``'s replay in
        time order. After the stop only gradients are counted (as discarded work)."""
        if isinstance(event, Computed):
            if self.stop_reason is None:
                self._now = event.at
            self.computed(event.rank, event.samples)
            return
        if self.stop_reason is not None:
            if event.rank in self._step_logs:  # its step's log, if that is what comes next
                self._step_logs.discard(event.rank)
                if isinstance(event, Logged):
                    self.rows.append(self._log_row(event.rank, event.values))
            elif self.logs_with_steps and isinstance(event, Stepped):
                if self.counts.steps_of(event.rank) + 1 == self.step:  # the stop's step
                    self._step_logs.add(event.rank)
            return
        self._now = event.at
        if isinstance(event, Stepped):
            self.rank_stepped(event.rank)
            self.stepped(event.rank, event.staleness, event.state)  # (owners only)
        elif isinstance(event, Settled):
            self.settled(event.rank, event.state)
        elif isinstance(event, Logged):
            self.logged(event.rank, event.values)
        elif isinstance(event, Sent):
            self._sent += event.nbytes
        elif isinstance(event, Checkpointed):
            self.faults.checkpointed(event.step, event.seconds)
        elif isinstance(event, Held):
            self.counts.hold(event.rank, event.samples)
        else:
            self._fault(event)

    def _fault(self, event: Crashed | Restarted | Restored | Lost) -> None:
        """A crash, a restart, a rank restored to a step, or work lost: counted by
        :func:`strategies.recovery.record_fault`, and a ``fault`` row."""
        if isinstance(event, Restored) and event.rank in self._cut:
            # A rank cut off rolling itself back (a failed round): it stays out of the
            # global model until a quorum admits it again and heals it.
            self.counts.restored(event.rank, event.step)
            self.faults.heal_bytes += event.nbytes
        else:
            record_fault(event, self.faults, self.counts, self._owners, self.combine)
        self._row_fault(event.rank, FAULT_ROW[event.kind])
        if isinstance(event, Crashed):
            self._cut.discard(event.rank)  # a restarted rank is healed back as one
            self._catch_up()  # the global step no longer waits for it

    def fault(self, event: str, rank: int = -1, at: float | None = None) -> None:
        """A fault the backend applied that no rank reports (a link going down, a slowed
        rank), as a ``fault`` row; ``at``: its time, where the ledger's clock is not it (a
        real run's replay, between two ranks' events)."""
        if self.stop_reason is None:
            self._row_fault(rank, event, at)

    def cut(self, rank: int, out: bool, at: float) -> None:
        """A live ``rank`` that a partition cut off from the quorums (``out``; ``at``: when
        the links went down), or that a quorum admitted again: counted as a crash and as a
        restart (its replica leaves the global model, and the stop no longer waits for it;
        it is back once healed), with a ``cut_off`` or ``reconnect`` row."""
        if self.stop_reason is not None:
            return
        event: Crashed | Restarted = Crashed(at, rank) if out else Restarted(at, rank)
        if out:
            self._cut.add(rank)
        else:
            self._cut.discard(rank)
        record_fault(event, self.faults, self.counts, self._owners, self.combine)
        self._row_fault(rank, "cut_off" if out else "reconnect")
        if out:
            self._catch_up()

    def _row_fault(self, rank: int, event: str, at: float | None = None) -> None:
        self.rows.append(self._row("fault", {"rank": rank, "event": event}, at=at))

    def rewind(self, step: int, states: dict[int, Any], counts: dict[str, Any]) -> None:
        """Every rank restarted from the checkpoint of global step ``step`` (``states``: the
        owners' states in it, ``counts``: :meth:`SampleCounts.snapshot` then): the steps
        since are lost, and run again."""
        if self.stop_reason is not None:
            return
        self.faults.lost_steps += self.step - step
        self.faults.lost_samples += self.counts.rewind(counts)
        self.faults.rewound()
        self.step = step
        self._owners.reset(states, step)
        self._evals.rewind(step)
        self._staleness = {k: v for k, v in self._staleness.items() if k <= step}

    @property
    def live_owners(self) -> list[int]:
        """The owners whose states make the global model now (crashed ones have left)."""
        return self._owners.live

    def start(self, states: dict[int, Any]) -> None:
        """Every owner's state before any step; evaluates step 0."""
        self._owners.start(states)
        self._evals.now(0)

    def computed(self, rank: int, samples: int) -> None:
        """A gradient over ``samples`` examples finished on ``rank`` (after the stop: lost)."""
        if self.stop_reason is None:
            self.counts.computed(rank, samples)
        else:
            self.counts.late(samples)

    def rank_stepped(self, rank: int, rank_steps: int | None = None) -> None:
        """Any rank applied an optimizer step: what it computed is committed, and the
        runaway guard (a global model that never advances) checks its count."""
        if self.stop_reason is not None:
            return
        counted = self.counts.stepped(rank)
        rank_steps = counted if rank_steps is None else rank_steps
        if rank_steps > self._runaway:
            self.rules.check_runaway(rank, rank_steps)

    def stepped(self, rank: int, staleness: float, state: Any) -> None:
        """Owner ``rank`` applied one optimizer step; ``state`` is its parameters now (see
        :mod:`strategies.events`)."""
        owners = self._owners
        if self.stop_reason is not None or rank not in owners.counts:  # (not a live owner)
            return
        k = owners.stepped(rank, state)
        if rank == owners.live[0]:
            self._staleness[k] = float(staleness)
        if self.rules.snapshot_when_applied(k):  # the last step: no step follows to settle it
            owners.keep(rank, k, state)
        self._catch_up()
        if self.stop_reason is not None and self.logs_with_steps:
            self._step_logs.add(rank)

    def _catch_up(self) -> None:
        """Advance the global step to the slowest live owner's count."""
        slowest = self._owners.slowest
        while self.step < slowest and self.stop_reason is None:
            self._advance()

    def settled(self, rank: int, state: Any) -> None:
        """Owner ``rank`` is about to apply its next step: ``state`` is final for the step it
        applied last."""
        if self.stop_reason is not None or rank not in self._owners.counts:
            return
        if not self.evaluates:  # states are kept for evaluations only (a copy per step)
            return
        k = self._owners.counts[rank]
        if self.rules.snapshot_when_applied(k):  # the last step's was taken when applied
            return
        if k >= self.step:  # still needed: the global step has not passed it
            self._owners.keep(rank, k, state)
            self._evals.settle()

    def logged(self, rank: int, values: dict[str, float]) -> None:
        """A strategy logged named values on ``rank``."""
        if self.stop_reason is None:
            self.rows.append(self._log_row(rank, values))

    def _log_row(self, rank: int, values: dict[str, float]) -> dict[str, Any]:
        return self._row("log", {"rank": rank, **{k: float(v) for k, v in values.items()}})

    def rank_times(
        self,
        rank: int,
        *times: float,
        role: str,
        at: float | None = None,
        overlap: float | None = None,
    ) -> None:
        """One rank's compute, comm and idle time and its ``role`` (``"worker"``,
        ``"server"``), recorded once at the end (``at``: when the rank ended, if not now).
        ``comm_time`` is the exposed communication (the rank computed nothing meanwhile);
        ``overlap``, when given, is the communication that moved while it computed
        (``overlap_time``: :mod:`runs.overlap`)."""
        values = dict(zip(("compute_time", "comm_time", "idle_time"), times, strict=True))
        if overlap is not None:
            values["overlap_time"] = overlap
        self.rows.append(self._row("rank", {"rank": rank, "role": role, **values}, at=at))

    def stop(self, reason: str) -> None:
        """Stop the run (the first reason wins)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def finish(self, reason: str, states: dict[int, Any] | None = None) -> None:
        """End of the run: stop with ``reason`` unless stopped already, and evaluate the global
        model at the last global step if that step was not evaluated yet. ``states``, given
        when the programs ended by themselves, are the owners' final states: the model the
        run ends with is then theirs, whatever step each owner reached."""
        self.stop(reason)
        if states:
            self._owners.ended(states, self.step)
        self._evals.close(self.step)

    # -- what the backends ask --------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    @property
    def samples(self) -> float:
        """Samples of the gradients applied up to the current global step
        (:mod:`strategies.counts`)."""
        return self.counts.at(self.step)

    @property
    def discarded_samples(self) -> float:
        """Samples computed but not in :attr:`samples` (after the stop, or past the global
        step)."""
        return self.counts.discarded(self.samples)

    def now(self) -> float:
        """The ledger's time: the backend's clock, or the last event's (frozen at the stop)."""
        return self._clock()

    def bytes_sent(self) -> float:
        """Bytes sent so far: the backend's count, or the recorded events' (frozen at the stop)."""
        return self._bytes()

    def global_parameters(self) -> torch.Tensor | None:
        """The global model's flat parameters at the current global step (``None`` if an
        owner's state at that step was not recorded)."""
        return self._owners.combined(self.step)

    @property
    def target_reached(self) -> dict[str, float] | None:
        """The time, step, samples and bytes of the first evaluation that reached the
        target."""
        return self._evals.target_reached

    # -- inside ---------------------------------------------------------------------------------
    def _advance(self) -> None:
        self.step += 1
        k = self.step
        self.faults.progressed(self._clock())
        self._owners.forget(self._evals.oldest_needed(k))
        self.counts.forget(k)
        self.rows.append(self._row("step", {"staleness": self._staleness.pop(k, float("nan"))}))
        if self._on_step is not None:
            self._on_step(k)
        if self.rules.is_eval_step(k) and not self.rules.is_last(k):
            stamp = {"time": self._clock(), "samples": self.samples, "nbytes": self._bytes()}
            self._evals.wait_for(k, stamp)
        self._evals.settle()
        if self.rules.is_last(k):
            self._evals.now(k)  # the last step's states were taken when applied
            self.stop("steps")

    def _row(
        self,
        kind: str,
        values: dict[str, Any],
        at_step: int | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        # ``values`` is a dict, not keywords: a strategy's log names must not reach ``at_step``.
        return row(
            kind,
            time=self._clock() if at is None else at,
            step=self.step if at_step is None else at_step,
            samples=self.samples,
            nbytes=self._bytes(),
            **values,
        )
