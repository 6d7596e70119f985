"""Point-to-point links to restarted ranks (real.transport.links): which link a message
takes, the pair's group, and that a run without a restart makes none."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.distributed as dist

from faults import FaultSchedule
from real.crashes import RankFaults, mark_crashed, mark_restarted
from strategies.comm import PeerFailure

WORKER_BACK = {"kind": "crash", "rank": 3, "step": 3, "restart_step": 5}


def _faults(store, events, rank=0, incarnation=0, **options):  # type: ignore[no-untyped-def]
    schedule = FaultSchedule.parse({"events": events, **options}, world_size=4, links=None)
    faults = RankFaults(schedule, rank, 4, incarnation, [0], lambda: store)
    faults.timeout = 10.0
    return faults


@pytest.mark.parametrize(
    "schedule",
    [
        {"events": []},
        {"events": [{"kind": "crash", "rank": 3, "step": 3}]},  # stays down
        {
            "events": [{**WORKER_BACK, "restart_step": None, "restart": 1.0}],
            "recovery": "restart",
            "checkpoint_every": 2,
        },
    ],
)
def test_a_run_that_restarts_no_rank_alone_makes_no_links(schedule) -> None:  # type: ignore[no-untyped-def]
    assert _faults(dist.HashStore(), **schedule).links() is None


def test_a_message_takes_the_world_group_until_its_peer_is_restarted() -> None:
    store = dist.HashStore()
    links = _faults(store, [WORKER_BACK]).links()
    assert links.restartable == {3}
    assert links.link(1) == (None, 0) and links.link(3) == (None, 0)
    mark_crashed(store, 3, 0, 0.5)
    assert links.link(3) == (None, 0)  # (killed, never restarted: the world group fails it)
    mark_restarted(store, 3)
    link, theirs = links.link(3)
    assert (link.key, theirs) == ("p2p/0-3/0-1", 1)
    assert links.link(3)[0] is link  # one link per incarnation
    mark_crashed(store, 3, 1, 2.5)  # killed again: failed at once, naming it
    with pytest.raises(PeerFailure, match="rank 3 crashed at t=2.5s") as failed:
        links.link(3)
    assert failed.value.ranks == (3,)
    with pytest.raises(RuntimeError, match="let go"):  # a send still queued fails at once
        link.group(10.0)


def test_a_restarted_process_reaches_every_peer_over_its_pairs_group() -> None:
    # Rank 0 (never restarted) and rank 3's second process build the pair's group from
    # either end, each when it first needs it, and a message crosses it.
    store = dist.HashStore()
    mark_crashed(store, 3, 0, 0.5)
    mark_restarted(store, 3)
    server = _faults(store, [WORKER_BACK]).links()
    worker = _faults(store, [WORKER_BACK], rank=3, incarnation=1).links()
    assert worker.link(1)[0].key == "p2p/1-3/0-1"  # (its every peer: it has no world group)
    out = torch.arange(4, dtype=torch.float32)
    into = torch.zeros(4)
    sent: list[object] = []
    thread = threading.Thread(target=lambda: sent.extend(worker.link(0)[0].send([out], [7], 10.0)))
    thread.start()
    server.link(3)[0].recv(into, 7, 10.0).wait()
    thread.join()
    sent[0].wait()  # type: ignore[attr-defined]
    assert torch.equal(into, out)
    # A link's failure is a PeerFailure only once that incarnation was killed.
    link = server.link(3)[0]
    error = RuntimeError("Connection closed by peer")
    assert server.failure("a recv", error, 3, 1, link) is None
    mark_crashed(store, 3, 1, 3.0)
    failure = server.failure("a recv", error, 3, 1, link)
    assert isinstance(failure, PeerFailure) and failure.ranks == (3,)
