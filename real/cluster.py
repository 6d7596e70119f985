"""This process as one rank of a run its launcher started: torchrun, srun, or any launcher
that sets torchrun's variables.

Every rank builds the same run from the same arguments (checked: a rank started with other
arguments stops the run with the fields that differ), joins the run's store and process
group, and trains. Rank 0 draws the progress bar, then gathers what every rank measured
(waiting at most ``timeout`` for ranks that neither hand in nor fail, and a few seconds
once one has failed) and writes the run directory; the others stay until it has.

Under torchrun a fault schedule's crashes restart every worker from the last checkpoint,
torchrun's own restarts (:mod:`real.elastic`); the last restart's rank 0 writes the run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import topologies
from faults import FaultSchedule
from real import elastic, rendezvous
from real.devices import resolve_backend
from real.handin import Gathered, gather
from real.launch import check_stops
from real.placement import LaunchError, Placement, placement_record
from real.progress import RunProgress
from real.rank import RankOptions, run_rank
from real.results import EMPTY_PART, assemble, interruption, stopped_by_interrupt
from real.runtime import SILENCE
from real.store import SECRET_ENV, read_secret
from real.watch import RunWatch, Stops
from runs import RunResult, RunWriter
from runs.metric import target_of
from strategies.roles import TrainingSetup

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["run_launched"]

#: Once a rank has failed, how long rank 0 waits for the others' records.
GRACE_SECONDS = 5.0


def run_launched(
    setup: TrainingSetup,
    placement: Placement,
    *,
    backend: str = "auto",
    portable: bool = True,
    timeout: float = 300.0,
    out: str | Path | None = None,
    progress: bool = True,
    topology: nx.Graph | None = None,
    silence: float = SILENCE,
    target_loss: float | None = None,
    max_time: float | None = None,
    faults: Any = None,
    target_return: float | None = None,
) -> RunResult | None:
    """Run this rank; on rank 0, also gather and write the run (``out``) and return its
    result (the other ranks return ``None``). Raises the run's first failure, on every rank.
    ``topology``: the network the ranks run on, recorded in ``run.json`` as ``sim`` does.
    ``silence``: seconds without a heartbeat after which a rank others wait on fails the run
    (see :func:`real.run`). ``target_loss`` (or ``target_return``), ``max_time``: the run's
    stops, watched by rank 0 on a thread of its own (:mod:`real.watch`). ``faults``: a fault
    schedule under torchrun: crashes at a step with ``recovery="restart"``, each restarting
    every worker from the last checkpoint (torchrun's ``--max-restarts``; ``out`` needed,
    where the checkpoints go: :mod:`real.elastic`); what cannot run there is refused in one
    line."""
    target_loss, max_time = check_stops(target_loss, max_time)
    target = target_of(setup.workload, target_loss=target_loss, target_return=target_return)
    schedule = _elastic_faults(faults, setup, placement, out)
    generation = elastic.generation(os.environ) if schedule else 0
    if schedule:  # torchrun's restarts go on from the first attempt's store keys
        rendezvous.share_attempts()
    stops = Stops(target, max_time)
    resolved = resolve_backend(backend, local_world_size=placement.local_world_size)
    if resolved == "nccl" and not portable:
        raise LaunchError("--no-portable needs gloo's receive-from-any-source; NCCL has none")
    options = RankOptions(
        resolved,
        portable,
        timeout,
        collector=True,
        silence=silence,
        eager=target is not None,
        faults=schedule.record() if schedule else None,
        # Every rank's process of torchrun's restart `generation`: its `generation`-th.
        incarnation=generation,
        generation=generation,
    )
    restarts = elastic.restart_directory(Path(out)) if schedule and out is not None else None
    # The library chooses its own algorithms (gloo or NCCL): the rule sim's `auto` imitates.
    config = {"backend": f"real-{resolved}", **setup.config(), "auto": {"rule": resolved}}
    if topology is not None:  # as sim records it
        config["topology"] = topologies.record(topology)
    config["placement"] = placement_record(
        setup.world_size, placement.local_world_size, placement.launcher
    )
    config.update(stops.config())
    if schedule:  # as sim records it
        config["faults"] = schedule.record()
    collector = placement.rank == 0
    writer = RunWriter(out, config) if out is not None and collector else None
    outcome: dict[str, Any] = {}
    started = time.perf_counter()

    world = setup.world_size

    def write(
        parts: list[dict[str, Any] | None], error: BaseException | None, faults: bool
    ) -> RunResult:
        """The run from the ranks' parts, written by rank 0."""
        return assemble(
            setup,
            config,
            parts,
            wall_time=time.perf_counter() - started,
            writer=writer,
            error=error,
            target=target,
            max_time=max_time,
            faults=faults,
        )

    def gather_restarts(store: Any, until: Callable[[], float] | None) -> Gathered:
        """Every process's part, each rank's in order, with the restarts as a local
        launcher records them; ``until`` None: as rank 0 leaves by a crash or halt (what
        was handed in, and this generation's crash)."""
        assert restarts is not None
        if until is not None:  # every rank's last process closes; the earlier ones stopped
            elastic.wait_closed(store, world, generation, until)
        last = dict.fromkeys(range(world), generation + 1)
        gathered = gather(store, world, lambda: 0.0, incarnations=last)
        made = elastic.restart_events(store, world, generation, restarts, until is None)
        for event in made:
            part = gathered.parts[event.rank]
            if part is None:
                part = gathered.parts[event.rank] = {**EMPTY_PART, "events": []}
            part["events"] = [*part["events"], event]
        return gathered

    def collect(store: Any) -> None:
        deadline = [time.monotonic() + timeout]

        def until() -> float:
            if rendezvous.failure(store) is not None:  # the others stop at once: a short wait
                deadline[0] = min(deadline[0], time.monotonic() + GRACE_SECONDS)
            return deadline[0]

        gathered = gather_restarts(store, until) if restarts else gather(store, world, until)
        parts = gathered.parts
        failed = rendezvous.failure(store) or (gathered.refused[0] if gathered.refused else None)
        missing = [r for r, p in enumerate(parts) if p is None]
        if failed is None and missing:
            failed = (
                f"ranks {missing} handed in nothing within {timeout:g} s (killed, or lost "
                "with their node?); their launcher's log says why"
            )
        error: BaseException | None = RuntimeError(failed) if failed is not None else None
        if error is None and stopped_by_interrupt(parts):  # SIGINT/SIGTERM of a rank
            error = interruption("a rank was interrupted", parts, writer)
        try:
            outcome["result"] = write(parts, error, bool(schedule))
        except BaseException as exc:
            outcome["error"] = exc
        if restarts is not None:  # the run is written: its checkpoints go
            elastic.remove_checkpoints(restarts)

    secret = read_secret()
    if secret is None and collector:
        warnings.warn(
            f"{SECRET_ENV} is not set: the run's store at {placement.master_addr}:"
            f"{placement.master_port} trusts any process that reaches it (values are still "
            "never executed); export the same random string on every node, e.g. "
            f"{SECRET_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')",
            stacklevel=2,
        )
    owners, _ = setup.strategy.owners(setup.world_size)
    label = f"real {resolved}, {setup.world_size} ranks ({placement.launcher})"
    addr, port = placement.master_addr, placement.master_port
    connect = lambda: rendezvous.client(addr, port, timeout, secret)  # noqa: E731
    bar = RunProgress(connect, owners, setup.steps, label, enabled=progress and collector)
    watch = RunWatch(connect, setup, stops) if collector else nullcontext()

    def write_so_far() -> None:
        """Rank 0 leaves by a crash or halt (torchrun restarts every worker): the run so far,
        should no restart come back to write it (torchrun stopped, or out of restarts)."""
        if writer is None:
            return
        parts = gather_restarts(connect(), None).parts
        error = RuntimeError(
            f"torchrun is restarting every worker after the schedule's crash (its restart "
            f"{generation + 1}); the restarted rank 0 writes this run again"
        )
        with suppress(BaseException):
            write(parts, error, faults=True)

    if schedule and restarts is not None:  # the checkpoint this process starts from
        replicas = owners
        if setup.strategy.global_model == "primary":  # as the ledger of a run with faults
            replicas = setup.strategy.replicas(setup.world_size)
        resume = elastic.begin(connect(), schedule, placement, generation, restarts, replicas)
        options = replace(options, restart_points=str(restarts), resume=resume)
    pruner = elastic.Pruner(restarts, setup.world_size) if restarts and collector else None
    with writer or nullcontext(), bar, watch, pruner or nullcontext():
        try:
            run_rank(
                setup,
                placement,
                options,
                collect=collect if collector else None,
                secret=secret,
                leaving=write_so_far if restarts is not None and collector else None,
            )
        except BaseException:
            if not collector or "error" not in outcome:
                raise
        if "error" in outcome:
            raise outcome["error"]
    return outcome.get("result")


def _elastic_faults(
    faults: Any, setup: TrainingSetup, placement: Placement, out: str | Path | None
) -> FaultSchedule | None:
    """The run's fault schedule, checked against what torchrun's restarts can do
    (:func:`real.elastic.check_elastic`: one line naming the fix otherwise)."""
    if faults is None:
        return None
    schedule = FaultSchedule.parse(
        faults, world_size=setup.world_size, links=None, steps=setup.steps
    )
    elastic.check_elastic(
        schedule,
        setup.strategy,
        placement,
        os.environ,
        None if out is None else Path(out),
    )
    return schedule
