"""The real transport on gloo, as three local processes: portable matching (no receive from
any source, as NCCL requires), the simulator's matching rule, size mismatches, gloo's own
receive from any rank, a parameter server's exchange, and collectives with and without
staging through a device.

One world of three ranks (this file, run as a script) runs every scenario in turn (starting
processes is the expensive part); each returns plain data, and the tests below check it
against expectations computed here. A scenario that may leave an envelope receive in flight (a receive from any rank that
another sender satisfied) ends with a flush: every sender sends rank 0 one more message,
received from that sender, so no receive is left for the next scenario.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from real.transport import ENVELOPE_TAG, TorchTransport
from strategies import CommTimeout, Strategy
from strategies.comm import Communicator
from strategies.handles import Handle, any_of

WORLD = 3
K = 4  # messages each sender sends in the any-source scenario
ROUNDS = 5  # parameter-server rounds per worker


# -- helpers, run in the rank processes --------------------------------------------------------
def _until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {timeout} s")
        time.sleep(0.001)


#: The current scenario's transport (its collectives finish on the waiting thread).
TRANSPORT: list[TorchTransport] = []


def _finished(handle: Handle[Any]) -> bool:
    """Whether ``handle`` is done, finishing it here if the transport holds it (what the
    runtime's wait does)."""
    if TRANSPORT and TRANSPORT[-1].holds(handle):
        return TRANSPORT[-1].finish_inline(handle, 0.01)
    return handle.done


def _outcome(handle: Handle[Any]) -> tuple[Any, BaseException | None]:
    _until(lambda: _finished(handle), handle.describe())
    return handle.outcome()


def _wait(handle: Handle[Any]) -> Any:
    _until(lambda: _finished(handle), handle.describe())
    return handle.value


def _comm(rank: int, **options: Any) -> tuple[Communicator, TorchTransport, list[float]]:
    charged: list[float] = []
    transport = TorchTransport(rank, WORLD, time.monotonic, charged.append, **options)
    TRANSPORT.append(transport)
    return Communicator(rank, WORLD, transport), transport, charged


def _flush(comm: Communicator, rank: int) -> None:
    """Leave no envelope receive in flight: each sender's next message is received from it
    (after rank 0 stops keeping one in flight for whoever comes first)."""
    dist.barrier()
    if rank == 0:
        TRANSPORT[-1].quiesce()
        for handle in [comm.recv(torch.zeros(1), src=s) for s in range(1, WORLD)]:
            assert _wait(handle).header == {"flush": 1}
    else:
        _wait(comm.send(torch.zeros(1), 0, header={"flush": 1}))


def _got(received: Any) -> dict[str, Any]:
    return {"src": received.src, "header": received.header, "tensors": received.tensors}


# -- scenarios (every rank runs each; rank 0 receives, ranks 1 and 2 send) ----------------------
def any_source(rank: int) -> dict[str, Any]:
    """Both senders send K two-tensor messages at once; rank 0 posts 2K receives from any."""
    comm, _, _ = _comm(rank)
    out: dict[str, Any] = {}
    if rank == 0:
        buffers = [[torch.zeros(3), torch.zeros(2, dtype=torch.int64)] for _ in range(2 * K)]
        handles = [comm.recv(b) for b in buffers]
        out["got"] = [_got(_wait(h)) for h in handles]
        out["filled_in_place"] = all(
            all(t is b for t, b in zip(r["tensors"], bufs)) for r, bufs in zip(out["got"], buffers)
        )
    else:
        sends = [
            comm.send(
                [torch.tensor([rank, i, 10.0 * rank + i]), torch.tensor([i, -i])],
                0,
                header={"seq": i, "from": rank},
            )
            for i in range(K)
        ]
        for handle in sends:
            _wait(handle)
    _flush(comm, rank)
    return out


def kept_envelope(rank: int) -> dict[str, Any]:
    """Two senders race for one receive from any rank: the loser's envelope is kept, and the
    next receive from any rank takes it."""
    comm, transport, _ = _comm(rank)
    out: dict[str, Any] = {}
    if rank == 0:
        first = comm.recv(torch.zeros(1))
        _until(
            lambda: {("recv", s, ENVELOPE_TAG) for s in (1, 2)} <= set(CALLS),
            "both channels' envelope receives posted",
        )
        dist.barrier()  # both senders' envelopes will race for the one receive
        out["first"] = _wait(first).src
        channels = transport._channels.items()
        _until(lambda: any(c.kept is not None for _, c in channels), "an envelope kept")
        out["kept"] = [s for s, c in channels if c.kept is not None]
        second = _wait(comm.recv(torch.zeros(1)))
        out["second"], out["second_value"] = second.src, float(second.tensors[0])
    else:
        dist.barrier()
        _wait(comm.send(torch.full((1,), 10.0 * rank), 0, header={"n": rank}))
    _flush(comm, rank)
    return out


def first_come(rank: int) -> dict[str, Any]:
    """Rank 0 receives from any rank while both senders already wait: rank 2 sent 0.3 s
    before rank 1, so rank 2's message comes first, as in the simulator and in gloo's own
    matching (without first come, the channels raced and rank 1's tended to win)."""
    comm, _, _ = _comm(rank)
    out: dict[str, Any] = {}
    dist.barrier()
    start = time.monotonic()
    if rank == 0:
        out["warm_up"] = _wait(comm.recv(torch.zeros(1))).src  # rank 1 sends nothing yet
        time.sleep(max(0.0, start + 0.7 - time.monotonic()))  # busy while both send
        first, second = comm.recv(torch.zeros(1)), comm.recv(torch.zeros(1))
        out["order"] = [_wait(first).src, _wait(second).src]
    elif rank == 2:
        _wait(comm.send(torch.zeros(1), 0, header={"n": 0}))
        time.sleep(max(0.0, start + 0.1 - time.monotonic()))
        _wait(comm.send(torch.zeros(1), 0, header={"n": 1}))
    else:
        time.sleep(0.4)
        _wait(comm.send(torch.zeros(1), 0, header={"n": 1}))
    _flush(comm, rank)
    return out


def specific_before_any(rank: int) -> dict[str, Any]:
    """A receive from any rank posted before one from rank 1; rank 1 then sends twice."""
    comm, _, _ = _comm(rank)
    out: dict[str, Any] = {}
    if rank == 0:
        from_any = comm.recv(torch.zeros(1))
        from_one = comm.recv(torch.zeros(1), src=1)
        dist.barrier()
        a, b = _wait(from_any), _wait(from_one)
        out = {"any": (a.src, a.header["n"]), "specific": (b.src, b.header["n"])}
    else:
        dist.barrier()
        if rank == 1:
            for handle in [comm.send(torch.ones(1), 0, header={"n": n}) for n in (1, 2)]:
                _wait(handle)
    _flush(comm, rank)
    return out


def abandoned(rank: int) -> dict[str, Any]:
    """A receive from any rank abandoned after a timeout, then a second one posted; rank 1
    then sends twice."""
    comm, _, _ = _comm(rank)
    out: dict[str, Any] = {}
    if rank == 0:
        first = comm.recv(torch.zeros(1))
        timer: Handle[None] = Handle("idle", "timer")
        threading.Timer(0.05, timer.resolve).start()
        index, _ = _wait(any_of([first, timer]))
        out["timed_out"] = index == 1 and not first.done
        second = comm.recv(torch.zeros(1))
        dist.barrier()
        out["first"] = _wait(first).header["n"]
        out["second"] = _wait(second).header["n"]
    else:
        dist.barrier()
        if rank == 1:
            for handle in [comm.send(torch.ones(1), 0, header={"n": n}) for n in (1, 2)]:
                _wait(handle)
    _flush(comm, rank)
    return out


def mismatch(rank: int) -> dict[str, Any]:
    """Rank 1 sends two messages that do not fit rank 0's buffers, then one that does."""
    comm, _, _ = _comm(rank)
    out: dict[str, Any] = {}
    if rank == 0:
        handles = [comm.recv(torch.zeros(2), src=1) for _ in range(3)]
        outcomes = [_outcome(h) for h in handles]
        out["errors"] = [(type(e).__name__, str(e)) for _, e in outcomes[:2]]
        out["good"] = (outcomes[2][0].tensors[0].tolist(), outcomes[2][0].header)
    elif rank == 1:
        sends = [
            comm.send([torch.ones(2), torch.ones(1, dtype=torch.int64)], 0, header={"n": 1}),
            comm.send(torch.arange(3.0), 0, header={"n": 2}),
            comm.send(torch.full((2,), 5.0), 0, header={"n": 3}),
        ]
        out["sends"] = [_outcome(h) for h in sends]
    _flush(comm, rank)
    return out


def native(rank: int) -> dict[str, Any]:
    """portable=False: gloo's own receive from any rank."""
    comm, transport, _ = _comm(rank, portable=False)
    out: dict[str, Any] = {"portable": transport.portable}
    if rank == 0:
        handles = [comm.recv(torch.zeros(2)) for _ in range(WORLD - 1)]
        got = [_wait(h) for h in handles]
        out["got"] = sorted((r.src, r.tensors[0].tolist(), r.header["n"]) for r in got)
        dist.barrier()  # both receives from any rank are done: rank 2 sends a bad message
        bad = _outcome(comm.recv(torch.zeros(1), src=2))[1]
        out["error"] = (type(bad).__name__, str(bad))
    else:
        _wait(comm.send(torch.full((2,), float(rank)), 0, header={"n": rank}))
        dist.barrier()
        if rank == 2:
            out["send"] = _outcome(comm.send(torch.ones(4), 0))
    _flush(comm, rank)
    return out


def parameter_server(rank: int) -> dict[str, Any]:
    """Server (rank 0): receive from any worker, reply to the sender. Workers: push, pull.
    The calls NCCL would get: no envelope receive kept in flight speculatively."""
    comm, _, _ = _comm(rank, first_come=False)
    out: dict[str, Any] = {}
    if rank == 0:
        served = []
        for _ in range(ROUNDS * (WORLD - 1)):
            got = _wait(comm.recv(torch.zeros(2)))
            served.append((got.src, got.header["round"]))
            comm.send(got.tensors[0] * 2, got.src, header={"round": got.header["round"]})
        out["served"] = served
    else:
        replies = []
        for r in range(ROUNDS):
            _wait(comm.send(torch.tensor([float(rank), float(r)]), 0, header={"round": r}))
            reply = _wait(comm.recv(torch.zeros(2), src=0))
            replies.append((reply.tensors[0].tolist(), reply.header["round"]))
        out["replies"] = replies
    out["calls"] = list(CALLS)  # before the flush
    _flush(comm, rank)
    return out


def _collectives(comm: Communicator, rank: int, charged: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]) * (rank + 1)
    result = _wait(comm.all_reduce(x))
    out["all_reduce"], out["in_place"] = result.tolist(), result is x
    out["charged"] = charged[-1]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]) * (rank + 1)
    out["mean"] = _wait(comm.all_reduce(x, op="mean")).tolist()
    out["max"] = _wait(comm.all_reduce(torch.tensor([float(rank), -float(rank)]), "max")).tolist()
    x = torch.full((3,), float(rank))
    out["broadcast"] = _wait(comm.broadcast(x, src=1)).tolist()
    out["broadcast_in_place"] = x.tolist()
    x = torch.full((2,), rank + 1.0)
    out["reduce"] = _wait(comm.reduce(x, dst=2, op="mean")).tolist()
    out["reduce_buffer"] = x.tolist()
    x = torch.tensor([rank, 10 * rank])
    out["all_gather"] = [t.tolist() for t in _wait(comm.all_gather(x))]
    x = torch.arange(5.0) * (rank + 1)
    out["reduce_scatter"] = _wait(comm.reduce_scatter(x)).tolist()
    out["reduce_scatter_input"] = x.tolist()
    pair = comm.new_group([0, 1])  # every rank creates every group
    if rank in (0, 1):
        out["pair"] = _wait(comm.all_reduce(torch.ones(2), group=pair)).tolist()
    _wait(comm.barrier())
    return out


def collectives(rank: int) -> dict[str, Any]:
    comm, transport, charged = _comm(rank)
    assert transport.inline
    return _collectives(comm, rank, charged)


def collectives_by_callback(rank: int) -> dict[str, Any]:
    """The same, every collective resolved by the library's completion callback."""
    comm, transport, charged = _comm(rank, inline=False)
    out = _collectives(comm, rank, charged)
    out["held"] = len(transport._held)
    return out


def inline_completion(rank: int) -> dict[str, Any]:
    """Held collectives: a late peer, a release to the callback, finished ones swept."""
    comm, transport, _ = _comm(rank)
    out: dict[str, Any] = {}
    # A peer that joins late: the waiter's slices time out, and the operation goes on.
    if rank == 1:
        time.sleep(0.2)
    late = comm.all_reduce(torch.ones(3))
    slices = 0
    while not transport.finish_inline(late, 0.02):
        slices += 1
    out["late"], out["late_slices"] = late.value.tolist(), slices
    # Released: a handle chained with then() finishes by itself, from the callback.
    chained = comm.all_reduce(torch.full((2,), float(rank)), op="mean").then(lambda t: t.sum())
    out["held_before_release"] = len(transport._held)
    transport.release_inline()
    _until(lambda: chained.done, "the released all-reduce")
    out["chained"], out["held_after_release"] = float(chained.value), len(transport._held)
    # Finishing one held collective finishes every other one the library has finished.
    first, second = comm.all_reduce(torch.ones(1)), comm.all_reduce(torch.ones(2))
    _until(lambda: all(op.work.is_completed() for op in transport._held.values()), "both")
    out["first_done_early"] = first.done
    assert transport.finish_inline(second, 1.0)
    out["swept"] = (first.done, first.value.tolist(), second.value.tolist())
    out["held_at_end"] = len(transport._held)
    return out


def staged(rank: int) -> dict[str, Any]:
    """The staging path (a GPU's) on the CPU: the "device" copies are clones, so every
    result must be copied back into the caller's tensors."""
    comm, transport, charged = _comm(rank)
    moved: list[int] = []

    def to_device(t: torch.Tensor) -> torch.Tensor:
        moved.append(t.numel())
        return t.clone()

    transport._to_device = to_device  # type: ignore[method-assign]
    transport._buffer_for = lambda t: torch.full_like(t, -1.0)  # type: ignore[method-assign]
    out = _collectives(comm, rank, charged)
    if rank == 0:
        buffers = [torch.zeros(3), torch.zeros(1, dtype=torch.int64)]
        got = _wait(comm.recv(buffers, src=1))
        out["p2p"] = [t.tolist() for t in got.tensors]
        out["p2p_in_place"] = all(t is b for t, b in zip(got.tensors, buffers))
        bad = _outcome(comm.recv(torch.zeros(2), src=1))[1]
        out["p2p_error"] = type(bad).__name__
    elif rank == 1:
        _wait(comm.send([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([7])], 0))
        _wait(comm.send(torch.zeros(3), 0))
    out["moved"] = len(moved)
    _flush(comm, rank)
    return out


SCENARIOS = [
    any_source,
    kept_envelope,
    first_come,
    specific_before_any,
    abandoned,
    mismatch,
    native,
    parameter_server,
    collectives,
    collectives_by_callback,
    inline_completion,
    staged,
]

#: Every library point-to-point call of this rank's current scenario: (op, peer, tag).
CALLS: list[tuple[str, int | None, int]] = []


def _record_library_calls() -> None:
    irecv, isend = dist.irecv, dist.isend

    def recording_irecv(tensor: torch.Tensor, src: int | None = None, **kw: Any) -> Any:
        CALLS.append(("recv", src, kw.get("tag", 0)))
        return irecv(tensor, src=src, **kw)

    def recording_isend(tensor: torch.Tensor, dst: int, **kw: Any) -> Any:
        CALLS.append(("send", dst, kw.get("tag", 0)))
        return isend(tensor, dst=dst, **kw)

    dist.irecv, dist.isend = recording_irecv, recording_isend  # type: ignore[assignment]


def _rank_main(rank: int, port: int, out: Path) -> None:
    """One rank: every scenario in turn; writes ``out/RANK.pkl`` with (results, error)."""
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    error = None
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=60),
        )
        _record_library_calls()
        for scenario in SCENARIOS:
            dist.barrier()
            CALLS.clear()
            started = time.monotonic()
            results[scenario.__name__] = scenario(rank)
            results[scenario.__name__]["any_source_receives"] = sum(
                1 for op, peer, _ in CALLS if op == "recv" and peer is None
            )
            results[scenario.__name__]["seconds"] = time.monotonic() - started
        dist.barrier()
    except BaseException:
        error = traceback.format_exc()
    (out / f"{rank}.pkl").write_bytes(pickle.dumps((results, error)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    # Fresh interpreters, not forks: a fork of a test process that already ran
    # torch.distributed (pytest-xdist workers do) can inherit broken library state.
    out = tmp_path_factory.mktemp("transport_world")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    port = _free_port()
    ranks = []
    for rank in range(WORLD):
        with open(out / f"{rank}.err", "wb") as err:
            command = [sys.executable, __file__, str(rank), str(port), str(out)]
            ranks.append(subprocess.Popen(command, cwd=root, env=env, stderr=err))
    try:
        for process in ranks:
            process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
                process.wait()
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    for rank in range(WORLD):
        path = out / f"{rank}.pkl"
        if not path.exists():
            stderr = (out / f"{rank}.err").read_text(errors="replace")[-3000:]
            errors.append(f"rank {rank} wrote no results; its stderr:\n{stderr}")
            continue
        results[rank], error = pickle.loads(path.read_bytes())
        if error is not None:
            errors.append(f"rank {rank}:\n{error}")
    if errors:
        pytest.fail("\n".join(errors))
    return results


# -- the tests ------------------------------------------------------------------------------------
def test_portable_scenarios_never_post_a_receive_from_any_source(world):
    for rank in range(WORLD):
        for name, result in world[rank].items():
            if name != "native":
                assert result["any_source_receives"] == 0, (rank, name)
    assert world[0]["native"]["any_source_receives"] == WORLD - 1  # gloo's own, by design
    assert not world[0]["native"]["portable"] and world[0]["any_source"]["any_source_receives"] == 0


def test_a_receive_from_any_rank_gets_every_message_once_in_each_senders_order(world):
    got = world[0]["any_source"]["got"]
    assert world[0]["any_source"]["filled_in_place"]
    seen = [(r["src"], r["header"]["seq"]) for r in got]
    assert sorted(seen) == [(s, i) for s in (1, 2) for i in range(K)]
    for r in got:
        s, i = r["src"], r["header"]["seq"]
        assert r["header"]["from"] == s
        assert r["tensors"][0].tolist() == [s, i, 10.0 * s + i]
        assert r["tensors"][1].tolist() == [i, -i] and r["tensors"][1].dtype == torch.int64
    for sender in (1, 2):  # receives posted earlier get the sender's earlier messages
        assert [i for s, i in seen if s == sender] == list(range(K))


def test_an_envelope_that_lost_the_race_is_kept_for_the_next_receive(world):
    result = world[0]["kept_envelope"]
    loser = 3 - result["first"]
    assert result["first"] in (1, 2)
    assert result["kept"] == [loser]
    assert (result["second"], result["second_value"]) == (loser, 10.0 * loser)


def test_a_receive_from_any_rank_takes_whoever_sent_first(world):
    # Both senders wait when the receive is posted; rank 2 sent 0.3 s before rank 1.
    # test_sim_takes_whoever_sent_first checks the simulator's side.
    result = world[0]["first_come"]
    assert result["warm_up"] == 2
    assert result["order"] == [2, 1]


def test_a_receive_for_the_sender_is_matched_before_an_earlier_receive_from_any_rank(world):
    # The simulator's (and gloo's) rule; test_sim_matches_the_same_sequences checks sim.
    result = world[0]["specific_before_any"]
    assert (result["any"], result["specific"]) == ((1, 2), (1, 1))


def test_an_abandoned_receive_still_takes_the_next_message(world):
    # Like an MPI posted receive, and as in the simulator: giving up on a handle does not
    # withdraw the receive, so it consumes the first message and the retry the second.
    result = world[0]["abandoned"]
    assert result["timed_out"]
    assert (result["first"], result["second"]) == (1, 2)


def test_a_message_that_does_not_fit_fails_the_receive_and_the_sender_completes(world):
    result = world[0]["mismatch"]
    assert result["errors"] == [
        (
            "CommError",
            "rank 0 received a message of [(2,) float32, (1,) int64] from rank 1 into buffers "
            "of [(2,) float32]; make the buffers match the payload",
        ),
        (
            "CommError",
            "rank 0 received a message of [(3,) float32] from rank 1 into buffers of "
            "[(2,) float32]; make the buffers match the payload",
        ),
    ]
    assert result["good"] == ([5.0, 5.0], {"n": 3})  # the payloads were drained in order
    assert world[1]["mismatch"]["sends"] == [(None, None)] * 3


def test_gloos_own_receive_from_any_rank_still_works(world):
    result = world[0]["native"]
    assert result["got"] == [(1, [1.0, 1.0], 1), (2, [2.0, 2.0], 2)]
    assert result["error"] == (
        "CommError",
        "rank 0 received a message of [(4,) float32] from rank 2 into buffers of "
        "[(1,) float32]; make the buffers match the payload",
    )
    assert world[2]["native"]["send"] == (None, None)


def test_a_parameter_server_exchange_completes_in_nccl_compatible_order(world):
    served = world[0]["parameter_server"]["served"]
    for w in (1, 2):
        assert [r for s, r in served if s == w] == list(range(ROUNDS))
        replies = world[w]["parameter_server"]["replies"]
        assert replies == [([2.0 * w, 2.0 * r], r) for r in range(ROUNDS)]

    def per_peer(calls: list[tuple[str, int, int]], peer: int) -> str:
        letters = {("send", True): "S", ("send", False): "s", ("recv", True): "R"}
        return "".join(
            letters.get((op, tag == ENVELOPE_TAG), "r") for op, p, tag in calls if p == peer
        )

    # NCCL runs one pair's operations in issue order: a worker never has a receive from
    # the server posted before its push, and the server's side mirrors it (at most an
    # envelope receive for the next push left in flight at the end).
    for w in (1, 2):
        assert per_peer(world[w]["parameter_server"]["calls"], 0) == "SsRr" * ROUNDS
        server = per_peer(world[0]["parameter_server"]["calls"], w)
        assert re.fullmatch(f"(RrSs){{{ROUNDS}}}R?", server), server


def _expected_collectives(rank: int) -> dict[str, Any]:
    total = sum(r + 1 for r in range(WORLD))
    expected = {
        "all_reduce": [total * v for v in (1.0, 2.0, 3.0, 4.0)],
        "in_place": True,
        "charged": 2.0 * (WORLD - 1) / WORLD * 16,
        "mean": [total / WORLD * v for v in (1.0, 2.0, 3.0, 4.0)],
        "max": [WORLD - 1.0, 0.0],
        "broadcast": [1.0] * 3,
        "broadcast_in_place": [1.0] * 3,
        "reduce": [total / WORLD] * 2 if rank == 2 else [rank + 1.0] * 2,
        "reduce_buffer": [total / WORLD] * 2 if rank == 2 else [rank + 1.0] * 2,
        "all_gather": [[r, 10 * r] for r in range(WORLD)],
        "reduce_scatter": [[0.0, 6.0], [12.0, 18.0], [24.0]][rank],
        "reduce_scatter_input": [float(v * (rank + 1)) for v in range(5)],
    }
    if rank in (0, 1):
        expected["pair"] = [2.0, 2.0]
    return expected


@pytest.mark.parametrize("scenario", ["collectives", "collectives_by_callback", "staged"])
def test_collectives_give_the_contracts_results(world, scenario):
    for rank in range(WORLD):
        result = world[rank][scenario]
        for key, value in _expected_collectives(rank).items():
            if key == "all_gather":
                assert result[key] == value, rank
            else:
                assert result[key] == pytest.approx(value), (rank, key)


def test_collectives_finish_on_the_waiting_thread_or_by_callback(world):
    assert all(world[r]["collectives_by_callback"]["held"] == 0 for r in range(WORLD))
    for rank in range(WORLD):
        got = world[rank]["inline_completion"]
        assert got["late"] == [float(WORLD)] * 3
        if rank != 1:  # they waited 0.2 s for rank 1, in 0.02 s slices
            assert got["late_slices"] >= 3, got
        assert got["held_before_release"] == 1 and got["held_after_release"] == 0
        assert got["chained"] == pytest.approx(2 * sum(range(WORLD)) / WORLD)
        assert got["first_done_early"] is False  # held: nobody finished it yet
        assert got["swept"] == (True, [float(WORLD)], [float(WORLD)] * 2)
        assert got["held_at_end"] == 0


def test_staging_copies_results_back_into_the_callers_tensors(world):
    assert all(world[r]["staged"]["moved"] > 0 for r in range(WORLD))
    result = world[0]["staged"]
    assert result["p2p"] == [[1.0, 2.0, 3.0], [7]] and result["p2p_in_place"]
    assert result["p2p_error"] == "CommError"


# -- the simulator's matching of the same sequences --------------------------------------------
class _Sequences(Strategy):
    """(c) and (e) above, on the simulator: rank 0 posts the receives, rank 1 sends later."""

    name = "transport_sequences_test_only"
    global_model = "primary"

    def __init__(self, abandon: bool) -> None:
        super().__init__(abandon=abandon)
        self.abandon = abandon

    def worker(self, w):
        if w.rank == 0:
            first = w.comm.recv(torch.zeros(1), src=None)
            if self.abandon:
                try:
                    yield w.timeout(first, 0.05)
                except CommTimeout:
                    w.log(timed_out=1)
                second = w.comm.recv(torch.zeros(1), src=None)
            else:
                second = w.comm.recv(torch.zeros(1), src=1)
            a, b = yield w.comm.wait_all([first, second])
            w.log(first=a.header["n"], second=b.header["n"])
        else:
            yield w.sleep(1.0)
            one = w.comm.send(torch.ones(1), 0, header={"n": 1})
            two = w.comm.send(torch.ones(1), 0, header={"n": 2})
            yield w.comm.wait_all([one, two])


class _FirstCome(Strategy):
    """The ``first_come`` scenario on the simulator."""

    name = "transport_first_come_test_only"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            warm_up = yield w.comm.recv(torch.zeros(1), src=None)
            yield w.sleep(0.7)
            first = w.comm.recv(torch.zeros(1), src=None)
            second = w.comm.recv(torch.zeros(1), src=None)
            a, b = yield w.comm.wait_all([first, second])
            w.log(warm_up=warm_up.src, first=a.src, second=b.src)
        elif w.rank == 2:
            yield w.comm.send(torch.zeros(1), 0)
            yield w.sleep(0.1)
            yield w.comm.send(torch.zeros(1), 0)
        else:
            yield w.sleep(0.4)
            yield w.comm.send(torch.zeros(1), 0)


def test_sim_takes_whoever_sent_first():
    import topologies
    from sim.run import run as sim_run

    result = sim_run(_FirstCome(), "quadratic", topologies.star(3), steps=1)
    row = result.logs.dropna(subset=["first"]).iloc[0]
    assert (row["warm_up"], row["first"], row["second"]) == (2, 2, 1)


@pytest.mark.parametrize(
    "abandon,expected", [(False, (2, 1)), (True, (1, 2))], ids=["specific", "abandoned"]
)
def test_sim_matches_the_same_sequences(abandon, expected):
    import topologies  # here: the rank processes import this file and need no simulator
    from sim.run import run as sim_run

    result = sim_run(_Sequences(abandon), "quadratic", topologies.star(2), steps=1)
    row = result.logs.dropna(subset=["first"]).iloc[0]
    assert (row["first"], row["second"]) == expected
    if abandon:
        assert result.logs["timed_out"].max() == 1


@pytest.mark.parametrize(
    "backend,options,match",
    [
        ("nccl", {"device": "cuda:0", "portable": False}, "portable=False uses gloo's"),
        ("nccl", {"device": "cpu"}, "NCCL moves GPU tensors"),
        ("gloo", {"device": "cuda:0"}, "gloo moves CPU tensors"),
        ("nccl", {"device": "cuda:0", "first_come": True}, "NCCL cannot make"),
    ],
)
def test_the_transport_refuses_what_its_backend_cannot_do(monkeypatch, backend, options, match):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: backend)
    with pytest.raises(ValueError, match=match):
        TorchTransport(0, 2, time.monotonic, lambda nbytes: None, **options)


if __name__ == "__main__":  # one rank of the world fixture
    _rank_main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # without tearing the process group down


def test_a_quorum_group_let_go_is_destroyed_by_the_ranks_thread_once_idle() -> None:
    # A failed operation's callback runs on gloo's thread; the group it let go was destroyed
    # there when that dropped its last reference, and a gloo group's destructor joining its
    # own thread aborted the rank ("Resource deadlock avoided"). It is now kept until the
    # rank's thread finds no operation of its own in flight on it, and destroyed there.
    import weakref

    class Group:  # stands for the process group: records the thread it dies on
        died_on: list[str] = []

        def __del__(self) -> None:
            Group.died_on.append(threading.current_thread().name)

    transport = TorchTransport(0, 2, time.monotonic, lambda nbytes: None)
    group = Group()
    alive = weakref.ref(group)
    transport._quorum_groups = {3: ((0, 1), group)}
    pending: Handle[Any] = Handle("comm")
    transport._in_flight[pending] = (3, 0)
    pending.add_callback(transport._finished)
    del group
    library = threading.Thread(target=transport._drop_quorum_groups, args=((0, 1),), name="gloo")
    library.start()
    library.join()
    assert alive() is not None and transport._quorum_groups == {}  # kept, not in use
    transport._reap()
    assert alive() is not None  # an operation of this rank is still in flight on it
    pending.fail(RuntimeError("peer gone"))
    transport._reap()
    assert alive() is None and Group.died_on == [threading.current_thread().name]
