"""One rank of a real run, as its own process: ``python -m real.rank SCRATCH RANK PORT TIMEOUT``.

The launcher (:func:`real.run`) writes the run's set-up to ``SCRATCH/setup.pkl`` with
cloudpickle (so strategies defined in a notebook cell or a script's ``__main__`` travel by
value) and starts one such process per rank. Each joins the gloo process group on
localhost, runs its role program, and writes what it measured to ``SCRATCH/RANK.pt``, also
when it fails (then with its error, in one line, and the line of code that raised it).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import torch
import torch.distributed as dist

import real
import runs
import strategies
from real.runtime import RealRuntime, StopSignal, drive
from real.transport import GlooTransport
from strategies.comm import Communicator
from strategies.roles import TrainingSetup, build_role

__all__ = ["main", "one_line_error"]

FINISHED_KEY, GONE_KEY, START_KEY = "commsim/finished", "commsim/gone", "commsim/start"


#: commsim's own packages: an error's location is the innermost frame outside them (the
#: strategy's code), or commsim's own innermost frame when the error is commsim's alone.
_OWN = tuple(Path(m.__file__).resolve().parent for m in (strategies, real, runs))


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
    if frame is None:
        return message
    return f"{message} (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"


def _nodes(rank: int, world_size: int) -> tuple[int, ...]:
    """Every rank's node, from the launcher's environment (one node when run locally)."""
    node = int(os.environ.get("GROUP_RANK", os.environ.get("SLURM_NODEID", "0")))
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, node)
    return tuple(int(n) for n in gathered)


def _run(setup: TrainingSetup, rank: int, port: int, timeout: float, out: Path) -> None:
    world = setup.world_size
    wait = timedelta(seconds=timeout)
    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=wait)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=wait)
    watch = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=wait)
    owners, _ = setup.strategy.owners(world)
    signal = StopSignal(store, watch, len(owners))
    runtime = RealRuntime(rank, setup.steps, setup.eval_every, owners, signal)
    transport = GlooTransport(rank, world, runtime.now, runtime.charged)
    record: dict[str, Any] = {"events": runtime.events, "error": None, "final": None}
    ctx = None
    try:
        ctx, program = build_role(
            setup,
            rank,
            Communicator(rank, world, transport),
            runtime,
            nodes=setup.nodes if setup.nodes is not None else _nodes(rank, world),
        )
        dist.barrier()
        if rank == 0:
            store.set(START_KEY, repr(time.time()))
        runtime.start = float(store.get(START_KEY))
        record["ended"] = drive(runtime, ctx, program, timeout)
        if rank in owners:
            record["final"] = ctx.parameters()  # type: ignore[attr-defined]
    except BaseException as error:
        record["error"] = one_line_error(error)
        raise
    finally:
        if ctx is not None:
            runtime.ended(ctx)
        record["stop_reason"] = signal.reason
        record["times"] = (runtime.now(), runtime.compute_time, runtime.comm_time)
        torch.save(record, out)
    # Every rank has written its results: leave together. Operations abandoned at the stop
    # may still be pending in the library, so the process exits without tearing the group
    # down (which would wait on them); rank 0 hosts the store and leaves last.
    # Rank 0 hosts the store: it stays until every rank has finished, however long the
    # others train on (a rank that fails instead is the launcher's to stop).
    store.add(FINISHED_KEY, 1)
    while int(store.add(FINISHED_KEY, 0)) < world:
        time.sleep(0.005)
    if rank != 0:
        store.add(GONE_KEY, 1)
        return
    while int(store.add(GONE_KEY, 0)) < world - 1:
        time.sleep(0.005)


def main(argv: list[str]) -> int:
    scratch, rank, port, timeout = Path(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    torch.set_num_threads(1)  # N ranks share the machine's cores, as they would share a node
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with open(scratch / "setup.pkl", "rb") as f:
        setup = cloudpickle.load(f)
    try:
        _run(setup, rank, port, timeout, scratch / f"{rank}.pt")
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
