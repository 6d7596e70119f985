"""A run's evaluations of its global model: which evaluation points still wait for their
owners' states, the row each makes, and the run's target (a level of the workload's metric).

An evaluation point's row is stamped with the time, samples and bytes of the moment its step
became global (as its step row is), though the evaluation itself comes once every owner's
state at that step is settled: time-to-target is then not a step late.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from runs.metric import Target
from runs.schema import row
from strategies.owners import OwnerStates

__all__ = ["Evaluations"]


class Evaluations:
    """Evaluation points of one run, on behalf of its :class:`~strategies.ledger.Ledger`.

    Parameters
    ----------
    owners
        The owners' states (what is evaluated).
    evaluate
        Held-out metrics of flat global parameters (None: no evaluation rows).
    consensus
        The consensus distance of the owners' states (``None``: not recorded).
    target
        Stop once an evaluation reaches it (``stop(target.key)``: ``"target_loss"``,
        ``"target_return"``).
    rows, make_row, stop, stopped
        The ledger's rows, its row maker ``(kind, values, step)``, and its stop.
    on_eval
        Called with the rows after each evaluation.
    """

    def __init__(
        self,
        owners: OwnerStates,
        evaluate: Callable[[torch.Tensor], dict[str, float]] | None,
        consensus: Callable[[list[torch.Tensor]], float] | None,
        target: Target | None,
        rows: list[dict[str, Any]],
        make_row: Callable[[str, dict[str, Any], int], dict[str, Any]],
        stop: Callable[[str], None],
        stopped: Callable[[], bool],
        on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._owners = owners
        self._evaluate = evaluate
        self._consensus = consensus
        self.target = target
        self.target_reached: dict[str, float] | None = None
        self._rows = rows
        self._make_row = make_row
        self._stop = stop
        self._stopped = stopped
        self._on_eval = on_eval
        self.last = -1
        self.pending: list[int] = []  # global evaluation steps waiting for owners' states
        # When each pending step became global: its row's time, samples and bytes.
        self._reached: dict[int, dict[str, float]] = {}

    def wait_for(self, k: int, stamp: dict[str, float]) -> None:
        """Global step ``k`` is an evaluation point, reached with ``stamp`` (time, samples,
        nbytes): it is evaluated once its owners' states are settled."""
        self.pending.append(k)
        self._reached[k] = stamp

    def rewind(self, k: int) -> None:
        """The run went back to step ``k`` (a restart from a checkpoint): points after it
        are reached, and evaluated, again."""
        self.pending = [p for p in self.pending if p <= k]
        self._reached = {p: v for p, v in self._reached.items() if p <= k}
        self.last = min(self.last, k)

    def oldest_needed(self, k: int) -> int:
        """The oldest step whose states are still needed, at global step ``k``."""
        return self.pending[0] if self.pending else k

    def settle(self) -> None:
        """Evaluate every pending point whose owners' states are all settled, in order."""
        while self.pending and not self._stopped():
            k = self.pending[0]
            states = self._owners.states(k, settled_only=True)
            if states is None:
                return
            self.pending.pop(0)
            self.record(k, self._owners.join(states), states)

    def now(self, k: int) -> None:
        """Evaluate the global model at step ``k`` with the states known now (once)."""
        if self.last == k:
            return
        states = self._owners.states(k)
        if states is not None:
            self.record(k, self._owners.join(states), states)

    def close(self, step: int) -> None:
        """The run ended at ``step``: points whose owners never settled them are evaluated
        with each owner's state now, then ``step`` itself."""
        for k in self.pending:
            if k < step:
                at_k = self._owners.states(k)
                if at_k is not None:
                    self.record(k, self._owners.join(at_k), at_k)
        self.pending.clear()
        self.now(step)

    def record(self, k: int, flat: torch.Tensor, states: list[torch.Tensor] | None = None) -> None:
        """The evaluation row of step ``k`` (once per step, in order); checks the target."""
        if self.last >= k:
            return
        self.last = k
        if self._evaluate is None:  # a timing-only run: nothing to evaluate, rows flushed
            self._reached.pop(k, None)
            if self._on_eval is not None:
                self._on_eval(self._rows)
            return
        values = self._evaluate(flat)
        # Every eval row has the schema's ``loss`` (NaN where the workload reports none: a
        # return), so the tables of every run line up; a loss row is as it was.
        values.setdefault("loss", math.nan)
        if self._consensus is not None and states is not None and len(states) > 1:
            values["consensus"] = self._consensus(states)
        stamp = self._reached.pop(k, None)
        if stamp is None:
            row_ = self._make_row("eval", values, k)
        else:  # stamped when step k became global, as its step row is
            row_ = row("eval", step=k, **stamp, **values)
        self._rows.append(row_)
        target = self.target
        if target is not None and self.target_reached is None:
            if target.reached(row_.get(target.metric.name, math.nan)):
                self.target_reached = {k: row_[k] for k in ("time", "step", "samples", "bytes")}
                self._stop(target.key)
        if self._on_eval is not None:
            self._on_eval(self._rows)
