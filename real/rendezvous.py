"""The run's shared store: how ranks meet, stop together, report failures and hand in results.

Every real run, local or on a cluster, meets at one ``torch.distributed`` TCP store (hosted by
the launcher when it is torchrun's agent or commsim's local launcher, else by rank 0). Keys
live under ``commsim/`` so they never collide with the launcher's own. On it:

* the process group's own rendezvous (under ``pg/``);
* the run's stop and the owners' progress (:class:`real.runtime.StopSignal`);
* the first failure, ``failed``: ``"rank R failed: <one-line error>"``, which stops every other
  rank at its next ``yield`` instead of after a timeout;
* each rank's results, handed in once it ends (also when it fails) as chunks (the store
  takes at most 8 MiB a value), and gathered by whoever writes the run directory: rank 0 on
  a cluster, the local launcher on one machine (:func:`gather`).
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from real.placement import LaunchError, Placement

__all__ = [
    "CHUNK_BYTES",
    "client",
    "FAILED_KEY",
    "connect",
    "failure",
    "gather",
    "hand_in",
    "host_store",
    "namespace",
    "report_failure",
    "report_silence",
    "silent_ranks",
]

#: Results travel in chunks below the store's 8 MiB value limit.
CHUNK_BYTES = 4 << 20
FAILED_KEY = "failed"
_PART = "part/{rank}"


def namespace(store: Any) -> Any:
    """The run's keys on a raw store client (the launcher's view of the ranks' keys)."""
    # A torchrun restart reuses the agent's store: each attempt gets its own keys.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"commsim/{attempt}", store)


def host_store(port: int, world_size: int, timeout: float) -> Any:
    """Host the store on this machine (the local launcher's job); ``port=0`` picks a free
    port (read it back from ``.port``)."""
    try:
        return dist.TCPStore(
            "127.0.0.1",
            port,
            world_size,
            is_master=True,
            wait_for_workers=False,
            timeout=timedelta(seconds=timeout),
        )
    except dist.DistNetworkError as exc:
        raise _port_error(port, exc) from None


def _port_error(port: int, exc: BaseException) -> LaunchError:
    if "EADDRINUSE" in str(exc) or "in use" in str(exc):
        return LaunchError(
            f"port {port} is in use on this host; choose a free one (--port / MASTER_PORT / "
            "--rdzv-endpoint HOST:PORT), or leave --port at 0 to pick one"
        )
    return LaunchError(f"cannot listen on port {port}: {' '.join(str(exc).split())[:200]}")


def connect(placement: Placement, timeout: float) -> tuple[Any, Any]:
    """This rank's two clients of the run's store, namespaced under ``commsim/``: one for the
    rank's own calls, one for its stop watcher (a client serves one call at a time).

    Rank 0 hosts the store unless the launcher does (``placement.agent_store``)."""
    wait = timedelta(seconds=timeout)
    host = placement.rank == 0 and not placement.agent_store
    where = f"{placement.master_addr}:{placement.master_port}"
    try:
        main = dist.TCPStore(
            placement.master_addr,
            placement.master_port,
            placement.world_size,
            is_master=host,
            wait_for_workers=False,
            timeout=wait,
        )
        watch = dist.TCPStore(
            placement.master_addr, placement.master_port, is_master=False, timeout=wait
        )
    except dist.DistNetworkError as exc:
        if host:
            raise _port_error(placement.master_port, exc) from None
        raise LaunchError(
            f"rank {placement.rank} could not reach the rendezvous at {where} within "
            f"{timeout:g} s; check that rank 0 runs and that MASTER_ADDR/MASTER_PORT "
            "(--rdzv-endpoint) name its host and a port open between the nodes"
        ) from None
    return namespace(main), namespace(watch)


def client(addr: str, port: int, timeout: float) -> Any:
    """One more client of the run's store (for a thread of its own, e.g. a progress bar)."""
    return namespace(dist.TCPStore(addr, port, is_master=False, timeout=timedelta(seconds=timeout)))


def report_failure(store: Any, rank: int, message: str) -> None:
    """Record ``rank``'s failure; the first one recorded is the run's."""
    try:
        store.compare_set(FAILED_KEY, "", f"rank {rank} failed: {message}")
    except Exception:  # the store is gone with rank 0: the launcher reports it instead
        pass


def report_silence(store: Any, message: str) -> None:
    """Record that a rank stopped responding (``message`` names it, found by a peer's
    :class:`real.runtime.StopSignal`); the first failure recorded is the run's."""
    try:
        store.compare_set(FAILED_KEY, "", message)
    except Exception:  # the store is gone: the run is over anyway
        pass


def failure(store: Any) -> str | None:
    """The run's first failure, if any."""
    try:
        if store.check([FAILED_KEY]):
            return bytes(store.get(FAILED_KEY)).decode()
    except Exception:
        return None
    return None


def silent_ranks(store: Any, world_size: int, listen: float = 3.0) -> list[int]:
    """Ranks that seem dead: no heartbeat (``beat/RANK``, about one a second from every
    live rank) during ``listen`` seconds and nothing handed in. Counters, not clocks, so
    nodes' clocks need not agree."""
    from real.runtime import BEAT_KEY

    def beats() -> list[int]:
        return [int(store.add(BEAT_KEY.format(rank=r), 0)) for r in range(world_size)]

    try:
        before = beats()
        time.sleep(listen)
        after = beats()
        return [
            r
            for r in range(world_size)
            if after[r] == before[r] and not store.check([_PART.format(rank=r)])
        ]
    except Exception:
        return []


def hand_in(store: Any, rank: int, record: dict[str, Any]) -> None:
    """Put this rank's results on the store (chunked), for :func:`gather`."""
    buffer = io.BytesIO()
    torch.save(record, buffer)
    blob = buffer.getvalue()
    chunks = max(1, math.ceil(len(blob) / CHUNK_BYTES))
    key = _PART.format(rank=rank)
    for i in range(chunks):
        store.set(f"{key}/{i}", blob[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES])
    store.set(key, str(chunks))  # last: the part is complete once this key exists


def gather(
    store: Any,
    world_size: int,
    deadline: Callable[[], float],
    poll: float = 0.02,
) -> list[dict[str, Any] | None]:
    """Every rank's handed-in results, waiting until all are in or ``time.monotonic()``
    passes ``deadline()`` (re-read each poll: it moves closer once a rank fails); a rank
    that handed in nothing (killed, or lost with its node) is ``None``."""
    parts: list[dict[str, Any] | None] = [None] * world_size
    missing = set(range(world_size))
    while True:
        for rank in sorted(missing):
            key = _PART.format(rank=rank)
            try:
                if not store.check([key]):
                    continue
                chunks = int(bytes(store.get(key)).decode())
                blob = b"".join(bytes(store.get(f"{key}/{i}")) for i in range(chunks))
            except Exception:  # the store went away: what is in is all there is
                return parts
            parts[rank] = torch.load(io.BytesIO(blob), weights_only=False)
            missing.discard(rank)
        if not missing or time.monotonic() > deadline():
            return parts
        time.sleep(poll)
