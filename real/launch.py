"""``real.run``: the same strategy objects on ``torch.distributed``, N local processes.

Each rank is its own Python process (what ``python -m real.rank`` runs, forked by a warm
pool that has torch imported: :mod:`real.pool`) joined by a gloo process group on localhost;
the run's set-up reaches it through cloudpickle, so a strategy defined in a
notebook cell or in a script without a ``__main__`` guard runs unchanged. Every rank writes
what it measured to a scratch directory, also when it fails; the launcher feeds all ranks'
events, in time order, to the :class:`strategies.ledger.Ledger` (the simulator's own), which
evaluates the global model at its evaluation points and builds the rows, and returns the
:class:`runs.RunResult` that ``sim.run`` returns.

Single machine::

    python -c "import real; print(real.run('allreduce', 'mlp_digits', nproc=4, steps=50).summary)"
"""

from __future__ import annotations

import math
import pickle
import socket
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import networkx as nx
import pandas as pd
import torch

import topologies
import workloads
from real.pool import shared_pool
from runs import RunResult, RunWriter, summarize
from strategies import Strategy
from strategies.ledger import Ledger
from strategies.roles import (
    TrainingSetup,
    initial_parameters,
    initial_state,
    make_ledger,
    positive_int,
)

__all__ = ["run"]

BACKENDS = ("gloo",)
#: After the first rank fails, how long the others get to write what they measured.
GRACE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    backend: str = "gloo",
    out: str | Path | None = None,
    timeout: float = 300.0,
    topology: nx.Graph | None = None,
) -> RunResult:
    """Train with ``nproc`` local processes; returns the same format as ``sim.run``.

    ``steps``, ``eval_every`` and the global model mean what they mean in ``sim.run`` (one
    ledger decides both). ``time`` columns are wall-clock seconds since all ranks were ready;
    ``result.parameters`` holds the global model's flat parameters at the last global step.
    ``timeout`` bounds every wait: a rank that waits longer on one operation fails with an
    error naming it. ``topology``, when given, is the network the ranks run on (its hosts,
    one per rank): strategies read its host graph and their nodes from it (the host
    ``node`` attributes), instead of the launcher's.
    """
    positive_int("nproc", nproc)
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r} is not available yet; use 'gloo' (NCCL needs each rank's "
            "model on its GPU, which arrives with the cluster launcher)"
        )
    if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
        raise ValueError(f"timeout={timeout!r} must be a positive, finite number of seconds")
    workload = workloads.get(workload) if isinstance(workload, str) else workload
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
    try:
        pickled = cloudpickle.dumps(setup)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"the strategy or workload cannot be sent to the rank processes: {exc}; keep "
            "unpicklable objects (open files, locks, generators) out of their attributes"
        ) from None
    config = {"backend": f"real-{backend}", **setup.config()}
    writer = RunWriter(out, config) if out is not None else None
    with writer or nullcontext():
        return _launch(setup, pickled, config, writer, float(timeout))


def _launch(
    setup: TrainingSetup,
    pickled: bytes,
    config: dict[str, Any],
    writer: RunWriter | None,
    timeout: float,
) -> RunResult:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="commsim-real-") as scratch:
        (Path(scratch) / "setup.pkl").write_bytes(pickled)
        try:
            failed = _spawn(setup.world_size, scratch, timeout)
        except BaseException as exc:  # an interrupt: keep what the ranks wrote
            if writer is not None:
                writer.fail(_replay(setup, _load(scratch, setup.world_size)).ledger.rows, exc)
            raise
        parts = _load(scratch, setup.world_size)
        if failed is not None:
            rank, code = failed
            reason = parts[rank].get("error") or _stderr_cause(scratch, rank, code)
            error = RuntimeError(f"rank {rank} failed: {reason}")
            if writer is not None:
                writer.fail(_replay(setup, parts).ledger.rows, error)
            raise error
    replayed = _replay(setup, parts)
    ledger = replayed.ledger
    metrics = pd.DataFrame(ledger.rows)
    summary = summarize(
        metrics,
        stop_reason=ledger.stop_reason,
        steps=ledger.step,
        samples=ledger.samples,
        nbytes=replayed.nbytes,
        time=replayed.time,
        wall_time=time.perf_counter() - wall,
    )
    result = RunResult(config, summary, metrics, parameters=ledger.global_parameters())
    if writer is not None:
        writer.finish(result)
    return result


def _spawn(nproc: int, scratch: str, timeout: float) -> tuple[int, int] | None:
    """Run the rank processes; return ``(rank, exit code)`` of the first that failed.

    The ranks are forked by this interpreter's warm pool (:mod:`real.pool`), which has
    torch imported already: a run starts in milliseconds, not an import per rank."""
    port = _free_port()
    pool = shared_pool()
    pool.runs += 1
    pids: list[int] = []
    codes: dict[int, int | None] = {}
    failed: tuple[int, int] | None = None
    deadline = math.inf
    try:
        for rank in range(nproc):
            err = str(Path(scratch) / f"{rank}.err")
            pids.append(pool.start([scratch, str(rank), str(port), str(timeout)], err))
            codes[pids[-1]] = None
        while any(code is None for code in codes.values()):
            codes.update(pool.poll([pid for pid, code in codes.items() if code is None]))
            for rank, pid in enumerate(pids):
                code = codes[pid]
                if code not in (None, 0) and failed is None:
                    failed, deadline = (rank, code), time.monotonic() + GRACE_SECONDS
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
    return failed


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


def _load(scratch: str, nproc: int) -> list[dict[str, Any]]:
    """What each rank saved; a rank that saved nothing (killed) contributes nothing."""
    parts = []
    for rank in range(nproc):
        path = Path(scratch) / f"{rank}.pt"
        empty = {"events": [], "error": None, "final": None, "stop_reason": None}
        parts.append(torch.load(path, weights_only=False) if path.is_file() else empty)
    return parts


@dataclass
class Replayed:
    """The ledger after every rank's events, and the time and bytes when the run stopped."""

    ledger: Ledger
    time: float
    nbytes: float


def _replay(setup: TrainingSetup, parts: list[dict[str, Any]]) -> Replayed:
    """Feed every rank's events, in time order, to the ledger the simulator uses."""
    owners, _ = setup.strategy.owners(setup.world_size)
    clock, nbytes = [0.0], [0.0]
    ledger = make_ledger(setup, clock=lambda: clock[0], bytes_sent=lambda: nbytes[0])
    flat = initial_parameters(setup)
    ledger.start({r: initial_state(setup, r, flat) for r in owners})
    events = sorted((e for p in parts for e in p["events"]), key=lambda e: (e[1], e[2]))
    for kind, at, rank, *rest in events:
        if ledger.stopped:
            break
        clock[0] = at
        if kind == "computed":
            ledger.computed(rank, rest[0])
        elif kind == "sent":
            nbytes[0] += rest[0]
        elif kind == "stepped":
            ledger.stepped(rank, rest[0], rest[1])
        elif kind == "settled":
            ledger.settled(rank, rest[0])
        elif kind == "logged":
            ledger.logged(rank, rest[0])
    stop_time, stop_bytes = clock[0], nbytes[0]
    reason = next((p["stop_reason"] for p in parts if p.get("stop_reason")), None)
    finals = {
        r: (lambda s=parts[r]["final"]: s) for r in owners if parts[r].get("final") is not None
    }
    ledger.finish(reason or "finished", finals if not ledger.stopped else None)
    for rank, part in enumerate(parts):
        if "times" in part:
            end, compute, comm = part["times"]
            clock[0] = end
            # Real waits cannot tell a peer's lateness from transfer time: all of it is comm.
            ledger.rank_times(rank, compute, comm, math.nan)
    if ledger.stop_reason != "steps":  # the programs ended: the run lasted until the last did
        stop_time = max((p["times"][0] for p in parts if "times" in p), default=stop_time)
    return Replayed(ledger, stop_time, stop_bytes)
