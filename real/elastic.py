"""A fault schedule under torchrun: its own restarts, as ``recovery="restart"``.

torchrun's agent (torchelastic) restarts *every* worker of the job when one fails, up to
``--max-restarts`` times, and tells each new worker which restart it is
(``TORCHELASTIC_RESTART_COUNT``). Survivors cannot keep running under it, so the one policy
that fits is the one it was built for: every rank restarted from the last checkpoint. The
run's store is the agent's (the c10d or static rendezvous with its TCP store shared with the
workers, ``TORCHELASTIC_USE_AGENT_STORE=True``): it outlives the workers, so what they handed
in before a crash is still there for the last restart's rank 0 to gather.

How a run goes, generation ``g`` being the restart count (every rank's ``g``-th process):

* a rank whose step crash is due marks itself crashed (:func:`real.crashes.mark_crashed`),
  asks every peer of its generation to halt (the local launcher's ``"halt"`` key) and kills
  itself with ``SIGKILL``; the peers hand in their events and leave with
  :data:`HALT_CODE` (a failure, so that every node's agent restarts its workers);
* the agent restarts every worker; each checks that the last generation ended with the
  schedule's crash (else the run failed: refused at once), marks itself back if it was the
  one that crashed, waits for the crash's ``restart`` delay, and loads the last complete
  checkpoint (:func:`begin`); the first rank there records when the job restarted and from
  which step, and keeps the owners' checkpointed states for the replay;
* the last generation's rank 0 gathers every generation's parts (:func:`wait_closed`) with
  the ``Crashed``, ``Restarted`` and rewind events a local launcher records
  (:func:`restart_events`), so the rows, ``failures``, ``restarts``, ``lost_steps`` and
  ``lost_samples`` are the local launcher's and ``sim``'s.

The checkpoints live in the run directory (``OUT/restart``: every node must see it, as
torchelastic's own checkpoints must), and go once the run is written.

Examples
--------
>>> generation({"TORCHELASTIC_RESTART_COUNT": "2"}), generation({})
(2, 0)
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from faults import FaultSchedule
from real import rendezvous
from real.checkpoints import Rewound, check_restartable, last_complete, prune, read
from real.crashes import crash_count, crashed_at, mark_restarted
from real.placement import LaunchError, Placement
from strategies.events import Crashed, Event, Restarted

__all__ = [
    "HALT_CODE",
    "Pruner",
    "begin",
    "check_elastic",
    "generation",
    "remove_checkpoints",
    "restart_directory",
    "restart_events",
    "wait_closed",
]

#: The exit status of a rank that halts because a peer crashed: a failure, so that its own
#: node's agent restarts its workers too (a node whose workers all left with 0 would be done).
HALT_CODE = 75
_RESTART_COUNT, _MAX_RESTARTS = "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS"
#: Generation ``g``'s start: ``"<wall seconds> <step of the checkpoint it loaded>"``.
_GENERATION = "faults/generation/{g}"
_START_KEY = "start"  # as real.rank names it


def generation(env: Mapping[str, str]) -> int:
    """Which of torchrun's restarts this worker is (0: the first start)."""
    return int(env.get(_RESTART_COUNT) or 0)


def restart_directory(out: Path) -> Path:
    """Where the ranks of a run under torchrun write their checkpoints (``OUT/restart``)."""
    return Path(out) / "restart"


def check_elastic(
    schedule: FaultSchedule,
    strategy: Any,
    placement: Placement,
    env: Mapping[str, str],
    out: Path | None,
) -> None:
    """A one-line :class:`real.placement.LaunchError` for what a fault schedule cannot do
    under ``placement``'s launcher (torchrun; srun has no restarts), naming the fix."""
    local = "or run it on the local launcher (commsim real --nproc N)"
    if placement.launcher != "torchrun":
        raise LaunchError(
            f"--faults under {placement.launcher}: nothing restarts its ranks; run it under "
            f'torchrun --max-restarts N with recovery = "restart", {local}'
        )
    if not placement.agent_store:
        raise LaunchError(
            "--faults under torchrun needs the agent's store, which outlives the workers "
            "(TORCHELASTIC_USE_AGENT_STORE is not True: rank 0 would host it and die with "
            "it); unset TORCH_DISABLE_SHARE_RDZV_TCP_STORE and use the c10d or static "
            "rendezvous"
        )
    if schedule.recovery != "restart":
        raise LaunchError(
            "--faults under torchrun: its agent restarts every worker when one dies, so no "
            f'survivor goes on; set recovery = "restart" with checkpoint_every, {local}'
        )
    for index, event in enumerate(schedule.events):
        kind = type(event).__name__
        if kind == "Crash" and getattr(event, "step", None) is None:
            raise LaunchError(
                f"faults[{index}]: under torchrun a crash is at a step (no launcher of "
                f"commsim's asks a rank at a time); give it a step, {local}"
            )
        if kind != "Crash":
            raise LaunchError(
                f"faults[{index}]: under torchrun only crashes at a step run (their "
                f"restart from a checkpoint); drop it, {local}"
            )
    crashes = len(schedule.crashes)
    given = env.get(_MAX_RESTARTS)
    if given is not None and int(given) < crashes:
        raise LaunchError(
            f"torchrun --max-restarts={given} is fewer than the schedule's {crashes} "
            f"crashes (each restarts every worker); give --max-restarts={crashes} or more"
        )
    if out is None:
        raise LaunchError(
            "--faults under torchrun needs --out (the same directory on every node): the "
            "ranks' checkpoints go there, and every restart writes that run"
        )
    check_restartable(strategy, placement.world_size)


def begin(
    store: Any,
    schedule: FaultSchedule,
    placement: Placement,
    generation: int,
    directory: Path,
    owners: list[int],
) -> int:
    """This worker's start in ``generation``: the step of the checkpoint it loads (0: the
    initial state). A generation after the first must follow the schedule's crash, else the
    run failed and torchrun restarted it anyway: refused in one line."""
    if generation == 0:
        return 0
    world, rank = placement.world_size, placement.rank
    crashed = _crashes(store, world, generation - 1)
    failed = rendezvous.failure(store)
    if not crashed or failed is not None:
        raise LaunchError(
            f"torchrun restarted the workers (restart {generation}) after a failure that was "
            f"not the schedule's crash ({failed or 'a worker died'}); rank 0 wrote the run"
        )
    if any(r == rank for _, r in crashed):
        mark_restarted(store, rank)  # (its own: a second crash at that step is back too)
    at, first = crashed[0]
    delay = _restart_delay(schedule, first, crash_count(store, first) - 1)
    start = float(bytes(store.get(_START_KEY)).decode())
    while time.time() - start < at + delay:  # the crash's `restart` delay, as sim waits it
        time.sleep(0.01)
    step = last_complete(directory, world)
    key = _GENERATION.format(g=generation)
    mine = f"{time.time()!r} {step}"
    if bytes(store.compare_set(key, "", mine)).decode() == mine and step:
        # The first rank here keeps the owners' states for the replay's rewind: the files
        # themselves go when a later checkpoint is complete.
        flats = {str(r): read(directory, r, step).flat for r in owners}
        _save(flats, directory / f"generation{generation}.pt")
    said = bytes(store.get(key)).decode().split()
    return int(said[1])


def _restart_delay(schedule: FaultSchedule, rank: int, index: int) -> float:
    """The ``restart`` seconds of ``rank``'s crash number ``index`` (in step order)."""
    crashes = sorted((c for c in schedule.crashes if c.rank == rank), key=lambda c: c.step or 0)
    return float(crashes[index].restart or 0.0) if 0 <= index < len(crashes) else 0.0


def _save(flats: dict[str, torch.Tensor], path: Path) -> None:
    partial = path.with_suffix(".tmp")
    torch.save(flats, partial)
    partial.replace(path)


def wait_closed(store: Any, world_size: int, generation: int, until: Callable[[], float]) -> None:
    """Wait until every rank's process of ``generation`` has handed in its closing record,
    or ``time.monotonic()`` passes ``until()``."""
    from real.handin import handed_in

    while time.monotonic() < until():
        try:
            if all(handed_in(store, r, generation) for r in range(world_size)):
                return
        except Exception:  # the store is gone: what is in is all there is
            return
        time.sleep(0.02)


def _crashes(store: Any, world_size: int, generation: int) -> list[tuple[float, int]]:
    """The schedule's crashes of ``generation``'s processes: (when, rank), first first."""
    return sorted(
        (at, r) for r in range(world_size) if (at := crashed_at(store, r, generation)) is not None
    )


def restart_events(
    store: Any, world_size: int, generations: int, directory: Path, leaving: bool = False
) -> list[Event | Rewound]:
    """What a local launcher records of the restarts before generation ``generations``:
    each crash that ended a generation (the first, when two ranks died at one step: one
    restart, as in ``sim``), when every rank restarted, and from which checkpoint; with
    ``leaving``, also the crash that ends generation ``generations`` now."""
    start = float(bytes(store.get(_START_KEY)).decode())
    events: list[Event | Rewound] = []
    if leaving and (ending := _crashes(store, world_size, generations)):
        events.append(Crashed(*ending[0]))
    for g in range(1, generations + 1):
        crashed = _crashes(store, world_size, g - 1)
        key = _GENERATION.format(g=g)
        if not crashed or not store.check([key]):
            break
        at, rank = crashed[0]
        wall, step = bytes(store.get(key)).decode().split()
        now = max(float(wall) - start, at)
        flats = None
        if int(step):
            saved = torch.load(directory / f"generation{g}.pt", weights_only=True)
            flats = {int(r): flat for r, flat in saved.items()}
        events += [Crashed(at, rank), Restarted(now, rank), Rewound(now, rank, int(step), flats)]
    return events


class Pruner:
    """Rank 0's thread that removes the checkpoints older than the last complete one, about
    once a second, while the rank runs (the local launcher's job); the directory goes
    when the run is written (:func:`remove_checkpoints`)."""

    def __init__(self, directory: Path, world_size: int, every: float = 1.0) -> None:
        self.directory, self.world_size, self.every = directory, world_size, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-pruner", daemon=True)

    def __enter__(self) -> Pruner:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                prune(self.directory, self.world_size)
            except OSError:  # a rank renaming its file meanwhile: next time
                pass


def remove_checkpoints(directory: Path) -> None:
    """Remove the run's checkpoints: the run is written."""
    shutil.rmtree(directory, ignore_errors=True)
