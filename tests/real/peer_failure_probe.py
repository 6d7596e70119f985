"""Measure what a gloo survivor sees when a peer dies (a script, not a test: its numbers are
timings on whatever machine runs it).

``python tests/real/peer_failure_probe.py [TRIALS]`` runs three ranks on loopback per case
and prints, for each survivor, the exception and the seconds from the peer's SIGKILL (or
SIGSTOP) to the survivor's raise, and the quorum's formation time after a kill. Cases:

* ``allreduce``: ranks 0, 1 and 2 all-reduce in a loop; rank 2 is killed;
* ``recv``: rank 0 receives from rank 1, rank 1 from rank 2; rank 2 is killed, and rank 1
  keeps its failed group (``keep``) or drops it (``drop``): does rank 0 learn at once?
* ``after``: rank 2 is killed first, then 0 and 1 all-reduce on the group that still has it;
* ``stop``: rank 2 is stopped (SIGSTOP), not killed: the group's timeout;
* ``create``: 0 and 1 build a group that has the dead rank 2;
* ``quorum``: after the kill, 0 and 1 form the next quorum (``detect`` = 1 s).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from real import rendezvous  # noqa: E402
from real.membership import Membership, Quorum  # noqa: E402
from real.peer_failure import is_peer_failure  # noqa: E402

GROUP_TIMEOUT, DETECT = 5.0, 1.0


def _rank(case: str, rank: int, port: int, out: mp.Queue) -> None:
    def connect() -> object:
        return dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))

    store = connect()
    members = Membership(connect, rank, 3, interval=0.1)
    q1 = members.quorum(3, 60.0, DETECT)
    group = members.group(q1, timeout=GROUP_TIMEOUT)
    group.allreduce([torch.ones(4)]).wait()
    store.add("ready", 1)  # type: ignore[attr-defined]
    if rank == 2:
        time.sleep(120)
        return
    if case in ("after", "create"):
        store.wait(["killed"])  # type: ignore[attr-defined]
    try:
        if case in ("allreduce", "stop", "after", "quorum"):
            while True:
                group.allreduce([torch.ones(1 << 14)]).wait()
        elif case.startswith("recv"):
            group.recv([torch.zeros(4)], rank + 1, 0).wait()
        elif case == "create":
            members.group(Quorum(9, (0, 1, 2), ()), timeout=GROUP_TIMEOUT)
    except RuntimeError as exc:
        raised = time.time()
        if not case.endswith("keep"):
            del group  # destroying the group closes its connections
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:110]}"
        out.put((rank, raised, is_peer_failure(exc), detail))
        if case == "quorum":
            q2 = members.quorum(2, 60.0, DETECT)
            out.put((rank, time.time(), q2.members, "quorum 2 formed"))
    time.sleep(GROUP_TIMEOUT + 2)  # a kept group stays up while the others measure
    members.close()


def _case(case: str) -> None:
    host = rendezvous.host_store(0, 4, 60.0)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(case, r, host.port, out)) for r in range(3)]
    for proc in procs:
        proc.start()
    try:
        while int(host.add("ready", 0)) < 3:
            time.sleep(0.01)
        time.sleep(0.3)
        hit = time.time()
        os.kill(procs[2].pid, signal.SIGSTOP if case == "stop" else signal.SIGKILL)
        if case in ("after", "create"):
            time.sleep(0.5)
            host.set("killed", "1")
            hit = time.time()  # measured from the call, not the kill
        for _ in range(4 if case == "quorum" else 2):
            rank, when, what, detail = out.get(timeout=60)
            print(f"{case:10s} rank {rank}: {when - hit:7.3f} s  {what}  {detail}", flush=True)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


if __name__ == "__main__":
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    print(f"torch {torch.__version__}, group timeout {GROUP_TIMEOUT:g} s, detect {DETECT:g} s")
    for case in ("allreduce", "recv-keep", "recv-drop", "after", "stop", "create", "quorum"):
        for _ in range(trials):
            _case(case)
