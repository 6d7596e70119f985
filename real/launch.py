"""``real.run``: the same strategy objects on ``torch.distributed``, N local processes.

The local launcher plays the part torchrun plays on a cluster: it hosts the run's store and
starts one process per rank with torchrun's environment (:class:`real.placement.Placement`),
so a rank runs exactly the code it runs under torchrun or srun (:mod:`real.rank`). The
processes are forked by a warm pool that has torch imported (:mod:`real.pool`); the run's
set-up reaches them through cloudpickle, so a strategy defined in a notebook cell or in a
script without a ``__main__`` guard runs unchanged. Every rank hands in what it measured on
the store, also when it fails; the launcher gathers it, replays it through the simulator's
own ledger (:mod:`real.results`) and returns the :class:`runs.RunResult` that ``sim.run``
returns. A rank that dies stops the others at once, naming it.

On an emulated network of namespaces (root; ``testbed=``, :mod:`real.testbed.launch`) the
same launcher starts each rank in its host's namespace.

Single machine::

    python -c "import real; print(real.run('allreduce', 'mlp_digits', nproc=4, steps=50).summary)"

A cluster runs the same ranks under torchrun or srun: see :mod:`real.cli`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cloudpickle
import networkx as nx

import topologies
import workloads
from faults import FaultSchedule
from real import rendezvous
from real.checkpoints import check_restartable
from real.crashes import check_rejoinable, check_schedule
from real.devices import resolve_backend
from real.handin import Gathered, gather, slot
from real.placement import LaunchError, Placement, placement_record
from real.pool import shared_pool
from real.progress import RunProgress
from real.rank import RankOptions
from real.restarts import Restarts
from real.results import EMPTY_PART, RunInterrupted, assemble, interruption, stopped_by_interrupt
from real.runtime import SILENCE, STOP_KEY
from real.signals import interrupts
from real.slowdowns import marks
from real.store import SignedStore, new_secret, write_secret
from real.watch import RunWatch, Stops
from runs import RunResult, RunWriter, check_out
from runs.metric import target_of
from strategies import Strategy
from strategies.roles import TrainingSetup, positive_int

__all__ = ["check_silence", "check_stops", "check_timeout", "run"]

#: After the first rank fails, how long the others get to hand in what they measured.
GRACE_SECONDS = 5.0
#: After SIGINT or SIGTERM, how long the ranks have to stop at a ``yield`` and hand in.
INTERRUPT_GRACE = 10.0


def check_timeout(timeout: Any) -> float:
    """``timeout`` as seconds, or a one-line error."""
    if isinstance(timeout, bool) or not (
        isinstance(timeout, (int, float)) and 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout={timeout!r} must be a positive, finite number of seconds")
    return float(timeout)


def check_stops(target_loss: Any, max_time: Any) -> tuple[float | None, float | None]:
    """``target_loss`` (a held-out loss) and ``max_time`` (wall seconds), each ``None`` or
    checked, or a one-line error naming it.

    Examples
    --------
    >>> check_stops(0.5, 30)
    (0.5, 30.0)
    >>> check_stops(None, 0)
    Traceback (most recent call last):
    ...
    ValueError: max_time=0 must be a positive, finite number of wall seconds (since the ranks' common start)
    """
    if target_loss is not None and (
        isinstance(target_loss, bool)
        or not isinstance(target_loss, (int, float))
        or not math.isfinite(target_loss)
    ):
        raise ValueError(f"target_loss={target_loss!r} must be a number (a held-out loss)")
    if max_time is not None and (
        isinstance(max_time, bool)
        or not isinstance(max_time, (int, float))
        or not 0 < max_time < math.inf
    ):
        raise ValueError(
            f"max_time={max_time!r} must be a positive, finite number of wall seconds (since "
            "the ranks' common start)"
        )
    return (
        None if target_loss is None else float(target_loss),
        None if max_time is None else float(max_time),
    )


def check_silence(silence: Any) -> float:
    """``silence`` as seconds (``math.inf`` allowed: never), or a one-line error.

    Examples
    --------
    >>> check_silence(5), check_silence(math.inf)
    (5.0, inf)
    >>> check_silence(0.5)
    Traceback (most recent call last):
    ...
    ValueError: silence=0.5 must be at least 2 seconds (heartbeats come about once a second), or inf to never report a silent rank
    """
    if isinstance(silence, bool) or not isinstance(silence, (int, float)) or not silence >= 2:
        raise ValueError(
            f"silence={silence!r} must be at least 2 seconds (heartbeats come about once a "
            "second), or inf to never report a silent rank"
        )
    return float(silence)


def run(
    strategy: str | Strategy,
    workload: str | Any,
    *,
    nproc: int,
    steps: int,
    optimizer: Any = None,
    lr_schedule: Any = None,
    seed: int = 0,
    eval_every: int = 10,
    accumulate: int = 1,
    backend: str = "auto",
    out: str | Path | None = None,
    timeout: float = 300.0,
    topology: nx.Graph | str | Mapping[str, Any] | None = None,
    portable: bool = True,
    port: int = 0,
    progress: bool = False,
    record: dict[str, Any] | None = None,
    silence: float = SILENCE,
    target_loss: float | None = None,
    max_time: float | None = None,
    faults: Any = None,
    target_return: float | None = None,
    testbed: nx.Graph | str | Mapping[str, Any] | None = None,
) -> RunResult:
    """Train with ``nproc`` local processes; returns the same format as ``sim.run``.

    ``steps``, ``eval_every`` and the global model mean what they mean in ``sim.run`` (one
    ledger decides both). ``time`` columns are wall-clock seconds since all ranks were ready;
    ``result.parameters`` holds the global model's flat parameters at the last global step.
    ``timeout`` bounds every wait: a rank that waits longer on one operation fails with an
    error naming it. ``topology``, when given (a graph, or a spec as ``sim.run`` takes it:
    ``"star:n=4"``, a dict, a file), is the network the ranks run on (its hosts, one per
    rank): strategies read its host graph and their nodes from it (the host ``node``
    attributes), instead of the launcher's. ``strategy`` may be a spec too
    (``"local_sgd:period=8"``), as the command line writes it.

    ``backend``: ``"gloo"``, ``"nccl"`` (one GPU per process, tensors on the rank's GPU) or
    ``"auto"`` (NCCL when this machine has a GPU per process). ``portable`` (the default)
    never posts a receive from any source, which NCCL lacks: a strategy's ``recv(src=None)``
    is served by one posted receive per peer (:mod:`real.transport`), on every backend, so
    what runs on gloo here runs on NCCL there; ``portable=False`` uses gloo's own
    receive-from-any. ``port``: the rendezvous port (0: any free one). ``progress``: draw a
    progress bar of the global step. ``record``: extra top-level keys for ``run.json``.
    ``silence``: seconds without a heartbeat after which a rank that others wait on (one
    stopped, hung, swapped out) fails the run, naming it, long before ``timeout``
    (``math.inf``: never; see :mod:`real.runtime`).

    ``target_loss``: stop once the global model's held-out loss reaches it (evaluated as the
    run goes, at evaluation points, off the ranks' timed path: :mod:`real.watch`); the run
    stops within one evaluation period of it and ``*_to_target`` mean what they mean in
    ``sim``. ``target_return``: the same for a workload evaluated by its mean return
    (reached at or above it); each is refused, in one line, for a workload whose metric is
    the other's (:mod:`runs.metric`). ``max_time``: stop after this many wall seconds since the ranks' common start.

    ``faults``: a fault schedule as ``sim.run`` takes it (:mod:`faults`); a crash is the rank
    process killed with ``SIGKILL``, a restart a new process for that rank that rejoins
    (:mod:`real.crashes`); with ``recovery="restart"`` every rank restarts from the last
    checkpoint (:mod:`real.checkpoints`). Events the real backend does not apply are refused
    in one line.

    ``testbed``: a tree-shaped topology (a graph or a spec) to emulate on this machine (root):
    each rank runs in its host's network namespace and talks over the topology's shaped links,
    while this launcher hosts the store on the testbed's management network
    (:mod:`real.testbed.launch`); ``topology`` defaults to it, ``nproc`` must be its hosts.
    The schedule's link faults change its links (:mod:`real.testbed.links`).
    """
    positive_int("nproc", nproc)
    bed = _testbed(testbed, nproc, faults, steps, silence) if testbed is not None else None
    if bed is not None:
        topology = bed.graph if topology is None else topology
    schedule = bed.schedule if bed is not None else None
    if faults is not None and bed is None:
        schedule = check_schedule(faults, nproc, steps)
    target_loss, max_time = check_stops(target_loss, max_time)
    timeout = check_timeout(timeout)
    out = check_out(out)
    if topology is not None:  # a graph, or a spec as sim.run takes it ("star:n=4", a file)
        topology = topologies.from_spec(topology)
        if len(topologies.hosts(topology)) != nproc:
            raise ValueError(
                f"topology has {len(topologies.hosts(topology))} hosts but nproc={nproc}; "
                "give one rank per host"
            )
    silence = check_silence(silence)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 2**16:
        raise ValueError(f"port={port!r} must be 0 (any free port) or a port in 1..65535")
    resolved = resolve_backend(backend, local_world_size=nproc)
    if resolved == "nccl" and not portable:
        raise LaunchError(
            "portable=False needs gloo's receive-from-any-source, which NCCL lacks; keep "
            "portable=True with NCCL"
        )
    workload = workloads.get(workload) if isinstance(workload, str) else workload
    target = target_of(workload, target_loss=target_loss, target_return=target_return)
    setup = TrainingSetup.create(
        strategy,
        workload,
        nproc,
        steps=steps,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        seed=seed,
        accumulate=accumulate,
        eval_every=eval_every,
        host_graph=None if topology is None else topologies.host_graph(topology),
        nodes=None if topology is None else topologies.rank_nodes(topology),
    )
    if schedule is not None and schedule.recovery == "restart":
        check_restartable(setup.strategy, nproc)
    check_real = getattr(setup.strategy, "check_real_faults", None)
    if schedule is not None and check_real is not None:
        check_real(schedule, nproc)
    if schedule is not None:
        check_rejoinable(setup.strategy, schedule, nproc, resolved)
    if bed is not None and schedule is not None:
        from real.testbed.links import check_testbed_faults

        check_testbed_faults(schedule, silence, setup.strategy)
    try:
        pickled = cloudpickle.dumps(setup)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"the strategy or workload cannot be sent to the rank processes: {exc}; keep "
            "unpicklable objects (open files, locks, generators) out of their attributes"
        ) from None
    # The library chooses its own algorithms (gloo or NCCL): the rule sim's `auto` imitates.
    config = {"backend": f"real-{resolved}", **setup.config(), "auto": {"rule": resolved}}
    if topology is not None:  # as sim records it: plots and tables compare runs by network
        config["topology"] = topologies.record(topology)
    config["placement"] = (
        placement_record(nproc, 1, "testbed")
        if bed is not None
        else placement_record(nproc, nproc, "local")
    )
    stops = Stops(target, max_time)
    config.update(stops.config())
    if schedule:  # as sim records it
        config["faults"] = schedule.record()
    options = RankOptions(
        backend=resolved,
        portable=portable,
        timeout=timeout,
        silence=silence,
        eager=target is not None,
        faults=schedule.record() if schedule else None,
        **_partition_options(bed, schedule),
    )

    signals = _Signals()
    with interrupts(signals.take), bed.made() if bed is not None else nullcontext() as made:
        addr = made.gateway if made is not None else "127.0.0.1"
        store = rendezvous.host_store(port, nproc, timeout, addr)  # before any rank starts
        writer = RunWriter(out, config, record=record) if out is not None else None
        with writer or nullcontext():
            return _launch(
                setup, pickled, config, writer, options, store, progress, signals, stops, made
            )


def _partition_options(bed: Any, schedule: FaultSchedule | None) -> dict[str, Any]:
    """A testbed's links and hosts for its ranks' partitions (:mod:`real.partitions`), where
    its schedule takes a link down; none otherwise (the ranks' options are as before)."""
    if bed is None or schedule is None:
        return {}
    if not any(fault.kind == "link_down" for fault in schedule.link_faults):
        return {}
    nodes = topologies.rank_to_node(bed.graph)
    return {
        "links": tuple(bed.graph.edges),
        "hosts": tuple(nodes[r] for r in range(len(nodes))),
    }


class _TestbedRun:
    """A run's testbed, checked before anything is made (:func:`_testbed`)."""

    def __init__(self, graph: nx.Graph, schedule: FaultSchedule | None) -> None:
        self.graph, self.schedule = graph, schedule

    def made(self) -> Any:
        from real.testbed.launch import Testbed

        return Testbed(self.graph, f"r{os.getpid() % 10**7}", self.schedule)


def _testbed(testbed: Any, nproc: int, faults: Any, steps: int, silence: Any) -> _TestbedRun:
    """``testbed`` as a graph with one host per rank, and ``faults`` checked against its
    links and what a testbed applies; a one-line error otherwise."""
    from real.testbed.links import check_testbed_faults

    graph = topologies.from_spec(testbed)
    if len(topologies.hosts(graph)) != nproc:
        raise ValueError(
            f"testbed has {len(topologies.hosts(graph))} hosts but nproc={nproc}; give one "
            "rank per host"
        )
    schedule = None
    if faults is not None:
        links = [(str(u), str(v)) for u, v in graph.edges]
        schedule = FaultSchedule.parse(faults, world_size=nproc, links=links, steps=steps)
        check_testbed_faults(schedule, check_silence(silence))
    return _TestbedRun(graph, schedule)


def _launch(
    setup: TrainingSetup,
    pickled: bytes,
    config: dict[str, Any],
    writer: RunWriter | None,
    options: RankOptions,
    host: Any,
    progress: bool,
    signals: _Signals,
    stops: Stops,
    bed: Any = None,
) -> RunResult:
    wall = time.perf_counter()
    secret = new_secret()
    store = SignedStore(rendezvous.namespace(host), secret)
    owners, _ = setup.strategy.owners(setup.world_size)
    links = bed.links if bed is not None else None
    schedule = FaultSchedule.parse(
        options.faults, world_size=setup.world_size, links=links, steps=setup.steps
    )
    addr = bed.gateway if bed is not None else "127.0.0.1"
    if bed is not None:
        bed.started(host.port, secret)

    def fault_marks() -> list[tuple[Any, ...]]:
        return marks(schedule) + (bed.marks(store) if bed is not None else [])

    if schedule and setup.strategy.global_model == "primary":  # as the ledger with faults
        owners = setup.strategy.replicas(setup.world_size)
    restarts: Restarts | None = None
    kept: list[Restarts] = []  # the spawn loop's, even where it ends by an interrupt
    label = f"real {options.backend}, {setup.world_size} ranks"
    # The set-up directory is the launcher's own (mkdtemp makes it 0700): the ranks trust
    # what is in it (setup.pkl, the run's secret). It goes with the run, whatever ends it:
    # the pool removes it if the launcher is killed (see real.pool).
    with tempfile.TemporaryDirectory(prefix="commsim-real-") as scratch:
        (Path(scratch) / "setup.pkl").write_bytes(pickled)
        write_secret(scratch, secret)
        try:
            # The bar gets its own store client: one serves one call at a time.
            connect = lambda: rendezvous.client(addr, host.port, 30.0, secret)  # noqa: E731
            with (
                RunProgress(connect, owners, setup.steps, label, enabled=progress),
                RunWatch(connect, setup, stops),
            ):
                _spawn(
                    setup.world_size,
                    scratch,
                    options,
                    host.port,
                    store,
                    signals,
                    schedule,
                    owners,
                    setup.seed,
                    kept,
                    bed,
                )
            restarts = kept[0] if kept else None
        except BaseException as exc:  # an interrupt: keep what the ranks handed in
            # With the launcher's own fault events (crashes, restarts): without them the
            # replay would wait on a dead owner and drop every row after its crash.
            restarts = kept[0] if kept else None
            gathered = _gather(store, setup.world_size, restarts)
            if isinstance(exc, KeyboardInterrupt):
                exc = interruption(str(exc), gathered.parts, writer)
            wall = time.perf_counter() - wall
            assemble(
                setup,
                config,
                gathered.parts,
                wall_time=wall,
                writer=writer,
                error=exc,
                target=stops.target,
                max_time=stops.max_time,
                faults=bool(schedule),
                marks=fault_marks(),
            )
            raise exc from None
        gathered = _gather(store, setup.world_size, restarts)
        failed = rendezvous.failure(store)
    failed = failed or (gathered.refused[0] if gathered.refused else None)
    error: BaseException | None = RuntimeError(failed) if failed is not None else None
    if error is None and stopped_by_interrupt(gathered.parts):
        error = interruption("a rank was interrupted", gathered.parts, writer)
    return assemble(
        setup,
        config,
        gathered.parts,
        wall_time=time.perf_counter() - wall,
        writer=writer,
        error=error,
        target=stops.target,
        max_time=stops.max_time,
        faults=bool(schedule),
        marks=fault_marks(),
    )


def _gather(store: Any, world_size: int, restarts: Restarts | None) -> Gathered:
    """What every rank (each of its processes) handed in, with the launcher's own events
    (crashes, restarts) in the rank's part."""
    if restarts is None:
        return gather(store, world_size, deadline=lambda: 0.0)
    gathered = gather(store, world_size, deadline=lambda: 0.0, incarnations=restarts.incarnations)
    for event in restarts.events:
        part = gathered.parts[event.rank]
        if part is None:
            part = gathered.parts[event.rank] = {**EMPTY_PART, "events": []}
        part["events"] = [*part["events"], event]
    return gathered


class _Signals:
    """SIGINT and SIGTERM during a run. Once the ranks start (``asking``) a signal asks them
    to stop instead of killing the launcher: they close their programs at their next
    ``yield`` and hand in, and a second signal stops waiting for them; one that comes while
    the launcher gathers and writes the run is noted only (interrupting the write would lose
    what was measured). Before the ranks start it raises :class:`RunInterrupted` at once
    (SIGTERM too, so the run directory is written and the set-up directory removed)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.asking = False

    def take(self, name: str) -> None:
        if not self.asking:
            raise RunInterrupted(f"interrupted by {name}")
        self.received.append(name)


def _spawn(
    nproc: int,
    scratch: str,
    options: RankOptions,
    port: int,
    store: Any,
    signals: _Signals,
    schedule: FaultSchedule | None = None,
    owners: list[int] | None = None,
    seed: int = 0,
    kept: list[Restarts] | None = None,
    bed: Any = None,
) -> None:
    """Run the rank processes to their end. A rank that exits with an error it could not
    hand in (killed, or aborted inside the library) is reported on the store in its stead,
    which stops the others at once; they get ``GRACE_SECONDS`` to hand in theirs. On SIGINT
    or SIGTERM the ranks are asked to stop (``INTERRUPT_GRACE`` seconds to hand in), and
    :class:`RunInterrupted` is raised once they have.

    The ranks are forked by this interpreter's warm pool (:mod:`real.pool`), which has
    torch imported already: a run starts in milliseconds, not an import per rank.

    With a fault ``schedule``, the deaths it asks for are not failures: :class:`Restarts`
    records them and starts the ranks that come back; it goes into ``kept``, for the replay,
    whatever ends the loop (an interrupt too).

    On a testbed (``bed``: :class:`real.testbed.launch.Testbed`) each rank is started in its
    host's namespace instead, with the variables of a one-rank-per-host cluster."""
    pool: Any = bed.ranks if bed is not None else shared_pool()
    pool.runs += 1
    pids: list[int] = []
    codes: dict[int, int | None] = {}
    deadline = math.inf
    signals.asking = True
    restarts: Restarts | None = None

    restart_points = Path(scratch) / "restart"

    def start(rank: int, incarnation: int = 0, generation: int = 0, resume: int = 0) -> int:
        if bed is not None:
            env = bed.environment(rank, port)
        else:
            env = Placement(rank, nproc, rank, nproc, 0, "127.0.0.1", port, True, "local").env()
        # The run's checkpoints (w.save_checkpoint, and the whole run's with
        # recovery="restart") live in the launcher's own directory: they outlive any rank,
        # and go with the run.
        rank_options = asdict(options) | {
            "incarnation": incarnation,
            "checkpoints": str(Path(scratch) / "checkpoints"),
            "restart_points": str(restart_points),
            "generation": generation,
            "resume": resume,
        }
        spec = {"env": env, "options": rank_options}
        err = str(Path(scratch) / f"{slot(rank, incarnation)}.err")
        return pool.start([scratch, json.dumps(spec)], err)

    try:
        for rank in range(nproc):
            pids.append(start(rank))
            codes[pids[-1]] = None
        if schedule:
            job = restart_points if schedule.recovery == "restart" else None
            restarts = Restarts(schedule, nproc, owners or [], store, start, pool.kill, seed, job)
            if kept is not None:  # the caller keeps it, whatever ends this loop
                kept.append(restarts)
        asked = 0
        # (While every rank restarts from a checkpoint, none may be running for a while.)
        while any(code is None for code in codes.values()) or (
            restarts is not None and restarts.restarting
        ):
            if len(signals.received) > asked:
                asked = len(signals.received)
                # The first signal asks the ranks to stop; a second one stops waiting.
                grace = INTERRUPT_GRACE if asked == 1 else 0.0
                deadline = min(deadline, time.monotonic() + grace)
                store.set(STOP_KEY, "interrupted")
            codes.update(pool.poll([pid for pid, code in codes.items() if code is None]))
            if restarts is not None:
                restarts.poll(pids, codes)
            for rank, pid in enumerate(pids):
                code = codes[pid]
                if code not in (None, 0) and restarts is not None and restarts.died(rank, code):
                    continue  # the schedule's crash: recorded, restarted if it comes back
                if code not in (None, 0) and deadline == math.inf:
                    deadline = time.monotonic() + GRACE_SECONDS
                    # A rank killed by a signal could not say why, and peers that lost
                    # their connection to it may have reported that first: name it.
                    cause = _stderr_cause(scratch, rank, code)
                    if code < 0:
                        store.set(rendezvous.FAILED_KEY, f"rank {rank} failed: {cause}")
                    else:
                        rendezvous.report_failure(store, rank, cause)
                    store.set(STOP_KEY, "failed")
            if deadline == math.inf and _stopped_on_failure(store, codes, pids):
                deadline = time.monotonic() + 1.0  # they had their grace before leaving
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    finally:
        pool.runs -= 1
        running = [pid for pid, code in codes.items() if code is None]
        if running and pool.alive:  # (a broken pool was killed, and its ranks with it)
            pool.kill(running)
            while running:  # reap them, so none lingers
                codes.update(pool.poll(running))
                running = [pid for pid in running if codes[pid] is None]
                time.sleep(0.005)
    if signals.received:
        raise RunInterrupted(f"interrupted by {signals.received[0]}")


def _stopped_on_failure(store: Any, codes: dict[int, int | None], pids: list[int]) -> bool:
    """Whether a failure was reported (a silent rank, by a peer) and ranks have left since
    (after waiting a few seconds for the others to hand in): the rest are killed, as a
    stopped rank would never end by itself."""
    ended = sum(codes[pid] is not None for pid in pids)
    return 0 < ended < len(pids) and rendezvous.failure(store) is not None


def _stderr_cause(scratch: str, rank: int, code: int) -> str:
    """The library's own words when a rank died without saving its error (a gloo abort)."""
    path = Path(scratch) / f"{rank}.err"
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if "Warning" not in ln]
    cause = next((ln for ln in reversed(lines) if "what()" in ln or "enforce fail" in ln), None)
    cause = cause or (lines[-1] if lines else "no error output")
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    hint = ""
    if "mismatch" in cause:  # gloo's words for ranks calling different collectives or sizes
        hint = " (run the strategy in sim.run: it names the ranks and the calls that differ)"
    return f"process ended with {how}: {' '.join(cause.split())}{hint}"
