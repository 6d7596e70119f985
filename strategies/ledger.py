"""The ledger: the one place that owns a run's progress, in both backends.

A backend reports *events* to the ledger (a gradient computed, an optimizer step applied, a
value logged) and never counts steps or builds result rows itself. The ledger owns:

* the **global step**: optimizer steps of the model that is evaluated. A strategy declares
  what that model is (:data:`GLOBAL_MODELS`): ``"primary"`` (one rank's replica, when all
  replicas are equal by construction), ``"servers"`` (the concatenated shards of the server
  ranks) or ``"average"`` (the mean of the workers' replicas). Its *owners* are the ranks
  whose state makes it; global step ``k`` exists once every owner has applied ``k`` optimizer
  steps. Loading parameters is never a step;
* the **state of a step**: an owner's state at step ``k`` is its parameters when it is about
  to apply step ``k + 1`` (the communication that follows a step -- averaging, mixing, an
  outer optimizer step -- belongs to it), except for the run's last step, whose state is taken
  when it is applied (the run stops there). Evaluating step ``k`` waits until every owner's
  state at ``k`` is known;
* the **consensus distance** of a global model that is an average: the mean squared distance
  of the owners' states to their mean, recorded with each evaluation;
* the stop conditions (``steps``, ``target_loss``; the backends stop the clock on a time
  budget and tell the ledger), and the evaluation points (every ``eval_every`` steps, the
  first and the last);
* staleness of each step's update, the counters (samples, bytes) and every metrics row, built
  with :func:`runs.schema.row`.

The simulator feeds the ledger live. The real backend records each rank's events with wall
times and feeds them to a ledger in the launcher after the run, in time order; the stop
condition it needs live comes from :meth:`Ledger.stops_at` through a cross-process signal.
The same code therefore decides the step count, the evaluation points and the rows of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from runs.schema import row
from strategies.aggregate import reduce_tensors

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

#: An owner's parameters: a tensor, ``None`` (not recorded), or a function that returns one
#: (the simulator passes ``ctx.parameters``, so copies are made only when needed).
State = "torch.Tensor | None | Callable[[], torch.Tensor | None]"


def _value(state: Any) -> torch.Tensor | None:
    return state() if callable(state) else state


def is_eval_step(step: int, eval_every: int, steps: int) -> bool:
    """Whether global step ``step`` is an evaluation point (each rank can tell on its own).

    Examples
    --------
    >>> [k for k in range(0, 13) if is_eval_step(k, 5, 12)]
    [0, 5, 10, 12]
    """
    return step % eval_every == 0 or step >= steps


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
    wide = [s.double() for s in states]
    mean = reduce_tensors(wide, "mean")
    return float(sum(float((s - mean).pow(2).sum()) for s in wide) / len(wide))


class RunawayError(RuntimeError):
    """A rank stepped far past what the run can need: a symptom, whose cause (a peer's error,
    an owner that stopped) a backend names first when it has one."""


def check_runaway(rank: int, rank_steps: int, steps: int, owners: Sequence[int]) -> None:
    """Raise if a rank has applied far more optimizer steps than the run can need: the
    strategy's declared global model (its owners) does not match who applies updates, and
    the run would never stop. Both backends call this on every step of every rank.

    Examples
    --------
    >>> check_runaway(0, 1000, 10, [1, 2])
    >>> check_runaway(0, 1101, 10, [1, 2])
    Traceback (most recent call last):
    ...
    strategies.ledger.RunawayError: rank 0 has applied 1101 optimizer steps, far more than the run's 10 global steps need: a global step counts once every owner of the global model (ranks [1, 2]) has applied it, so an owner stopped stepping (its program ended early) or the strategy's global_model ('servers', 'primary', 'average') does not match the ranks that apply updates
    """
    if rank_steps > 10 * steps + 1000:
        raise RunawayError(
            f"rank {rank} has applied {rank_steps} optimizer steps, far more than the run's "
            f"{steps} global steps need: a global step counts once every owner of the global "
            f"model (ranks {list(owners)}) has applied it, so an owner stopped stepping (its "
            "program ended early) or the strategy's global_model ('servers', 'primary', "
            "'average') does not match the ranks that apply updates"
        )


class Ledger:
    """Progress of one run: global step, stop, staleness, evaluation points, rows.

    Parameters
    ----------
    owners
        Ranks whose state makes the global model, in the order their states combine.
    combine
        ``"one"`` (the single owner's state), ``"concat"`` (shards) or ``"mean"`` (replicas).
    steps, eval_every, target_loss
        The stop conditions and evaluation period, as given to ``sim.run``/``real.run``.
    evaluate
        Held-out metrics (``{"loss": ..., ...}``) of flat global parameters.
    clock, bytes_sent
        The backend's current time and bytes injected into the network so far.
    on_step, on_eval
        Optional observers: the new global step (progress bars), the rows after each
        evaluation (incremental saving).

    Examples
    --------
    Two shards; the global step advances once both have applied it:

    >>> t = [0.0]
    >>> ledger = Ledger([0, 1], "concat", steps=2, eval_every=1,
    ...                 evaluate=lambda p: {"loss": float(p.sum())},
    ...                 clock=lambda: t[0], bytes_sent=lambda: 0.0)
    >>> ledger.start({0: torch.ones(1), 1: torch.ones(1)})
    >>> ledger.stepped(0, 0, torch.zeros(1)); ledger.step
    0
    >>> ledger.stepped(1, 0, torch.zeros(1)); ledger.step
    1
    >>> [(r["kind"], r["step"]) for r in ledger.rows]
    [('eval', 0), ('step', 1)]

    Step 1 is evaluated once both owners' states at step 1 are final: when each is about to
    apply step 2 (here the shards were averaged to 0.5 in between):

    >>> ledger.settled(0, torch.full((1,), 0.5)); ledger.settled(1, torch.full((1,), 0.5))
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
        evaluate: Callable[[torch.Tensor], dict[str, float]],
        clock: Callable[[], float],
        bytes_sent: Callable[[], float],
        target_loss: float | None = None,
        on_step: Callable[[int], None] | None = None,
        on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if combine not in ("one", "concat", "mean"):
            raise ValueError(f"combine={combine!r}; use 'one', 'concat' or 'mean'")
        if not owners:
            raise ValueError("the global model needs at least one owner rank")
        self.owners = list(owners)
        self.owner_set = frozenset(self.owners)
        self.combine = combine
        self.steps = steps
        self.eval_every = eval_every
        self.target_loss = target_loss
        self._evaluate = evaluate
        self._clock = clock
        self._bytes = bytes_sent
        self._on_step = on_step
        self._on_eval = on_eval
        self.step = 0
        self.samples = 0.0
        self.rows: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.target_reached: dict[str, float] | None = None
        self._counts = {r: 0 for r in self.owners}
        # How many owners have applied each count of steps, and the smallest count: the
        # global step follows the slowest owner in O(1) per step, for thousands of workers.
        self._at_count = {0: len(self.owners)}
        self._slowest = 0
        self._current: dict[int, Any] = {}
        # An owner ahead of the global step keeps its state as of each step not yet global:
        # owners apply a step at different times, and a model mixing steps is no model.
        self._copies: dict[int, dict[int, torch.Tensor | None]] = {r: {} for r in self.owners}
        self._staleness: dict[int, float] = {}
        self._last_eval = -1
        self._pending: list[int] = []  # global evaluation steps waiting for owners' states
        # When each pending step became global: its row's time, samples and bytes (the
        # evaluation itself may come later, once the owners' states are settled).
        self._reached: dict[int, dict[str, float]] = {}
        self._runaway = 10 * steps + 1000

    # -- what the backends report ---------------------------------------------------------------
    def start(self, states: dict[int, Any]) -> None:
        """Every owner's state before any step; evaluates step 0."""
        self._current = dict(states)
        for rank, copies in self._copies.items():
            copies[0] = _value(self._current.get(rank))
        self.evaluate()

    def computed(self, rank: int, samples: int) -> None:
        """A gradient over ``samples`` examples finished on ``rank``."""
        if self.stop_reason is None:
            self.samples += samples

    def rank_stepped(self, rank: int, rank_steps: int) -> None:
        """Any rank applied its ``rank_steps``-th optimizer step (owners are also reported
        through :meth:`stepped`); guards against a global model that never advances."""
        if rank_steps > self._runaway:
            check_runaway(rank, rank_steps, self.steps, self.owners)

    def stepped(self, rank: int, staleness: float, state: Any) -> None:
        """Owner ``rank`` applied one optimizer step; ``state`` is its parameters now (see
        :data:`State`)."""
        if self.stop_reason is not None or rank not in self._counts:
            return
        k = self._counts[rank] = self._counts[rank] + 1
        at = self._at_count
        at[k - 1] -= 1
        at[k] = at.get(k, 0) + 1
        if k - 1 == self._slowest and not at[k - 1]:
            del at[k - 1]
            self._slowest = k  # the last owner at the old minimum moved up by one
        slowest = self._slowest
        self._current[rank] = state
        if rank == self.owners[0]:
            self._staleness[k] = float(staleness)
        if k >= self.steps:  # the last step: no step follows to settle it
            self._copies[rank][k] = _value(state)
        while self.step < slowest and self.stop_reason is None:
            self._advance()

    def settled(self, rank: int, state: Any) -> None:
        """Owner ``rank`` is about to apply its next step: ``state`` (see :data:`State`) is
        final for the step it applied last."""
        if self.stop_reason is not None or rank not in self._counts:
            return
        k = self._counts[rank]
        if k >= self.steps:  # the last step's state was taken when it was applied
            return
        if k >= self.step:  # still needed: the global step has not passed it
            self._copies[rank][k] = _value(state)
            self._evaluate_pending()

    def logged(self, rank: int, values: dict[str, float]) -> None:
        """A strategy logged named values on ``rank``."""
        if self.stop_reason is None:
            self.rows.append(
                self._row("log", {"rank": rank, **{k: float(v) for k, v in values.items()}})
            )

    def rank_times(self, rank: int, compute: float, comm: float, idle: float, *, role: str) -> None:
        """One rank's time breakdown and its ``role`` (``"worker"``, ``"server"``), recorded
        once at the end."""
        self.rows.append(
            self._row(
                "rank",
                {
                    "rank": rank,
                    "role": role,
                    "compute_time": compute,
                    "comm_time": comm,
                    "idle_time": idle,
                },
            )
        )

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
            self._current.update(states)
            for rank, state in states.items():
                self._copies[rank][self.step] = _value(state)
        # Evaluation points whose owners never settled them: the state each owner has now.
        for k in self._pending:
            if k < self.step:
                at_k = self._states(k)
                if at_k is not None:
                    self._record_eval(k, self._combine(at_k), at_k)
        self._pending.clear()
        self.evaluate()

    # -- what the backends ask --------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def stops_at(self, owner_steps: int) -> bool:
        """Whether an owner that has applied ``owner_steps`` steps has done its share of the
        ``steps`` condition (the real backend counts these across processes to stop)."""
        return owner_steps >= self.steps

    def is_eval_step(self, step: int) -> bool:
        return is_eval_step(step, self.eval_every, self.steps)

    def global_parameters(self) -> torch.Tensor | None:
        """The global model's flat parameters at the current global step (``None`` if an
        owner's state at that step was not recorded)."""
        return self._combined(self.step)

    def _states(self, k: int, settled_only: bool = False) -> list[torch.Tensor] | None:
        states = []
        for r in self.owners:
            # Each owner's state as of step k (kept when it settled), so a later step does
            # not leak in; an owner still at step k contributes its state now, unless only
            # settled states will do. The real backend records states at evaluation points
            # only, and its final states otherwise.
            state = self._copies[r].get(k)
            if state is None and self._counts[r] == k and not settled_only:
                state = _value(self._current.get(r))
            if state is None:
                return None
            states.append(state)
        return states

    def _combined(self, k: int, settled_only: bool = False) -> torch.Tensor | None:
        states = self._states(k, settled_only)
        return None if states is None else self._combine(states)

    def _combine(self, states: list[torch.Tensor]) -> torch.Tensor:
        if self.combine == "one":
            return states[0].clone()
        if self.combine == "concat":
            return torch.cat(states)
        return reduce_tensors(states, "mean")

    def _evaluate_pending(self) -> None:
        while self._pending and self.stop_reason is None:
            k = self._pending[0]
            states = self._states(k, settled_only=True)
            if states is None:
                return
            self._pending.pop(0)
            self._record_eval(k, self._combine(states), states)

    def evaluate(self) -> None:
        """Evaluate the global model now (once per global step) and check the target loss."""
        if self._last_eval == self.step:
            return
        states = self._states(self.step)
        if states is not None:
            self._record_eval(self.step, self._combine(states), states)

    def _record_eval(
        self, k: int, flat: torch.Tensor, states: list[torch.Tensor] | None = None
    ) -> None:
        if self._last_eval >= k:
            return
        self._last_eval = k
        values = self._evaluate(flat)
        if self.combine == "mean" and states is not None and len(states) > 1:
            values["consensus"] = consensus_distance(states)
        stamp = self._reached.pop(k, None)
        if stamp is None:
            row_ = self._row("eval", values, at_step=k)
        else:  # stamped when step k became global, as its step row is
            row_ = row("eval", step=k, **stamp, **values)
        self.rows.append(row_)
        if self.target_loss is not None and self.target_reached is None:
            if row_["loss"] <= self.target_loss:
                self.target_reached = {k: row_[k] for k in ("time", "step", "samples", "bytes")}
                self.stop("target_loss")
        if self._on_eval is not None:
            self._on_eval(self.rows)

    # -- inside ---------------------------------------------------------------------------------
    def _advance(self) -> None:
        self.step += 1
        k = self.step
        keep = self._pending[0] if self._pending else k
        for copies in self._copies.values():
            for old in [v for v in copies if v < keep]:
                del copies[old]
        self.rows.append(self._row("step", {"staleness": self._staleness.pop(k, math.nan)}))
        if self._on_step is not None:
            self._on_step(k)
        if self.is_eval_step(k) and k < self.steps:
            self._pending.append(k)
            self._reached[k] = {
                "time": self._clock(),
                "samples": self.samples,
                "nbytes": self._bytes(),
            }
        self._evaluate_pending()
        if k >= self.steps:
            self.evaluate()  # the last step's states were taken when applied
            self.stop("steps")

    def _row(self, kind: str, values: dict[str, Any], at_step: int | None = None) -> dict[str, Any]:
        # ``values`` is a dict, not keywords: a strategy's log names must not reach ``at_step``.
        return row(
            kind,
            time=self._clock(),
            step=self.step if at_step is None else at_step,
            samples=self.samples,
            nbytes=self._bytes(),
            **values,
        )
