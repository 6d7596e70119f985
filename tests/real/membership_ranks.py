"""The rank program of tests/real/test_membership.py (run as a script, one process per rank).

``python membership_ranks.py first RANK PORT``: a rank of the run's first processes; it
all-reduces on quorum 1 until a peer's death fails it, forms quorum 2 with the survivors,
all-reduces on it, then waits for the dead rank's replacement in quorum 3 and heals it.
``python membership_ranks.py restarted RANK PORT``: the replacement, a new process with the
dead rank's id. Each reports what it saw under ``test/`` on the run's store (signed with
``COMMSIM_RUN_SECRET``), where the test reads it.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from real import rendezvous
from real.membership import Membership, Quorum
from real.peer_failure import is_peer_failure
from real.store import SignedStore, read_secret

WORLD, DETECT, TIMEOUT = 3, 1.0, 60.0


def state() -> torch.Tensor:
    """What the survivors hold and the replacement must receive, bit for bit."""
    return torch.linspace(0.1, 0.9, 9, dtype=torch.float64).exp()


def all_reduce(group: object, quorum: Quorum, rank: int) -> list[float]:
    tensor = torch.full((4,), float(rank + 1), dtype=torch.float64)
    group.allreduce([tensor]).wait()  # type: ignore[attr-defined]
    return tensor.tolist()


def broadcast(group: object, tensor: torch.Tensor, root: int) -> None:
    options = dist.BroadcastOptions()
    options.rootRank, options.rootTensor = root, 0
    group.broadcast([tensor], options).wait()  # type: ignore[attr-defined]


def main(role: str, rank: int, port: int) -> None:
    secret = read_secret()

    def connect() -> SignedStore:
        return rendezvous.client("127.0.0.1", port, TIMEOUT, secret)

    store = connect()

    def report(name: str, **values: object) -> None:
        print(f"{time.time():.3f} {role} rank {rank}: {name} {values}", flush=True)
        store.set(f"test/{name}/{rank}", json.dumps(values))

    if role == "restarted":
        # Started with the others (its imports overlap their run), it comes in as the dead
        # rank's replacement only once the test has seen the survivors' quorum 2.
        store.wait([f"test/go/{rank}"], timedelta(seconds=TIMEOUT))

    with Membership(connect, rank, WORLD, interval=0.1) as members:
        if role == "first":
            q1 = members.quorum(min_size=WORLD, timeout=TIMEOUT, detect=DETECT)
            g1 = members.group(q1, timeout=TIMEOUT)
            report("q1", members=q1.members, sum=all_reduce(g1, q1, rank))
            store.set(f"test/looping/{rank}", "1")
            error: RuntimeError | None = None
            end = time.monotonic() + TIMEOUT  # the test kills a rank long before
            while error is None and time.monotonic() < end:
                try:
                    g1.allreduce([torch.ones(1 << 14)]).wait()
                except RuntimeError as exc:
                    error = exc
            # Drop the failed group: destroying it closes its connections, so a member
            # waiting on this rank fails now instead of at the group's timeout.
            del g1
            others = [r for r in q1.members if r != rank]
            report(
                "error",
                type=type(error).__name__,
                message=str(error),
                peer_failure=error is not None and is_peer_failure(error),
                dead=members.dead(others, detect=DETECT, timeout=TIMEOUT),
            )
            q2 = members.quorum(min_size=WORLD - 1, timeout=TIMEOUT, detect=DETECT)
            g2 = members.group(q2, timeout=TIMEOUT)
            report("q2", members=q2.members, joined=q2.joined, sum=all_reduce(g2, q2, rank))
            q3 = members.quorum(min_size=WORLD, timeout=TIMEOUT, detect=DETECT)
            held = state()
        else:
            q3 = members.quorum(min_size=WORLD, timeout=TIMEOUT, detect=DETECT)
            held = torch.zeros(9, dtype=torch.float64)
        g3 = members.group(q3, timeout=TIMEOUT)
        broadcast(g3, held, root=0)
        report("q3", id=q3.id, members=q3.members, joined=q3.joined,
               state=held.numpy().tobytes().hex(), sum=all_reduce(g3, q3, rank))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
