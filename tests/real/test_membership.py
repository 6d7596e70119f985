"""Quorums over the run's store (real.membership) and peer failures (real.peer_failure):
survivors of a SIGKILLed rank keep training in a new group, and its replacement rejoins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

from real import rendezvous
from real.membership import Membership, Quorum, QuorumError
from real.store import SECRET_ENV, SignedStore, new_secret

RANKS = Path(__file__).with_name("membership_ranks.py")
ROOT = Path(__file__).resolve().parents[2]
WAIT = timedelta(seconds=120)  # only so that a defect fails instead of hanging


def _read(store: SignedStore, name: str, ranks: range | list[int]) -> list[dict]:
    keys = [f"test/{name}/{r}" for r in ranks]
    store.wait(keys, WAIT)
    return [json.loads(store.get(key)) for key in keys]


def test_survivors_of_a_sigkill_form_a_new_quorum_and_heal_the_replacement(tmp_path):
    host = rendezvous.host_store(0, 4, WAIT.total_seconds())  # the launcher's store
    secret = new_secret()
    store = SignedStore(rendezvous.namespace(host), secret)
    env = {**os.environ, SECRET_ENV: secret, "PYTHONPATH": str(ROOT)}
    logs = []
    procs: list[subprocess.Popen] = []

    def start(role: str, rank: int) -> subprocess.Popen:
        log = (tmp_path / f"{role}-{rank}.log").open("w")
        logs.append(log)
        args = [sys.executable, str(RANKS), role, str(rank), str(host.port)]
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        first = [start("first", r) for r in range(3)]
        # A new process for the dead rank's id, started now so that its start-up overlaps
        # the run; it waits for test/go/2 before it takes part (after quorum 2 below).
        start("restarted", 2)
        q1 = _read(store, "q1", range(3))
        assert [q["members"] for q in q1] == [[0, 1, 2]] * 3
        assert [q["sum"] for q in q1] == [[6.0] * 4] * 3  # 1 + 2 + 3

        store.wait([f"test/looping/{r}" for r in range(3)], WAIT)
        first[2].send_signal(signal.SIGKILL)  # while every rank is in or between all-reduces
        assert first[2].wait(timeout=WAIT.total_seconds()) == -signal.SIGKILL

        errors = _read(store, "error", [0, 1])
        for error in errors:
            assert error["type"] == "RuntimeError", error
            assert error["peer_failure"], error["message"]
            assert error["dead"] == [2], error  # named by the heartbeats, not gloo's message
        q2 = _read(store, "q2", [0, 1])
        assert [q["members"] for q in q2] == [[0, 1]] * 2
        assert [q["joined"] for q in q2] == [[]] * 2
        assert [q["sum"] for q in q2] == [[3.0] * 4] * 2  # 1 + 2, exactly

        store.set("test/go/2", "1")  # the replacement comes in now
        q3 = _read(store, "q3", range(3))
        assert [(q["id"], q["members"], q["joined"]) for q in q3] == [(3, [0, 1, 2], [2])] * 3
        expected = _expected_state()
        assert [q["state"] for q in q3] == [expected] * 3  # healed bit for bit from member 0
        assert [q["sum"] for q in q3] == [[6.0] * 4] * 3

        for proc in procs[:2] + procs[3:]:  # the survivors and the replacement
            assert proc.wait(timeout=WAIT.total_seconds()) == 0
    except BaseException:
        for log in logs:
            log.flush()
        for path in sorted(tmp_path.glob("*.log")):
            print(f"--- {path.name}\n{path.read_text()[-3000:]}")
        raise
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for log in logs:
            log.close()


def _expected_state() -> str:
    sys.path.insert(0, str(RANKS.parent))
    try:
        from membership_ranks import state
    finally:
        sys.path.remove(str(RANKS.parent))
    return state().numpy().tobytes().hex()


def test_a_quorum_short_of_min_size_fails_in_one_line_naming_it():
    store = dist.HashStore()
    with Membership(lambda: store, rank=0, world_size=2, interval=0.02) as m:
        with pytest.raises(QuorumError, match=r"fewer than min_size=2; lower min_size") as err:
            m.quorum(min_size=2, timeout=0.3, detect=60.0)
    assert "\n" not in str(err.value)


def test_a_rank_that_starts_after_a_quorum_joins_the_next_one():
    store = dist.HashStore()
    got: dict[int, list[Quorum]] = {0: [], 1: []}
    with Membership(lambda: store, 0, 2, interval=0.02) as zero:
        # Rank 1 has not started: quorum 1 forms without it once it is seen silent.
        got[0].append(zero.quorum(min_size=1, timeout=30.0, detect=0.1))
        with Membership(lambda: store, 1, 2, interval=0.02) as one:
            late = threading.Thread(
                target=lambda: got[1].append(one.quorum(min_size=2, timeout=30.0, detect=30.0))
            )
            late.start()
            got[0].append(zero.quorum(min_size=2, timeout=30.0, detect=30.0))
            late.join()
    assert got[0] == [Quorum(1, (0,), (0,)), Quorum(2, (0, 1), (1,))]
    assert got[1] == [Quorum(2, (0, 1), (1,))]


def test_each_set_of_ranks_has_its_own_quorums_and_groups() -> None:
    # Rank 1 of 3 forms quorums of the workers {1, 2} (rank 2 never started: left out at
    # the timeout) and of the whole run; each set counts its own ids from 1, as sim's, and
    # the world's keys are those of a run without subsets.
    import torch

    store = dist.HashStore()
    with Membership(lambda: store, rank=1, world_size=3, interval=0.05) as m:
        workers = [m.quorum(1, timeout=0.3, detect=60.0, ranks=[1, 2]) for _ in range(2)]
        alone = m.quorum(1, timeout=0.3, detect=60.0)
        t = torch.ones(2)
        m.group(workers[1]).allreduce([t]).wait()
        with pytest.raises(ValueError, match="hold this rank"):
            m.announce(1, ranks=[0, 2])
    assert [(q.id, q.members, q.joined) for q in workers] == [(1, (1,), (1,)), (2, (1,), ())]
    assert (alone.id, alone.members) == (1, (1,))
    assert store.check(["membership/1/members"])
    assert workers[0].space and store.check([f"membership/{workers[0].space}2/members"])
