"""``sim.run``: train a real model with a strategy on a simulated network and clock.

Ranks map to the topology's hosts in rank order. Every rank's program runs as a SimPy
process; all communication goes through one :class:`~sim.network.Network`, so concurrent
traffic shares links; compute advances the clock by the compute model while the real
forward/backward runs.
"""

from __future__ import annotations

import gc
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import networkx as nx
import simpy
import torch

import topologies
import workloads
from faults import FaultSchedule
from options.declare import OptionError
from runs import RunResult, RunWriter, check_out, gradient_times
from runs.metric import Target, target_of
from sim.artifacts import link_counters, save_topology, write_links
from sim.checkpoints import Checkpoints
from sim.comm import Fabric
from sim.compute import ComputeModel
from sim.device_memory import device_memory
from sim.gc_freeze import set_up_left_alone
from sim.injector import FaultInjector
from sim.memory import RunSize, check_before_building, check_fits, out_of_memory
from sim.network import LinkFailure, Network
from sim.network_options import network_record
from sim.progress import StepProgress
from sim.routing import check_routing_on
from sim.runtime import SimRuntime
from sim.timing_only import (
    check_timing_compute,
    check_timing_only,
    check_timing_workload,
    real_tensors,
    shapes_only,
    timing_result,
    value_read,
)
from strategies import CommError, PeerFailure, Strategy
from strategies.base import close_program
from strategies.handles import Handle
from strategies.ledger import Ledger
from strategies.outcome import result_of
from strategies.recovery import survivable
from strategies.roles import (
    RankLayout,
    TrainingSetup,
    build_role,
    initial_parameters,
    make_ledger,
    make_trace,
    positive_int,
)
from topologies.limits import format_bytes, format_count, memory_limit

__all__ = ["MIN_TIME", "run", "SimulationError"]

#: The shortest ``max_time``: a nanosecond, below anything a link or a device does.
MIN_TIME = 1e-9


class SimulationError(RuntimeError):
    """The simulation could not go on (for example every rank waits for another: a deadlock)."""


def _topology(spec: Any) -> nx.Graph:
    from topologies.io import from_spec  # validates graphs too

    return from_spec(spec)


def _network_options(network: str | Mapping[str, Any]) -> dict[str, Any]:
    """What the run records of ``network``, checked by its declaration; a bad option is one
    line that starts with its path (``network.routing: ...``)."""
    try:
        return network_record(network)
    except OptionError as exc:
        where = f"network.{exc.field}" if exc.field else "network"
        raise OptionError(f"{where}: {exc}", exc.field) from None


def run(
    strategy: str | Strategy,
    workload: str | Any,
    topology: nx.Graph | str | Mapping[str, Any],
    *,
    steps: int,
    compute: float | str | Mapping[str, Any] | ComputeModel = 0.01,
    network: str | Mapping[str, Any] = "flow",
    optimizer: Any = None,
    lr_schedule: Any = None,
    seed: int = 0,
    eval_every: int = 10,
    max_time: float | None = None,
    target_loss: float | None = None,
    target_return: float | None = None,
    accumulate: int = 1,
    out: str | Path | None = None,
    progress: bool = False,
    threads: int | None = 1,
    record: dict[str, Any] | None = None,
    faults: Any = None,
    timing_only: bool = False,
) -> RunResult:
    """Simulate training ``workload`` with ``strategy`` on ``topology``.

    Parameters
    ----------
    strategy
        A :class:`strategies.Strategy`, a registered name (``"allreduce"``) or a spec as the
        command line writes it (``"local_sgd:period=8"``).
    workload
        A :class:`workloads.Workload` or a registered name (``"mlp_digits"``).
    topology
        A validated graph, or a spec understood by ``topologies.io.from_spec``.
    steps
        Global steps to run: optimizer steps of the strategy's global model (the run may stop
        earlier on ``max_time`` or a target, or when every program has ended).
    compute
        Seconds per micro-batch, ``"measure"``, ``"flops"``, a dict of
        :class:`sim.compute.ComputeModel` fields, or a model.
    network
        ``"flow"`` (max-min bandwidth sharing), ``"analytic"`` (alpha-beta, no contention),
        or ``{"model": ..., "sharing": "maxmin" | "rtt", "efficiency": 0.95, "collectives":
        {"all_reduce": "ring"}, "unfairness": 0.3, "routing": "ecmp" | "spray" | "single" | "dmodk"}``
        (the payload fraction of links without their own ``efficiency``; what ``auto`` stands
        for: a rule, ``"commsim"`` (the default), ``"gloo"`` or ``"nccl"``, and/or algorithms
        by collective, see :mod:`sim.collectives.rules`; how unevenly concurrent flows share a
        bottleneck; and how flows use equal-cost paths; see :class:`sim.network.Network`).
    optimizer, lr_schedule
        See :class:`strategies.OptimizerSpec` and :class:`strategies.ScheduleSpec` (a spec
        string too: ``"sgd:lr=0.1,momentum=0.9"``, ``"cosine:warmup=10"``).
    seed
        Seeds model initialisation, data order, stragglers, the flows' sharing weights
        (``network.unfairness``) and their paths (``network.routing="ecmp"``): same seed,
        same metrics.
    eval_every
        Evaluate the global model every this many steps (and at the start and the end).
    max_time, target_loss, target_return
        Optional stop conditions: simulated seconds, and a level of the workload's metric to
        reach (:mod:`runs.metric`): a held-out loss (at or below it), or, for a workload
        whose metric is the mean episodic return, a return (at or above it). The target
        that is not the workload's metric is refused in one line naming the one that is.
    accumulate
        Micro-batches per gradient (gradient accumulation).
    out
        If given (a str or a path), a directory written as the run goes (``run.json``, ``metrics.parquet``,
        ``topology.json``; at the end ``trace.json`` and ``links.parquet``: see
        :mod:`runs.schema`). The result's ``trace`` holds the timeline either way.
    progress
        Show a progress bar of global steps.
    threads
        torch intra-op threads during the run (restored afterwards); ``None`` leaves torch's
        setting. A simulation runs many small operations, where extra threads only add
        synchronisation: on a loaded two-core machine one thread was 20x faster.
    record
        Extra top-level keys for ``run.json`` (``studies.experiment`` records the experiment
        file it ran).
    faults
        A fault schedule (:class:`faults.FaultSchedule`: a list of events, a dict with
        ``events``, ``detect`` and ``reroute``, or a TOML/JSON file): crashes at a step, a
        time or at random with restarts, transient stragglers, links slowed or down. A fault
        no program survives ends the run with one line naming it (``SimulationError``),
        its rows written; the summary then counts ``failures``, ``restarts``,
        ``lost_steps``, ``lost_samples``, ``recovery_time``, ``heal_bytes`` and ``goodput``.
    timing_only
        Time the run without computing it (:mod:`sim.timing_only`): the model, gradients and
        payloads are shapes on PyTorch's meta device, every message moves its true bytes,
        compute takes the compute model's time, and memory stays flat in the ranks. No
        evaluation rows; the summary adds ``step_time`` (simulated seconds per global step).

    Raises
    ------
    devices.DoesNotFit
        Before anything is built or written, when the compute model names a device
        (``base="flops"`` or ``"roofline"``) and a worker's peak memory on it
        (:mod:`sim.device_memory`) does not fit, unless ``compute.memory="report"``; such
        runs' summaries record ``peak_memory_gb`` and its parts.
    ValueError
        Before anything is built or written, for a run whose estimated memory
        (``sim.memory``: the topology, each rank's state, the workers' model replicas)
        exceeds this machine's.
    MemoryError
        One line saying the run ran out of memory, with its size and estimate; ``out``
        keeps ``run.json`` (status ``failed``) and the rows written so far.

    Examples
    --------
    >>> result = run("allreduce", "quadratic", topologies.ring(4), steps=20, eval_every=10)
    >>> result.summary["steps"], list(result.evals["step"])
    (20, [0, 10, 20])
    >>> bool(result.evals["loss"].iloc[-1] < result.evals["loss"].iloc[0])
    True
    """
    workload = workloads.get(workload) if isinstance(workload, str) else workload
    check_timing_only(timing_only, target_loss, target_return=target_return)
    graph = _topology(topology)
    setup = TrainingSetup.create(
        strategy,
        workload,
        len(topologies.hosts(graph)),
        steps=steps,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        seed=seed,
        accumulate=accumulate,
        eval_every=eval_every,
        host_graph=topologies.host_graph(graph),
        timing_only=timing_only,
    )
    compute_model = ComputeModel.parse(compute)
    check_timing_compute(timing_only, compute_model)
    check_timing_workload(timing_only, workload)
    compute_model.check_world(setup.world_size, setup.workers)
    net_options = _network_options(network)
    check_routing_on(net_options["routing"], graph)  # before anything is written
    max_time = _optional_positive("max_time", max_time)
    target = target_of(workload, target_loss=target_loss, target_return=target_return)
    if threads is not None:
        positive_int("threads", threads)
    schedule = FaultSchedule.parse(
        faults,
        world_size=setup.world_size,
        links=[(str(u), str(v)) for u, v in graph.edges],
        steps=steps,
    )
    # Memory, before anything is built or written: the simulated device's (a worker's peak,
    # when the compute model names a device), then this machine's (the replicas to allocate).
    memory = device_memory(setup, compute_model)
    check_before_building(graph, len(setup.workers), workload, timing_only)
    out = check_out(out)
    config = {
        "backend": "sim",
        **setup.config(),
        "topology": topologies.record(graph),
        "compute": compute_model.config(),
        "network": net_options,
        "max_time": max_time,
        "target_loss": target_loss,
        **({"target_return": target_return} if target_return is not None else {}),
        **({"faults": schedule.record()} if schedule else {}),
        **({"timing_only": True} if timing_only else {}),
    }
    with _torch_threads(threads):
        initial = initial_parameters(setup)
    size = RunSize.of(
        graph, len(setup.workers), initial.numel(), initial.element_size(), timing_only
    )
    check_fits(size)  # before anything is written: a run that cannot fit is refused
    writer = RunWriter(out, config, record=record) if out is not None else None
    if writer is not None:
        save_topology(graph, writer.directory)
    with _torch_threads(threads), writer or nullcontext(), shapes_only(timing_only):
        ran_out: str | None = None
        try:
            return _simulate_run(
                setup,
                graph,
                initial,
                compute_model,
                net_options,
                config,
                writer,
                max_time,
                target,
                progress,
                schedule,
                memory,
            )
        except (MemoryError, ImportError, RuntimeError, NotImplementedError, TypeError) as error:
            read = value_read(error) if timing_only else None
            if read is not None:  # a program read a number a timing-only run does not have
                raise ValueError(read) from None
            if not out_of_memory(error):
                raise
            ran_out = _one_line(error)
        # Raised outside the handler, so that the failed run's frames and everything they
        # held are let go: the run directory's record is then written with memory to spare.
        gc.collect()
        kept = f"; {writer.directory} keeps what was written so far" if writer else ""
        raise MemoryError(
            f"the simulation ran out of memory with {format_count(size.ranks)} ranks ({ran_out}); "
            f"it needs {size.describe()} and this machine has "
            f"{_memory_here()}: use fewer hosts or a smaller model{kept}"
        )


def _on_eval(bar: StepProgress, writer: RunWriter | None) -> Callable[[list[dict[str, Any]]], None]:
    """After each evaluation: the bar shows the new loss, and the rows so far are written."""

    def seen(rows: list[dict[str, Any]]) -> None:
        bar.observe(rows)
        if writer is not None:
            writer.flush(rows)

    return seen


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or value < MIN_TIME:
        raise ValueError(
            f"{name}={value!r} must be a finite number of simulated seconds >= {MIN_TIME:g}"
        )
    return float(value)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_line(error: BaseException) -> str:
    """``"TypeName: the first line of its message"``, at most 120 characters.

    Examples
    --------
    >>> _one_line(MemoryError()), _one_line(ImportError("Unable to find an engine\\nmore"))
    ('MemoryError', 'ImportError: Unable to find an engine')
    """
    lines = str(error).strip().splitlines()
    return (f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__)[:120]


def _memory_here() -> str:
    limit = memory_limit()
    return "an unknown amount" if limit is None else format_bytes(limit)


def _simulate_run(
    setup: TrainingSetup,
    graph: nx.Graph,
    initial: torch.Tensor,
    compute_model: ComputeModel,
    net_options: dict[str, Any],
    config: dict[str, Any],
    writer: RunWriter | None,
    max_time: float | None,
    target: Target | None,
    progress: bool,
    schedule: FaultSchedule,
    memory: dict[str, float] | None = None,
) -> RunResult:
    strategy, world_size = setup.strategy, setup.world_size
    wall_start = time.perf_counter()
    with real_tensors(setup.timing_only):  # FLOPs are counted on the workload's own tensors
        compute_model.resolve(
            setup.workload,
            setup.seed,
            workers=len(setup.workers),
            **({"numel": initial.numel()} if setup.timing_only else {}),
        )
    config["compute"]["seconds"] = compute_model.seconds_or_none()  # what 'measure' measured
    if compute_model.server == "measure":
        config["compute"]["server_seconds"] = compute_model.server_seconds_or_none()
    env = simpy.Environment()
    net = Network(env, graph, **net_options, seed=setup.seed)
    if max_time is not None:  # the run processes no event after it (_simulate)
        net.timer.horizon = max_time
    fabric = Fabric(env, net, world_size, detect=schedule.detect)
    fabric.faulty = bool(schedule)
    net.reroute_delay = schedule.reroute
    net.detect = schedule.detect
    owners, _ = strategy.owners(world_size)
    bar = StepProgress(setup.steps, enabled=progress, clock=lambda: float(env.now))
    # Who hears of each new global step: the bar, and the fault injector where there is one.
    stepped: list[Callable[[int], None]] = [bar.update]

    def on_step(k: int) -> None:
        for observer in stepped:
            observer(k)

    ledger = make_ledger(
        setup,
        clock=lambda: float(env.now),
        bytes_sent=lambda: float(net.bytes_sent),
        target=target,
        on_step=on_step,
        on_eval=_on_eval(bar, writer),
        faults=bool(schedule),
    )
    trace = make_trace(setup, "sim")
    runtime = SimRuntime(env, compute_model, ledger, setup.accumulate, trace)
    runtime.storage = schedule.checkpoint_seconds
    fabric.local_work = runtime.local_work
    # One layout for every rank: the world-sized lists exist once, not once per rank.
    layout = RankLayout.of(setup, topologies.rank_nodes(graph))
    contexts, programs = {}, {}
    for rank in range(world_size):
        contexts[rank], programs[rank] = build_role(
            setup, rank, fabric.communicator(rank), runtime, initial.clone, layout=layout
        )
    ledger.start({r: contexts[r].parameters for r in owners})
    processes = {r: env.process(runtime.drive(contexts[r], programs[r])) for r in range(world_size)}
    injector = None
    if schedule:

        def rebuild(rank: int) -> tuple[Any, Any]:
            return build_role(
                setup, rank, fabric.communicator(rank), runtime, initial.clone, layout=layout
            )

        def restarted(rank: int, ctx: Any, program: Any) -> None:
            contexts[rank], programs[rank] = ctx, program

        injector = FaultInjector(
            schedule, env, fabric, runtime, ledger, processes, rebuild, setup.seed, restarted
        )
        stepped.append(injector.on_step)
        if schedule.recovery == "restart":
            injector.use_checkpoints(Checkpoints(schedule, runtime, ledger, contexts))
    try:
        with bar, set_up_left_alone():
            try:
                reason = _simulate(
                    env, ledger, runtime, fabric, processes, max_time, injector=injector
                )
            except PeerFailure as failure:  # a program that does not survive a fault
                raise SimulationError(_fault_ended(failure, setup, env, ledger, writer)) from None
            if injector is not None and injector.failure is not None:
                raise SimulationError(
                    _fault_ended(injector.failure, setup, env, ledger, writer, injector.cut)
                ) from None
    finally:
        closing: list[BaseException] = []
        for rank, program in programs.items():
            try:  # a program learns the stop at its yield; its finally blocks run
                close_program(program, rank, contexts[rank].role)
            except RuntimeError as exc:
                closing.append(exc)
        if closing and sys.exc_info()[1] is None:
            raise closing[0]
    if reason == "max_time" and ledger.step == 0:
        warnings.warn(
            f"max_time={max_time!r} ended the run before its first global step (at "
            f"t={env.now:g}s); raise max_time to let it train",
            stacklevel=3,
        )
    ended = {r: contexts[r].parameters for r in owners} if reason == "finished" else None
    ledger.finish(reason, ended)
    runtime.record_rank_times()
    # What `auto` resolved to is part of what the run was: recorded with its config.
    config["auto"] = {"rule": net.planner.rule.spec, "collectives": net.planner.auto_choices}
    trace.evals(ledger.rows)
    trace.faults(ledger.rows)  # fault rows as instant events (none in a run without faults)
    link_counters(trace, net, 0.0, float(env.now))
    result = result_of(
        ledger,
        config,
        time=env.now,
        nbytes=net.bytes_sent,
        wall_time=time.perf_counter() - wall_start,
        trace=trace,
        compute=gradient_times(runtime.gradient_seconds),
    )
    if setup.timing_only:
        timing_result(result)
    if memory is not None:  # the device's memory (sim.device_memory)
        result.summary.update(memory)
    if writer is not None:
        write_links(net, 0.0, float(env.now), writer.directory)
        writer.finish(result)  # writes trace.json, then the record
    return result


def _fault_ended(
    failure: PeerFailure | str,
    setup: TrainingSetup,
    env: simpy.Environment,
    ledger: Ledger,
    writer: RunWriter | None,
    advised: bool = False,
) -> str:
    """The one line a run ended by a fault raises with; its rows are written first
    (``advised``: ``failure`` says itself what would survive it)."""
    ledger.finish("failed")
    if writer is not None:
        writer.flush(ledger.rows, force=True)
    kept = f"; {writer.directory} keeps its rows" if writer is not None else ""
    cause = failure.__cause__ if isinstance(failure, BaseException) else None
    while cause is not None and not isinstance(cause, LinkFailure):  # SimPy copies errors
        cause = cause.__cause__
    advice = (
        "links down with no other path cut ranks off: give the link_down an 'until' (an "
        "outage that ends stalls the flows, which then go on), or a topology with another "
        "path (fat_tree, torus), where flows reroute"
        if cause is not None
        else survivable(setup.strategy)
    )
    if advised:
        return (
            f"the run failed at t={float(env.now):.6g}s after {ledger.step} steps: {failure}{kept}"
        )
    return (
        f"the run failed at t={float(env.now):.6g}s after {ledger.step} steps: {failure}. "
        f"{advice}{kept}"
    )


def _simulate(
    env: simpy.Environment,
    ledger: Ledger,
    runtime: SimRuntime,
    fabric: Fabric,
    processes: Mapping[int, simpy.Process],
    max_time: float | None,
    injector: FaultInjector | None = None,
) -> str:
    """Step the engine until a stop condition, the time budget, the end, or a deadlock;
    return why it stopped."""
    while ledger.stop_reason is None:  # an attribute read: this loop runs once per event
        if (
            runtime.running == 0
            and all(not p.is_alive for p in processes.values())
            and (injector is None or not injector.pending_restarts)
        ):
            # Only a run whose programs all ended has made every group it ever will.
            fabric.check_groups()
            return "finished"
        upcoming = env.peek()
        if upcoming == math.inf:
            report = _deadlock(env, ledger, runtime, fabric)
            try:
                fabric.check_groups()
            except CommError as missing:  # a missing new_group explains a deadlock best
                raise CommError(f"{missing}. The {report}") from None
            raise SimulationError(report)
        if max_time is not None and upcoming > max_time:
            if max_time > env.now:  # nothing happens before then: just move the clock
                env.run(until=max_time)
            return "max_time"
        try:
            env.step()
        except PeerFailure:
            if injector is None or not injector.restarting:
                raise
            # A program that failed while every rank is about to restart: it is replaced.
    return ledger.stop_reason or "finished"


def _deadlock(env: simpy.Environment, ledger: Ledger, runtime: SimRuntime, fabric: Fabric) -> str:
    waits = []
    for rank, handle in runtime.waiting().items():
        pending = [h for h in _leaves(handle) if not h.done] or [handle]
        described = []
        for h in pending:
            missing = fabric.missing(h)
            if missing:
                described.append(f"{h.describe()}, which ranks {missing} have not joined")
            elif fabric.unmatched(h):
                described.append(f"{h.describe()}, which no rank has matched")
            else:
                described.append(h.describe())
        waits.append(f"rank {rank} waits on {' and '.join(described)}")
    return (
        f"deadlock at t={env.now:.6g}s after {ledger.step} steps: {'; '.join(waits)}. Every "
        "rank must make matching calls: collectives in the same order, and a recv posted for "
        "every send (a send completes only once its recv is posted, as in gloo and NCCL)"
    )


def _leaves(handle: Handle[Any]) -> list[Handle[Any]]:
    if not handle.children:
        return [handle]
    return [leaf for child in handle.children for leaf in _leaves(child)]
