"""``sim.run``: train a real model with a strategy on a simulated network and clock.

Ranks map to the topology's hosts in rank order. Every rank's program runs as a SimPy
process; all communication goes through one :class:`~sim.network.Network`, so concurrent
traffic shares links; compute advances the clock by the compute model while the real
forward/backward runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import simpy
import torch

import topologies
import workloads
from sim.comm import Fabric
from sim.compute import ComputeModel
from sim.network import Network
from sim.progress import UpdateProgress
from sim.runtime import SimRuntime
from strategies import OptimizerSpec, ScheduleSpec, Strategy
from strategies import get as get_strategy
from strategies.replica import Replica
from strategies.results import RunResult, RunWriter
from strategies.roles import TrainingSetup, build_role, initial_parameters

__all__ = ["run", "SimulationError"]


class SimulationError(RuntimeError):
    """The simulation could not go on (for example every rank waits for another: a deadlock)."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def _topology(spec: Any) -> nx.Graph:
    if isinstance(spec, nx.Graph):
        return topologies.validate(spec)
    from topologies.io import from_spec

    return from_spec(spec)


def _network_options(network: str | Mapping[str, Any]) -> dict[str, Any]:
    options = {"model": network} if isinstance(network, str) else dict(network)
    unknown = set(options) - {"model", "sharing"}
    if unknown:
        raise ValueError(
            f"network options {sorted(unknown)} are unknown; use 'model' and 'sharing'"
        )
    return options


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
    accumulate: int = 1,
    out: str | Path | None = None,
    progress: bool = False,
    threads: int | None = 1,
) -> RunResult:
    """Simulate training ``workload`` with ``strategy`` on ``topology``.

    Parameters
    ----------
    strategy
        A :class:`strategies.Strategy` or a registered name (``"allreduce"``).
    workload
        A :class:`workloads.Workload` or a registered name (``"mlp_digits"``).
    topology
        A validated graph, or a spec understood by ``topologies.io.from_spec``.
    steps
        Global updates to run (the run may stop earlier on ``max_time`` or ``target_loss``).
    compute
        Seconds per micro-batch, ``"measure"``, ``"flops"``, a dict of
        :class:`sim.compute.ComputeModel` fields, or a model.
    network
        ``"flow"`` (max-min bandwidth sharing), ``"analytic"`` (alpha-beta, no contention),
        or ``{"model": ..., "sharing": "maxmin" | "rtt"}``.
    optimizer, lr_schedule
        See :class:`strategies.OptimizerSpec` and :class:`strategies.ScheduleSpec`.
    seed
        Seeds model initialisation, data order and stragglers: same seed, same metrics.
    eval_every
        Evaluate the global model every this many updates (and at the start and the end).
    max_time, target_loss
        Optional stop conditions: simulated seconds, and a held-out loss to reach.
    accumulate
        Micro-batches per gradient (gradient accumulation).
    out
        If given, a directory written as the run goes (``run.json``, ``metrics.parquet``).
    progress
        Show a progress bar of global updates.
    threads
        torch intra-op threads during the run (restored afterwards); ``None`` leaves torch's
        setting. A simulation runs many small operations, where extra threads only add
        synchronisation: on a loaded two-core machine one thread was 20x faster.

    Examples
    --------
    >>> result = run("allreduce", "quadratic", topologies.ring(4), steps=20, eval_every=10)
    >>> result.summary["updates"], list(result.evals["update"])
    (20, [0, 10, 20])
    >>> bool(result.evals["loss"].iloc[-1] < result.evals["loss"].iloc[0])
    True
    """
    _positive_int("steps", steps)
    _positive_int("eval_every", eval_every)
    _positive_int("accumulate", accumulate)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    if max_time is not None and not max_time > 0:
        raise ValueError(f"max_time={max_time!r} must be a positive number of simulated seconds")
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy={strategy!r} must be a strategies.Strategy or a registered name")
    workload = workloads.get(workload) if isinstance(workload, str) else workload
    graph = _topology(topology)
    world_size = len(topologies.hosts(graph))
    strategy.check_world(world_size)
    compute_model = ComputeModel.parse(compute)
    net_options = _network_options(network)
    setup = TrainingSetup(
        strategy=strategy,
        workload=workload,
        world_size=world_size,
        steps=steps,
        optimizer=OptimizerSpec.parse(optimizer),
        schedule=ScheduleSpec.parse(lr_schedule),
        seed=seed,
        accumulate=accumulate,
    )
    config = {
        "backend": "sim",
        "strategy": strategy.config(),
        "workload": workload.config(),
        "topology": {k: v for k, v in graph.graph.items()} | {"hosts": world_size},
        "compute": {
            "base": compute_model.base,
            "straggler": compute_model.straggler,
            "options": compute_model.options,
            "slowdown": dict(compute_model.slowdown),
            "device": compute_model.device,
            "efficiency": compute_model.efficiency,
        },
        "network": net_options,
        "optimizer": {"name": setup.optimizer.name, **setup.optimizer.options},
        "lr_schedule": {"name": setup.schedule.name, **setup.schedule.options},
        "steps": steps,
        "seed": seed,
        "eval_every": eval_every,
        "max_time": max_time,
        "target_loss": target_loss,
        "accumulate": accumulate,
        "world_size": world_size,
    }
    writer = RunWriter(out, config) if out is not None else None

    with _torch_threads(threads):
        return _simulate_run(
            strategy,
            workload,
            graph,
            setup,
            compute_model,
            net_options,
            config,
            writer,
            eval_every,
            max_time,
            target_loss,
            progress,
        )


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    _positive_int("threads", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _simulate_run(
    strategy: Strategy,
    workload: Any,
    graph: nx.Graph,
    setup: TrainingSetup,
    compute_model: ComputeModel,
    net_options: dict[str, Any],
    config: dict[str, Any],
    writer: RunWriter | None,
    eval_every: int,
    max_time: float | None,
    target_loss: float | None,
    progress: bool,
) -> RunResult:
    steps, seed, accumulate = setup.steps, setup.seed, setup.accumulate
    world_size = setup.world_size
    wall_start = time.perf_counter()
    compute_model.resolve(workload, seed)
    env = simpy.Environment()
    net = Network(env, graph, **net_options)
    fabric = Fabric(env, net, world_size)
    initial = initial_parameters(setup)
    eval_replica = Replica(workload.make_model(seed))
    contexts: dict[int, Any] = {}
    primary = strategy.primary(world_size)

    def _global_parameters() -> torch.Tensor:
        if strategy.updates_on == "servers":
            return torch.cat([contexts[s].shard.param.detach() for s in setup.servers]).clone()
        return contexts[primary].parameters()

    def evaluate() -> dict[str, float]:
        if strategy.updates_on == "servers":
            eval_replica.load(_global_parameters())
            return workload.evaluate(eval_replica.model)
        return workload.evaluate(contexts[primary].model)

    bar = UpdateProgress(steps, enabled=progress)
    runtime = SimRuntime(
        env,
        net,
        compute_model,
        primary,
        steps,
        eval_every,
        evaluate,
        accumulate,
        max_time=max_time,
        target_loss=target_loss,
        on_eval=(lambda rows: writer.flush(rows)) if writer else None,
        on_update=bar.update,
    )
    programs = {}
    for rank in range(world_size):
        contexts[rank], programs[rank] = build_role(
            setup, rank, fabric.communicator(rank), runtime, initial.clone
        )
    runtime.record_eval()
    processes = [env.process(runtime.drive(contexts[r], programs[r])) for r in range(world_size)]
    try:
        with bar:
            _simulate(env, runtime, processes)
        runtime.record_eval()
    except BaseException as exc:
        if writer is not None:
            writer.fail(runtime.rows, exc)
        raise
    metrics = pd.DataFrame(runtime.rows + runtime.worker_rows())
    summary = _summary(runtime, net, metrics, time.perf_counter() - wall_start)
    result = RunResult(config, summary, metrics, parameters=_global_parameters())
    if writer is not None:
        writer.finish(result)
    return result


def _simulate(env: simpy.Environment, runtime: SimRuntime, processes: list[simpy.Process]) -> None:
    try:
        env.run(until=runtime.stop_event)
    except RuntimeError as exc:
        if "until" not in str(exc):
            raise
        if all(not p.is_alive for p in processes):
            runtime.stop("finished")
            return
        blocked = sorted(runtime._blocked)
        raise SimulationError(
            f"deadlock at t={env.now:.6g}s after {runtime.updates} updates: ranks {blocked} "
            "wait for operations no rank will complete; check that every rank makes matching "
            "calls (collectives in the same order, a recv for every send)"
        ) from None


def _summary(
    runtime: SimRuntime, net: Network, metrics: pd.DataFrame, wall: float
) -> dict[str, Any]:
    evals = metrics[metrics["kind"] == "eval"]
    last = evals.iloc[-1]
    sim_time = float(runtime.env.now)
    summary: dict[str, Any] = {
        "stop_reason": runtime.stop_reason,
        "updates": runtime.updates,
        "samples": runtime.samples,
        "sim_time": sim_time,
        "bytes": float(net.bytes_sent),
        "final_loss": float(last["loss"]),
        "updates_per_s": runtime.updates / sim_time if sim_time > 0 else float("nan"),
        "samples_per_s": runtime.samples / sim_time if sim_time > 0 else float("nan"),
        "wall_time": wall,
        **runtime.staleness_stats(),
    }
    if "accuracy" in evals:
        summary["final_accuracy"] = float(last["accuracy"])
    if runtime.target_loss is not None:
        reached = runtime.target_reached or {}
        summary["target_loss"] = runtime.target_loss
        for key in ("time", "update", "samples", "bytes"):
            summary[f"{key}_to_target"] = reached.get(key)
    return summary
