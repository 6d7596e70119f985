"""A real run's live stops, off the ranks' timed path: ``max_time`` and a target
(``target_loss``, ``target_return``: a level of the workload's metric, :mod:`runs.metric`).

Whoever launched the run watches it on a thread of its own with its own store client (the
local launcher; rank 0's process under torchrun or srun, beside its progress bar):

* ``max_time``: wall seconds since the ranks' common start (rank 0's, on the store); once
  they have passed, the watcher sets the run's stop, ``"max_time"``;
* a target: each owner of the global model hands in its state at every evaluation
  point as soon as it has it (:class:`real.runtime.RealRuntime`, ``eager``); the watcher reads
  the owners' events as they come, combines their states at step ``k`` as the ledger does
  (:class:`strategies.owners.OwnerStates`), evaluates them with the ledger's evaluator, in
  step order, and sets the stop, ``"target_loss"`` (``"target_return"``), at the first that
  reaches the target.

The stop reaches every rank as any stop does, at its next ``yield``: the run stops within
one evaluation period (and the watcher's latency) of reaching the target. The result is
still the replay's (:mod:`real.results`): its ledger evaluates the very same snapshots, so it
stops at the same evaluation, and ``*_to_target`` mean what they mean in ``sim``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from real.handin import read_batches
from real.rank import START_KEY
from real.runtime import STOP_KEY
from runs.metric import Target
from strategies.events import Settled, Stepped
from strategies.owners import OwnerStates
from strategies.roles import Evaluator, TrainingSetup, initial_parameters, initial_state

__all__ = ["POLL", "RunWatch", "Stops", "TargetWatch"]

#: How often the watcher looks at the clock and at the owners' hand-ins (seconds).
POLL = 0.05


@dataclass(frozen=True)
class Stops:
    """A real run's own stops (checked: ``real.launch.check_stops`` and
    :func:`runs.metric.check_target`); ``None``: not set."""

    target: Target | None = None
    max_time: float | None = None

    def config(self) -> dict[str, float]:
        """What ``run.json`` records of them (only those set: ``target_loss`` or
        ``target_return``)."""
        stops = {"max_time": self.max_time}
        if self.target is not None:
            stops[self.target.key] = self.target.value
        return {k: v for k, v in stops.items() if v is not None}


class TargetWatch:
    """The global model at each evaluation point, from the owners' events as they come.

    Examples
    --------
    >>> import torch
    >>> from runs.metric import LOSS
    >>> watch = TargetWatch(OwnerStates([0, 1], "mean"), lambda p: {"loss": float(p.sum())})
    >>> watch.seen(0, [Stepped(0.1, 0, 0), Settled(0.2, 0, torch.ones(1))])
    >>> watch.reached(Target(LOSS, 1.5))
    False
    >>> watch.seen(1, [Stepped(0.1, 1, 0), Settled(0.2, 1, torch.full((1,), 2.0))])
    >>> watch.reached(Target(LOSS, 1.5))
    True
    """

    def __init__(self, owners: OwnerStates, evaluate: Callable[[Any], dict[str, float]]) -> None:
        self._owners = owners
        self._evaluate = evaluate
        self._steps = {r: 0 for r in owners.owners}
        self._states: dict[int, dict[int, Any]] = {}  # step -> owner -> state
        self._last = -1

    def start(self, states: dict[int, Any]) -> None:
        """The owners' states before any step (step 0 is evaluated first, as the ledger
        does at its start)."""
        self._states[0] = dict(states)

    def seen(self, rank: int, events: list[Any]) -> None:
        """Owner ``rank``'s next events, in its own order."""
        for event in events:
            if isinstance(event, Stepped):
                self._steps[rank] += 1
                if event.state is not None:  # the last step's, taken when applied
                    self._states.setdefault(self._steps[rank], {})[rank] = event.state
            elif isinstance(event, Settled):
                self._states.setdefault(self._steps[rank], {})[rank] = event.state

    def reached(self, target: Target) -> bool:
        """Evaluate every step whose owners' states are all in, in step order; whether one
        reached ``target`` (the first one that does is where the replay stops too)."""
        for k in sorted(self._states):
            states = self._states[k]
            if len(states) < len(self._owners.owners):
                return False  # the ledger evaluates in step order: wait for this one
            del self._states[k]
            if k <= self._last:
                continue
            self._last = k
            flat = self._owners.join([states[r] for r in self._owners.owners])
            if target.reached(self._evaluate(flat).get(target.metric.name, math.nan)):
                return True
        return False


class RunWatch:
    """``with RunWatch(connect, setup, stops):`` watches the run while the ranks train
    (nothing when no stop is set). ``connect()`` returns a store client for the watcher's
    thread alone; it is called in that thread."""

    def __init__(
        self,
        connect: Callable[[], Any],
        setup: TrainingSetup,
        stops: Stops,
        poll: float = POLL,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._target = stops.target
        self._max_time = stops.max_time
        self._poll = poll
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the watcher stopped the run (None: it did not).
        self.stopped: str | None = None

    def __enter__(self) -> RunWatch:
        if self._target is not None or self._max_time is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _watch(self) -> None:
        try:
            store = self._connect()
            self._loop(store)
        except Exception:  # the store went away with the run: nothing left to stop
            return

    def _loop(self, store: Any) -> None:
        setup = self._setup
        owners, combine = setup.strategy.owners(setup.world_size)
        states = OwnerStates(owners, combine)
        target = None
        if self._target is not None:
            target = TargetWatch(states, Evaluator(setup))
            flat = initial_parameters(setup)
            target.start({r: initial_state(setup, r, flat) for r in owners})
        start: float | None = None
        batches = {r: 0 for r in owners}
        while not self._done.wait(self._poll):
            if store.check([STOP_KEY]):
                return  # stopped already (steps, a failure, an interrupt)
            if self._max_time is not None:
                if start is None and store.check([START_KEY]):
                    start = float(bytes(store.get(START_KEY)).decode())
                if start is not None and time.time() - start >= self._max_time:
                    self._stop(store, "max_time")
                    return
            if target is not None and self._target is not None:
                for rank in owners:
                    events, batches[rank] = read_batches(store, rank, batches[rank])
                    target.seen(rank, events)
                if target.reached(self._target):
                    self._stop(store, self._target.key)
                    return

    def _stop(self, store: Any, reason: str) -> None:
        store.compare_set(STOP_KEY, "", reason)  # a stop set first (a failure) stays
        self.stopped = reason
