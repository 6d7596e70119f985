"""One rank of a real run: join the run, train, hand in what was measured, leave together.

The same code runs a rank however it was launched: forked by :func:`real.run` on one
machine (``main``, via the warm pool), or started by torchrun or srun on a cluster
(:mod:`real.cluster`). The launcher's environment says where the rank sits
(:class:`real.placement.Placement`); the run's shared store (:mod:`real.rendezvous`) is
where ranks meet, stop together, report the first failure and hand in their results.

A rank that fails hands in its error (one line, and the line of the strategy's code that
raised) and stops every other rank at its next ``yield``; each hands in what it measured,
so whoever writes the run directory keeps the rows gathered so far.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import torch
import torch.distributed as dist

import real
import runs
import strategies
from real import rendezvous
from real.crashes import RankFaults
from real.devices import device_for
from real.driver import drive
from real.handin import HandIn
from real.placement import LaunchError, Placement
from real.runtime import SILENCE, RealRuntime, StopSignal
from real.signals import interrupts, terminate_interrupts
from real.slowdowns import SlowDown, pause
from real.store import read_secret
from real.transport import TorchTransport
from strategies.comm import CommError, CommTimeout, Communicator, PeerFailure
from strategies.ledger import RunawayError
from strategies.recovery import survivable
from strategies.roles import TrainingSetup, build_role, make_trace
from strategies.snapshots import RankState

__all__ = ["RankOptions", "main", "one_line_error", "run_rank"]

START_KEY, CONFIG_KEY = "start", "config"
#: How long a rank that ran away (stepped far past the run's need) waits for a peer's error,
#: its likely cause, to be recorded first: it races ahead of a peer whose error is real.
RUNAWAY_GRACE = 10.0
FINISHED_KEY, COLLECTED_KEY, GONE_KEY = "finished", "collected", "gone"


#: commsim's own packages: an error's location is the innermost frame outside them (the
#: strategy's code), or commsim's own innermost frame when the error is commsim's alone.
_OWN = tuple(Path(m.__path__[0]).resolve() for m in (strategies, real, runs))


def _is_machinery(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in _OWN)


def one_line_error(error: BaseException) -> str:
    """``Type: message (at file:line in function)``, the frame being the innermost one outside
    commsim's own machinery when there is one: where the strategy's code raised."""
    message = " ".join(f"{type(error).__name__}: {error}".split())
    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if not _is_machinery(f.filename)]
    frame = (user or frames)[-1] if frames else None
    if frame is None or isinstance(error, LaunchError):
        return message
    return f"{message} (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"


@dataclass(frozen=True)
class RankOptions:
    """How a rank runs, the same on every rank.

    ``backend``: ``gloo`` or ``nccl`` (resolved). ``portable``: never post a receive from
    any source (NCCL has none; see :mod:`real.transport`). ``timeout``: seconds any one
    wait may take. ``collector``: rank 0 gathers every rank's results (on a cluster; the
    local launcher gathers them itself), so the others wait until it has. ``silence``:
    seconds without a heartbeat after which a rank others wait on is the run's failure
    (:class:`real.runtime.StopSignal`). ``eager``: hand in each evaluation point's state at
    once, for the run's watcher to evaluate (a target, :mod:`real.watch`).
    ``faults``: the run's fault schedule as recorded (:mod:`real.crashes`), or None;
    ``incarnation``: 0, or which restart of its rank this process is (it rejoins).
    ``checkpoints``: the directory ``w.save_checkpoint`` writes to (the local launcher's; None
    on a cluster, where a shared directory is not known). ``restart_points``: where the ranks
    write the run's checkpoints with ``recovery="restart"`` (:mod:`real.checkpoints`);
    ``generation``: how many times every rank was restarted from one before this process
    started (its own world process group), ``resume``: the step of the checkpoint it loads.
    ``links``, ``hosts``: a testbed's topology links and each rank's node (the topology's
    names), where its schedule takes a link down (:mod:`real.partitions`).
    """

    backend: str = "gloo"
    portable: bool = True
    timeout: float = 300.0
    collector: bool = False
    silence: float = SILENCE
    eager: bool = False
    faults: dict[str, Any] | None = None
    incarnation: int = 0
    checkpoints: str | None = None
    restart_points: str | None = None
    generation: int = 0
    resume: int = 0
    links: tuple[tuple[Hashable, Hashable], ...] | None = None
    hosts: tuple[Hashable, ...] | None = None


def _same_run(store: Any, setup: TrainingSetup, rank: int, timeout: float) -> None:
    """Every rank must run the same configuration: rank 0 publishes its own, the others
    compare (a node started with other flags would otherwise hang or silently diverge)."""
    mine = json.dumps(setup.config(), sort_keys=True, default=str)
    if rank == 0:
        store.set(CONFIG_KEY, mine)
        return
    store.wait([CONFIG_KEY], timedelta(seconds=timeout))
    theirs = bytes(store.get(CONFIG_KEY)).decode()
    if theirs != mine:
        ours, zeros = json.loads(mine), json.loads(theirs)
        fields = sorted(k for k in set(ours) | set(zeros) if ours.get(k) != zeros.get(k))
        raise LaunchError(
            f"rank {rank} was started with a different run than rank 0 (differing: "
            f"{', '.join(fields)}); start every rank with the same arguments"
        )


def _together(store: Any, timeout: float) -> None:
    """A barrier that a failure elsewhere ends at once: a rank that cannot start (another
    configuration, a model that fails to build) must not leave the others waiting."""
    work = dist.barrier(async_op=True)
    deadline = time.monotonic() + timeout
    while not work.is_completed():
        failed = rendezvous.failure(store)
        if failed is not None:
            raise LaunchError(f"the run stopped before training: {failed}")
        if time.monotonic() > deadline:
            raise LaunchError(
                f"not every rank was ready within {timeout:g} s; a rank is missing or stuck "
                "(its launcher's log says which)"
            )
        time.sleep(0.01)


def _nodes(placement: Placement, device: torch.device) -> tuple[int, ...]:
    """Every rank's node, from the launcher (one node when run locally). A tensor, not
    ``all_gather_object``: that one unpickles what peers send (docs/security.md)."""
    mine = torch.tensor([placement.node], dtype=torch.int64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(placement.world_size)]
    dist.all_gather(gathered, mine)
    return tuple(int(n.item()) for n in gathered)


def run_rank(
    setup: TrainingSetup,
    placement: Placement,
    options: RankOptions,
    collect: Callable[[Any], None] | None = None,
    secret: str | None = None,
    leaving: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run this rank to its end; its record (events, error, final state, times), which it
    has also handed in on the run's store, its events as it went (:mod:`real.handin`).
    Raises what the rank raised, after handing in. SIGINT and SIGTERM while it trains stop
    the run (reason ``interrupted``) at the program's next ``yield``.

    ``collect``: on the collector (rank 0 with ``options.collector``), called with the
    run's store once this rank has handed in; it gathers the others' records and writes
    the run, and the other ranks stay until it returns. ``secret``: the run's, which signs
    every value on the store (:mod:`real.store`). ``leaving``: called as this process leaves
    by a fault schedule's crash or halt (:attr:`real.crashes.RankFaults.before_exit`)."""
    rank, world = placement.rank, placement.world_size
    if setup.world_size != world:
        raise LaunchError(
            f"the run is configured for {setup.world_size} ranks but the launcher started "
            f"{world} (WORLD_SIZE/SLURM_NTASKS); drop --nproc under torchrun or srun, or make "
            "them agree"
        )
    store, watch = rendezvous.connect(placement, options.timeout, secret)
    record: dict[str, Any] = {"events": [], "error": None, "final": None}
    faults = RankFaults.of(options, setup, rank, secret, placement)
    owners = faults.owners if faults is not None else setup.strategy.owners(world)[0]
    signal = StopSignal(store, watch, len(owners), setup.steps, rank, world, options.silence)
    # A process of a job restarted from a checkpoint is a new one, not a rejoining one.
    rejoined = options.incarnation > 0 and options.generation == 0
    if faults is not None:
        signal.faults = faults
        if placement.launcher == "torchrun":  # its agent restarts every worker (real.elastic)
            from real.elastic import HALT_CODE

            faults.elastic, faults.halt_code = True, HALT_CODE
        faults.before_exit = leaving
    quorums: list[RankFaults] = []  # without a schedule: made if the program asks a quorum

    def fault_free() -> RankFaults:
        quorums.append(RankFaults.without_faults(options, setup, rank, secret, placement))
        return quorums[0]

    # A run that evaluates as it goes needs the states at once. Local processes hand them in
    # as they go over loopback (a rank killed outright keeps its evaluation points), a
    # testbed's over its management network; across a cluster's links they would share the
    # training's links: sent last; but not with a fault schedule (under torchrun), whose crash
    # and restarts would lose what a rank killed or halted held back.
    hold = (
        not options.eager and not options.faults and placement.launcher not in ("local", "testbed")
    )
    handin = HandIn(store, rank, hold_states=hold, incarnation=options.incarnation)
    ctx = runtime = None
    interrupted: list[str] = []

    def interrupt(name: str) -> None:
        # Ctrl-C reaches every process of the launcher's group, and a cluster's scheduler
        # sends SIGTERM: from training on, until the rank has handed in, either stops the
        # run at the next `yield` (the rank then hands in and leaves as at any stop). Only
        # a flag here: no lock, no store call (the watcher thread sets the stop).
        interrupted.append(name)
        signal.interrupt()

    taking = ExitStack()  # the handler above, from training until the rank has handed in
    try:
        device = device_for(options.backend, placement.local_rank)
        wait = timedelta(seconds=options.timeout)
        if not rejoined:  # a restarted rank joins only quorums and pair links (transport.links)
            # Every rank restarted from a checkpoint meets the others in a new world group.
            prefix = "pg" if options.generation == 0 else f"pg.{options.generation}"
            dist.init_process_group(
                options.backend,
                store=dist.PrefixStore(prefix, store.raw),
                rank=rank,
                world_size=world,
                timeout=wait,
            )
            _same_run(store, setup, rank, options.timeout)
            _together(store, options.timeout)
        if setup.nodes is not None:
            nodes = setup.nodes
        else:
            nodes = (placement.node,) * world if rejoined else _nodes(placement, device)
        runtime = RealRuntime(rank, setup.steps, setup.eval_every, owners, signal, device)
        runtime.trace = make_trace(setup, "real")  # its limit per rank bounds the hand-in
        runtime.eager = options.eager
        runtime.checkpoints = Path(options.checkpoints) if options.checkpoints else None
        slow = SlowDown(faults.schedule, rank) if faults is not None else None
        if slow is not None and slow.active:  # a transient straggler (real.slowdowns)
            assert faults is not None
            wakes = (signal.event, faults.requested)
            runtime.gradients.slowdown = slow.factor
            runtime.gradients.pause = lambda seconds: pause(seconds, wakes)
        record["events"] = runtime.events
        transport = TorchTransport(
            rank,
            world,
            runtime.now,
            runtime.charged,
            device=device,
            portable=options.portable or options.backend == "nccl",
            agree=lambda index, ranks: rendezvous.agree_on_group(
                store, rank, world, index, ranks, options.timeout, signal.event.is_set
            ),
            faults=faults,
            quorums=fault_free if faults is None else None,
        )
        runtime.inline = transport
        ctx, program = build_role(
            setup,
            rank,
            Communicator(rank, world, transport),
            runtime,
            nodes=nodes,
            device=device,
        )
        if rejoined:
            ctx.rejoined = True
        else:
            _together(store, options.timeout)
        if rank == 0 and not rejoined and options.generation == 0:
            store.set(START_KEY, repr(time.time()))
        runtime.start = float(store.get(START_KEY))
        restarts_job = faults is not None and faults.schedule.recovery == "restart"
        if restarts_job and options.restart_points:
            assert faults is not None
            directory = Path(options.restart_points)
            if options.generation > 0:  # every rank from the last complete checkpoint
                runtime.resume(ctx, directory, options.resume)
                faults.rejoined()  # in the global model again, at its step
            runtime.restart_points = (directory, _interval(faults, runtime, ctx))
        taking.enter_context(interrupts(interrupt))

        def crash_now() -> None:
            # The schedule's crash: hand in what was measured, say it was scheduled, and
            # die as a killed process dies (no clean-up, no closing record).
            assert faults is not None and runtime is not None
            if faults.lines_up and ctx is not None and not faults.requested.is_set():
                # A crash at global step k, as sim's: once every live owner applied it (its
                # steps are in the run's ledger before the crash, whatever their stamps).
                faults.wait_for_step(ctx.step, faults.owners)
                # ... after what it started before that step has landed, as in sim.
                transport.settle(ctx.step, max(faults.detect, 1.0))
            handin.events(runtime.events, force=True)
            faults.crash(runtime.now())

        def tick() -> None:
            handin.events(runtime.events, force=runtime.hand_in_now())
            if faults is not None and ctx is not None and faults.due(ctx.step):
                crash_now()
            if faults is not None and ctx is not None:
                faults.hold_for_restarts(ctx.step, runtime.stopped)

        if faults is not None:
            runtime.crash_now = crash_now
            if rejoined:
                faults.ready()  # (the owners wait for it at its restart step)

        record["ended"] = drive(runtime, ctx, program, options.timeout, tick=tick)
        if interrupted and faults is not None and faults.elastic and faults.restarting():
            # torchrun's agent stops every worker once one died (SIGTERM): a halt, not
            # the run's interrupt, which would stop the restarted workers too.
            handin.events(runtime.events, force=True)
            faults.halt()
        if interrupted:  # the others stop too, and hand in theirs
            signal.stop("interrupted")
        if rank in owners:
            record["final"] = ctx.parameters().cpu()
    except BaseException as error:
        if faults is not None and faults.halts_on(error):
            # A peer crashed and every rank restarts from the last checkpoint: hand in what
            # was measured, and leave without a failure (the launcher starts a new process).
            handin.events(record["events"], force=True)
            faults.halt()
        record["error"] = one_line_error(error)
        if isinstance(error, CommTimeout):  # a skipped new_group leaves its peers waiting
            record["error"] = rendezvous.group_shortfall(store, world) or record["error"]
        if isinstance(error, PeerFailure) and faults is not None:
            # A crash the program did not survive: the run's one line, as sim says it.
            step = ctx.step if ctx is not None else 0
            at = runtime.now() if runtime is not None else 0.0
            rendezvous.report_silence(
                store,
                f"the run failed at t={at:.6g}s after {step} steps: "
                f"{' '.join(str(error).split())}. {survivable(setup.strategy)}",
            )
        elif isinstance(error, CommError):  # a peer may have died: name it, if one is silent
            for dead in rendezvous.silent_ranks(store, world):
                rendezvous.report_failure(
                    store,
                    dead,
                    f"it stopped responding (no heartbeat for 3 s: killed, or crashed in "
                    f"the library; its own log says why) while rank {rank} got: "
                    f"{record['error']}",
                )
        if isinstance(error, RunawayError):  # a symptom: let a peer name the cause first
            _wait_for_failure(store, RUNAWAY_GRACE)
        rendezvous.report_failure(store, rank, record["error"])
        try:
            signal.stop("failed")
        except Exception:
            pass
        raise
    finally:
        for made in [faults] if faults is not None else quorums:
            made.close()
        if ctx is not None and runtime is not None:
            runtime.ended(ctx)
        record["stop_reason"] = signal.reason
        if runtime is not None:
            record["times"] = (
                runtime.now(),
                runtime.compute_time,
                runtime.comm_time,
                runtime.overlap.seconds(rank),
            )
            record["gradients"] = list(runtime.gradient_marks)
            if runtime.trace is not None:  # with its overlapped communication's track
                for label, since, until in runtime.overlap.pieces(rank):
                    runtime.trace.overlapped(rank, label, since, until)
                record["trace"] = runtime.trace.export(rank)
        try:
            _hand_in_and_leave(store, placement, options, handin, record)
            if options.collector and rank == 0:
                try:
                    if collect is not None:
                        collect(store)
                finally:
                    leave_last(store, time.monotonic() + options.timeout)
        finally:
            taking.close()
    return record


def _interval(faults: RankFaults, runtime: RealRuntime, ctx: Any) -> Callable[[Any], int | None]:
    """The run's checkpoint interval in steps as this process asks it at each step: the
    schedule's ``checkpoint_every``, or Young/Daly's (:meth:`RankFaults.checkpoint_every`)
    from this process's seconds per step since now."""
    began, first = runtime.now(), ctx.step

    def measure(c: Any) -> tuple[float, int]:
        per_step = (runtime.now() - began) / max(c.step - first, 1)
        return per_step, RankState.of(c).nbytes

    return lambda c: faults.checkpoint_every(c.step, lambda: measure(c), runtime.stopped)


def _wait_for_failure(store: Any, seconds: float) -> None:
    """Wait up to ``seconds`` for the run's first failure to be recorded."""
    deadline = time.monotonic() + seconds
    while rendezvous.failure(store) is None and time.monotonic() < deadline:
        time.sleep(0.02)


def _hand_in_and_leave(
    store: Any,
    placement: Placement,
    options: RankOptions,
    handin: HandIn,
    record: dict[str, Any],
) -> None:
    """Hand in the record, then leave together: operations abandoned at the stop may still
    be pending, so no rank exits (closing its connections) while a peer still runs; with a
    collector, no rank exits before it has written the run (torchrun would stop it); the
    rank that hosts the store leaves last."""
    rank, world = placement.rank, placement.world_size
    deadline = time.monotonic() + options.timeout
    try:
        handin.final(record["events"], {k: v for k, v in record.items() if k != "events"})
        store.add(FINISHED_KEY, 1)
        if options.collector and rank == 0:
            return  # the collector gathers and writes first (see run_rank)
        while int(store.add(FINISHED_KEY, 0)) < world and time.monotonic() < deadline:
            if rendezvous.failure(store) is not None:
                deadline = min(deadline, time.monotonic() + 5.0)
            time.sleep(0.005)
        if options.collector:
            while not store.check([COLLECTED_KEY]) and time.monotonic() < deadline:
                time.sleep(0.02)
        store.add(GONE_KEY, 1)
        if rank == 0 and not placement.agent_store:
            leave_last(store, deadline)
    except Exception:  # the store's host left first: nothing more to wait for
        return


def leave_last(store: Any, deadline: float) -> None:
    """Rank 0 says the run is collected, then waits for the others that finished to leave
    (it may host the store they use); a rank that died never will."""
    try:
        store.set(COLLECTED_KEY, "1")
        while int(store.add(GONE_KEY, 0)) < int(store.add(FINISHED_KEY, 0)) - 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
    except Exception:
        return


def main(argv: list[str]) -> int:
    """A rank forked by the local launcher: ``SCRATCH OPTIONS_JSON``; its placement is in
    the options (the torchrun variables the launcher would otherwise set)."""
    scratch, spec = Path(argv[0]), json.loads(argv[1])
    torch.set_num_threads(1)  # N ranks share the machine's cores, as they would share a node
    # The pool ignores both (the launcher decides); here they end the set-up as Ctrl-C does,
    # and stop the run once it trains (run_rank).
    os.environ.update(spec["env"])
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    placement = Placement.from_env(os.environ)
    assert placement is not None
    # Trusted because it is the launcher's own file, in its own 0700 directory (mkdtemp),
    # which only the launcher's user can write: nothing read from the network is unpickled
    # (docs/security.md).
    with open(scratch / "setup.pkl", "rb") as f:
        setup = cloudpickle.load(f)
    try:
        # The pool ignores SIGINT and SIGTERM (the launcher decides): here they end the set-up
        # as Ctrl-C does, and stop the run once it trains (run_rank).
        with terminate_interrupts():
            run_rank(setup, placement, RankOptions(**spec["options"]), secret=read_secret(scratch))
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
