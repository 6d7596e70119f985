"""Checkpoints of a real run, and restarting every rank from the last one
(``recovery="restart"``, as torchelastic restarts a job): the real side of :mod:`sim.checkpoints`.

Every ``checkpoint_every`` of its own optimizer steps, each rank writes its
:class:`~strategies.snapshots.RankState` (model, optimizer state, step, version, data
position: what ``sim`` keeps) to a file of the launcher's scratch directory,
``restart/STEP/rankR.pt``, written whole and then renamed (a rank killed mid-write leaves no
file), tensors and plain numbers only, read back with ``torch.load(weights_only=True)``. A
synchronous strategy's ranks write the same steps ``sim`` checkpoints at (the global step's
multiples of ``checkpoint_every``), so the states are those ``sim`` keeps.

When the schedule kills a rank, the launcher (:mod:`real.restarts`) asks every other rank to
halt (each hands in its events and leaves; one that does not within a grace is killed), waits
the crash's ``restart`` delay, and starts every rank again as a new process that loads the
last *complete* checkpoint (:func:`last_complete`: the last step every rank wrote) and goes on
from its step, in a new world process group. The ledger's replay then gets what ``sim``'s
records: ``Crashed``, ``Restarted`` and the rewind to the checkpoint's step (:class:`Rewound`,
applied by :class:`Rewinds`), so ``lost_steps``, ``lost_samples`` and the rows come out as in
``sim``; each rank's write and read time is a :class:`~strategies.events.Checkpointed` event,
summed as ``sim`` sums its storage model's (the longest rank's per checkpoint).

Examples
--------
>>> import tempfile
>>> from strategies.replica import FlatOptimizer
>>> from strategies.optim import OptimizerSpec
>>> opt = FlatOptimizer(torch.zeros(2), OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9"))
>>> opt.step(torch.ones(2))
>>> state = RankState.of_optimizer(opt, step=4, version=4, data=4)
>>> with tempfile.TemporaryDirectory() as scratch:
...     for rank in (0, 1):
...         write(Path(scratch), rank, state)
...     back = read(Path(scratch), 1, 4)
...     last_complete(Path(scratch), 2), last_complete(Path(scratch), 3)
(4, 0)
>>> back.flat.tolist(), back.step, back.data
([-0.5, -0.5, 1.0, 1.0], 4, 4)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from faults import FaultError
from strategies.snapshots import RankState

__all__ = ["Rewinds", "Rewound", "check_restartable", "last_complete", "prune", "read", "write"]


def _file(directory: Path, rank: int, step: int) -> Path:
    return directory / str(step) / f"rank{rank}.pt"


def write(directory: Path, rank: int, state: RankState) -> None:
    """``rank``'s ``state`` as the checkpoint of its step, replaced whole (write, then rename)."""
    path = _file(directory, rank, state.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "flat": state.flat.detach().cpu(),
        "numbers": dict(state.numbers),
        "position": torch.tensor([state.step, state.version, state.data]),
    }
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(record, partial)
    partial.replace(path)


def read(directory: Path, rank: int, step: int) -> RankState:
    """``rank``'s checkpoint of step ``step`` (tensors and plain numbers only)."""
    record = torch.load(_file(directory, rank, step), weights_only=True)
    step_, version, data = (int(x) for x in record["position"].tolist())
    return RankState(record["flat"], dict(record["numbers"]), step_, version, data)


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def last_complete(directory: Path, world_size: int) -> int:
    """The last step whose checkpoint every rank finished (0: the initial state, which
    needs no file)."""
    for step in reversed(_steps(directory)):
        if all(_file(directory, r, step).is_file() for r in range(world_size)):
            return step
    return 0


def prune(directory: Path, world_size: int) -> None:
    """Remove the checkpoints older than the last complete one (never needed again)."""
    keep = last_complete(directory, world_size)
    for step in _steps(directory):
        if step < keep:
            shutil.rmtree(directory / str(step), ignore_errors=True)


def check_restartable(strategy: Any, world_size: int) -> None:
    """A one-line :class:`faults.FaultError` when the real backend cannot restart
    ``strategy``'s ranks from rank-local checkpoints. Each rank writes at its own steps,
    which make one consistent state only where every rank is a worker stepping with the
    others: servers' and asynchronous workers' steps do not line up (``sim`` takes every
    rank's state at one instant instead, and restarts them all).

    Examples
    --------
    >>> from strategies import registry
    >>> check_restartable(registry.get("allreduce"), 3)
    >>> check_restartable(registry.get("parameter_server", mode="async"), 3)
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults.recovery: 'restart' on the real backend restarts every rank from the checkpoint each writes at its own steps, which must line up: parameter_server has servers, whose steps do not line up with the workers'; run it with sim
    """
    why = None
    if strategy.servers(world_size):
        why = f"{strategy.name} has servers, whose steps do not line up with the workers'"
    elif getattr(strategy, "mode", "sync") != "sync":
        why = f"{strategy.name} with mode={strategy.mode!r} is asynchronous"
    elif strategy.global_model == "primary" and strategy.replicas(world_size) != strategy.workers(
        world_size
    ):
        why = f"{strategy.name}'s ranks outside its replicas (actors) apply no steps"
    elif getattr(strategy, "fault_tolerance", None) is not None:
        why = (
            f"{strategy.name} with fault_tolerance={strategy.fault_tolerance!r} recovers by "
            "itself (choose one policy)"
        )
    if why is not None:
        raise FaultError(
            "faults.recovery",
            "'restart' on the real backend restarts every rank from the checkpoint each writes "
            f"at its own steps, which must line up: {why}; run it with sim",
        )


@dataclass(frozen=True)
class Rewound:
    """Every rank restarted from the checkpoint of global step ``step`` after ``rank``
    crashed (the launcher's, never on the wire): ``flats`` are the owners' checkpointed
    states (parameters, then optimizer buffers), or None for the initial state (step 0)."""

    at: float
    rank: int
    step: int
    flats: dict[int, torch.Tensor] | None

    kind = "rewound"


class Rewinds:
    """The replay's side of restarts from checkpoints: it keeps the sample counts as each
    restored checkpoint held them (when the replayed global step reaches its step), and
    rewinds the ledger to them at a :class:`Rewound`.

    ``steps``: the steps of the checkpoints the run restarted from (none: nothing to do).
    """

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.ledger: Any = None
        self.initial: dict[int, torch.Tensor] = {}
        self._counts: dict[int, dict[str, Any]] = {}

    def attach(self, ledger: Any, initial: dict[int, torch.Tensor]) -> None:
        """Rewind ``ledger``, whose owners held ``initial`` before any step (the sizes of
        their parameters, and the checkpoint of step 0)."""
        self.ledger, self.initial = ledger, initial

    def on_step(self, k: int) -> None:
        """The replayed global step reached ``k``: the counts as its checkpoint holds them."""
        if k in self.steps and self.ledger is not None:
            self._counts[k] = self.ledger.counts.snapshot_at(k)

    def apply(self, event: Rewound) -> None:
        """Rewind the ledger to the checkpoint ``event`` restarted every rank from."""
        ledger = self.ledger
        if ledger is None or ledger.stopped:
            return
        if event.flats is None or event.step == 0:
            states = {r: state.clone() for r, state in self.initial.items()}
            counts: dict[str, Any] = {"computed": {}, "steps": {}, "last": {}, "total": 0.0}
        else:
            states = {r: event.flats[r][: state.numel()] for r, state in self.initial.items()}
            counts = self._counts[event.step]
        ledger.rewind(event.step, states, counts)
