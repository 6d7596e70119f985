"""This process as one rank of a run its launcher started: torchrun, srun, or any launcher
that sets torchrun's variables.

Every rank builds the same run from the same arguments (checked: a rank started with other
arguments stops the run with the fields that differ), joins the run's store and process
group, and trains. Rank 0 draws the progress bar, then gathers what every rank measured
(waiting at most ``timeout`` for ranks that neither hand in nor fail, and a few seconds
once one has failed) and writes the run directory; the others stay until it has.
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import topologies
from faults import FaultSchedule
from real import rendezvous
from real.devices import resolve_backend
from real.handin import gather
from real.launch import check_stops
from real.placement import LaunchError, Placement, placement_record
from real.progress import RunProgress
from real.rank import RankOptions, run_rank
from real.results import assemble, interruption, stopped_by_interrupt
from real.runtime import SILENCE
from real.store import SECRET_ENV, read_secret
from real.testbed.links import applied
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
    schedule, on a testbed only (its link faults; the testbed's launcher makes them, rank 0 writes their
    rows: :mod:`real.testbed.links`)."""
    target_loss, max_time = check_stops(target_loss, max_time)
    target = target_of(setup.workload, target_loss=target_loss, target_return=target_return)
    schedule = _testbed_faults(faults, setup, placement, topology)
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
    )
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

    def collect(store: Any) -> None:
        deadline = [time.monotonic() + timeout]

        def until() -> float:
            if rendezvous.failure(store) is not None:  # the others stop at once: a short wait
                deadline[0] = min(deadline[0], time.monotonic() + GRACE_SECONDS)
            return deadline[0]

        gathered = gather(store, setup.world_size, until)
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
            outcome["result"] = assemble(
                setup,
                config,
                parts,
                wall_time=time.perf_counter() - started,
                writer=writer,
                error=error,
                target=target,
                max_time=max_time,
                faults=bool(schedule),
                marks=[(at, -1, event) for at, event in applied(store)] if schedule else (),
            )
        except BaseException as exc:
            outcome["error"] = exc

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
    with writer or nullcontext(), bar, watch:
        try:
            run_rank(
                setup,
                placement,
                options,
                collect=collect if collector else None,
                secret=secret,
            )
        except BaseException:
            if not collector or "error" not in outcome:
                raise
        if "error" in outcome:
            raise outcome["error"]
    return outcome.get("result")


def _testbed_faults(
    faults: Any, setup: TrainingSetup, placement: Placement, topology: nx.Graph | None
) -> FaultSchedule | None:
    """The run's fault schedule, checked against the testbed's links; refused in one line
    under any other launcher (its store lives in rank 0, or its agent restarts every
    worker of a node on a failure: see docs/faults.md)."""
    if faults is None:
        return None
    if placement.launcher != "testbed" or topology is None:
        raise LaunchError(
            "a fault schedule runs on the local launcher or a testbed (`commsim real "
            "--testbed`), not under torchrun or srun; drop --faults here"
        )
    return FaultSchedule.parse(
        faults,
        world_size=setup.world_size,
        links=[(str(u), str(v)) for u, v in topology.edges],
        steps=setup.steps,
    )
