"""The run's shared store: how ranks meet, stop together, report failures and hand in results.

Every real run, local or on a cluster, meets at one ``torch.distributed`` TCP store (hosted by
the launcher when it is torchrun's agent or commsim's local launcher, else by rank 0). Keys
live under ``commsim/`` so they never collide with the launcher's own. On it:

* the process group's own rendezvous (under ``pg/``);
* the run's stop and the owners' progress (:class:`real.runtime.StopSignal`);
* the first failure, ``failed``: ``"rank R failed: <one-line error>"``, which stops every other
  rank at its next ``yield`` instead of after a timeout;
* each rank's results, handed in as it goes and when it ends (:mod:`real.handin`), and
  gathered by whoever writes the run directory: rank 0 on a cluster, the local launcher on
  one machine.

Every value is signed with the run's secret (:class:`real.store.SignedStore`), and nothing
read from the store is unpickled. The local launcher's store listens on loopback only; a
store that rank 0 hosts on a cluster listens on every interface (torch binds it so), which
is what the secret is for: ``docs/security.md`` says what listens where and what is trusted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist

from real.handin import handed_in
from real.placement import LaunchError, Placement
from real.store import SignedStore, StoreTampered

__all__ = [
    "agree_on_group",
    "client",
    "FAILED_KEY",
    "connect",
    "failure",
    "group_shortfall",
    "host_store",
    "namespace",
    "report_failure",
    "report_silence",
    "silent_ranks",
]

FAILED_KEY = "failed"


#: Whether torchrun's restarts go on with the first attempt's keys (:func:`share_attempts`).
_SHARED = {"attempts": False}


def share_attempts() -> None:
    """Every torchrun restart of this run goes on from where the last stopped, on the first
    attempt's keys (a fault schedule's restarts from a checkpoint: :mod:`real.elastic`)."""
    _SHARED["attempts"] = True


def namespace(store: Any) -> Any:
    """The run's keys on a raw store client (the launcher's view of the ranks' keys)."""
    # A torchrun restart reuses the agent's store: each attempt gets its own keys, unless
    # the run restarts from its checkpoints.
    attempt = "0" if _SHARED["attempts"] else os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"commsim/{attempt}", store)


def host_store(port: int, world_size: int, timeout: float, addr: str = "127.0.0.1") -> Any:
    """Host the store on this machine's loopback (the local launcher's job); ``port=0``
    picks a free port (read it back from ``.port``). ``addr``: the address it listens on
    instead (a testbed's launcher: its management network, :mod:`real.testbed.plan`).

    torch binds a store it listens for to every interface, whatever host it is given; the
    launcher binds the socket to ``addr`` itself and hands it over, so no other machine
    can reach a local run's store."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((addr, port))
        listener.listen(128)
        store = dist.TCPStore(
            addr,
            listener.getsockname()[1],
            world_size,
            is_master=True,
            wait_for_workers=False,
            timeout=timedelta(seconds=timeout),
            master_listen_fd=listener.fileno(),
        )
    except (OSError, dist.DistNetworkError) as exc:
        listener.close()
        raise _port_error(port, exc) from None
    listener.detach()  # the store's server owns the socket now
    return store


def _port_error(port: int, exc: BaseException) -> LaunchError:
    if "EADDRINUSE" in str(exc) or "in use" in str(exc):
        return LaunchError(
            f"port {port} is in use on this host; choose a free one (--port / MASTER_PORT / "
            "--rdzv-endpoint HOST:PORT), or leave --port at 0 to pick one"
        )
    return LaunchError(f"cannot listen on port {port}: {' '.join(str(exc).split())[:200]}")


def connect(placement: Placement, timeout: float, secret: str | None) -> tuple[Any, Any]:
    """This rank's two clients of the run's store, namespaced under ``commsim/`` and signing
    with the run's ``secret``: one for the rank's own calls, one for its stop watcher (a
    client serves one call at a time).

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
    return SignedStore(namespace(main), secret), SignedStore(namespace(watch), secret)


def client(addr: str, port: int, timeout: float, secret: str | None) -> SignedStore:
    """One more client of the run's store (for a thread of its own, e.g. a progress bar)."""
    raw = dist.TCPStore(addr, port, is_master=False, timeout=timedelta(seconds=timeout))
    return SignedStore(namespace(raw), secret)


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
    """The run's first failure, if any (a forged one fails the run as tampered with)."""
    try:
        if store.check([FAILED_KEY]):
            return bytes(store.get(FAILED_KEY)).decode()
    except StoreTampered as tampered:
        return str(tampered)
    except Exception:
        return None
    return None


_GROUP, _GROUPS = "group/{index}/{rank}", "groups/{rank}"


def agree_on_group(
    store: Any,
    rank: int,
    world_size: int,
    index: int,
    ranks: tuple[int, ...],
    timeout: float,
    stopped: Callable[[], bool],
) -> None:
    """Every rank of the world creates the same groups in the same order, members or not
    (torch.distributed requires it, and ``sim`` enforces it; gloo itself lets a rank skip a
    group it is not in). Publish this rank's group ``index``, wait until every rank has
    published theirs (a stop ends the wait), and raise the simulator's
    :class:`~strategies.comm.CommError` when they differ or a rank never creates it."""
    from strategies.comm import CommError

    store.set(_GROUP.format(index=index, rank=rank), json.dumps(list(ranks)))
    store.add(_GROUPS.format(rank=rank), 1)
    keys = [_GROUP.format(index=index, rank=r) for r in range(world_size)]
    deadline = time.monotonic() + timeout
    while not store.check(keys):
        if stopped():
            return
        if time.monotonic() > deadline:
            raise CommError(group_shortfall(store, world_size) or "new_group timed out")
        time.sleep(0.01)
    # Each rank compares with rank 0 alone (two reads, not n): any rank that differs from
    # rank 0 finds out, so a difference anywhere fails the run.
    theirs = tuple(json.loads(bytes(store.get(keys[0])).decode()))
    if theirs != ranks:
        raise CommError(
            f"rank {rank} created group #{index} over {ranks} but rank 0's group #{index} is "
            f"{theirs}; every rank must create the same groups in the same order "
            "(torch.distributed requires it)"
        )


def group_shortfall(store: Any, world_size: int) -> str | None:
    """Which rank created fewer groups than the others, said as the simulator says it; a rank
    whose collective timed out asks this first, since a skipped ``new_group`` is the cause."""
    made = [int(store.add(_GROUPS.format(rank=r), 0)) for r in range(world_size)]
    if min(made) == max(made):
        return None
    behind = min(range(world_size), key=lambda r: made[r])
    return (
        f"rank {behind} created {made[behind]} of the {max(made)} groups the other ranks "
        "created; every rank of the world must call new_group for every group, members or "
        "not (torch.distributed requires it)"
    )


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
        return [r for r in range(world_size) if after[r] == before[r] and not handed_in(store, r)]
    except Exception:
        return []
