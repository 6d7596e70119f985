"""The simulated communicator against plain references: tensor maths and the network's own timings.

Values are checked against reductions written out here with torch; times against
:func:`sim.timing.collective_time` and :func:`sim.timing.transfer_time`, which run the same op
alone on a fresh network.
"""

import pytest
import simpy
import torch
from hypothesis import given
from hypothesis import strategies as st

import topologies
from sim.comm import CommError, Fabric
from sim.network import Network
from sim.ops import busy_time
from sim.run import SimulationError
from sim.run import run as sim_run
from sim.runtime import SimRuntime
from sim.timing import collective_time, transfer_time
from strategies import AllReduceSGD
from strategies.comm import Group
from strategies.handles import Handle

BANDWIDTH, LATENCY = 1e9, 1e-6  # 1 GB/s, 1 us: a 4 kB tensor costs about its latency
N = 4
NUMEL = 10  # not a multiple of N: reduce_scatter chunks are uneven


def wait_handles(env, program):
    """Drive a generator that yields handles (or plain SimPy events) from a SimPy process;
    a failed handle's error is thrown into it, as the runtime's driver does."""
    value, error = None, None
    while True:
        try:
            item = program.send(value) if error is None else program.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if isinstance(item, Handle):
            if not item.done:
                wake = env.event()
                item.add_callback(lambda _, wake=wake: wake.succeed())
                yield wake
            if item.failed:
                error = item.error
            else:
                value = item.value
        else:
            value = yield item


class World:
    """A star of ``n`` hosts, its network, fabric and one communicator per rank."""

    def __init__(self, n: int = N, graph=None) -> None:
        self.graph = graph if graph is not None else topologies.star(n, BANDWIDTH, LATENCY)
        self.env = simpy.Environment()
        self.network = Network(self.env, self.graph)
        self.fabric = Fabric(self.env, self.network, n)
        self.comms = [self.fabric.communicator(r) for r in range(n)]

    def group(self, ranks):
        """Create a group on every rank, as torch.distributed requires, and return it."""
        return [comm.new_group(ranks) for comm in self.comms][0]

    def run(self, programs, delays=None):
        """Run ``programs[rank]()`` (generators) after ``delays[rank]``; return ``{rank: (value, t)}``."""
        delays = delays or {}
        out = {}

        def body(rank, program):
            yield self.env.timeout(delays.get(rank, 0.0))
            out[rank] = ((yield from wait_handles(self.env, program())), self.env.now)

        for rank, program in programs.items():
            self.env.process(body(rank, program))
        self.env.run()
        return out

    def collective(self, ranks, call, delays=None):
        """Every rank of ``ranks`` yields ``call(comm)``'s handle; ``{rank: (value, t)}``."""

        def program(rank):
            def gen():
                return (yield call(self.comms[rank]))

            return gen

        return self.run({r: program(r) for r in ranks}, delays)


def inputs(ranks, numel=NUMEL, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {r: torch.randn(numel, generator=g) for r in ranks}


def reference_reduce(tensors, op):
    stacked = torch.stack(tensors)
    return {
        "sum": stacked.sum(0),
        "mean": stacked.mean(0),
        "max": stacked.max(0).values,
        "min": stacked.min(0).values,
    }[op]


GROUPS = {"world": None, "sub": (0, 2, 3)}  # a sub-group skipping rank 1


def members(group):
    return tuple(range(N)) if group is None else group


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("which", GROUPS)
def test_all_reduce_gives_every_member_the_reduction_in_place(op, which):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N))
    originals = {r: t.clone() for r, t in x.items()}
    out = w.collective(ranks, lambda c: c.all_reduce(x[c.rank], op=op, group=group))
    expected = reference_reduce([originals[r] for r in ranks], op)
    for r in ranks:
        value, _ = out[r]
        assert value is x[r]  # filled in place and returned
        torch.testing.assert_close(value, expected)
    for r in set(range(N)) - set(ranks):
        assert torch.equal(x[r], originals[r])  # non-members are not touched
    assert all(torch.equal(out[r][0], out[ranks[0]][0]) for r in ranks)  # bitwise the same


def test_in_place_results_leave_autograd_state_as_it_was():
    # A plain tensor gets the result with no graph; a parameter (one rank's, the others'
    # plain) is filled as a buffer and stays a leaf, as in gloo.
    w = World()
    x = inputs(range(N))
    x[1] = torch.nn.Parameter(x[1])
    expected = reference_reduce([t.detach().clone() for t in x.values()], "sum")
    out = w.collective(range(N), lambda c: c.all_reduce(x[c.rank]))
    for r in range(N):
        value, _ = out[r]
        assert value is x[r] and value.grad_fn is None
        assert value.requires_grad == (r == 1)
        torch.testing.assert_close(value.detach(), expected)


def test_all_reduce_does_not_depend_on_arrival_order():
    results = []
    for delays in ({0: 0.0, 1: 1e-3, 2: 2e-3, 3: 3e-3}, {0: 3e-3, 1: 2e-3, 2: 1e-3, 3: 0.0}):
        w = World()
        x = inputs(range(N), numel=1000, seed=3)
        out = w.collective(range(N), lambda c, x=x: c.all_reduce(x[c.rank]), delays)
        results.append(out[0][0])
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("which, src", [("world", 2), ("sub", 3), ("sub", 2)])
def test_broadcast_copies_the_root_tensor_everywhere(which, src):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N))
    root_value = x[src].clone()
    out = w.collective(ranks, lambda c: c.broadcast(x[c.rank], src=src, group=group))
    for r in ranks:
        assert out[r][0] is x[r]
        assert torch.equal(x[r], root_value)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("which, dst", [("world", 1), ("sub", 2)])
def test_reduce_changes_only_the_destination(op, which, dst):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N))
    originals = {r: t.clone() for r, t in x.items()}
    out = w.collective(ranks, lambda c: c.reduce(x[c.rank], dst=dst, op=op, group=group))
    torch.testing.assert_close(x[dst], reference_reduce([originals[r] for r in ranks], op))
    for r in ranks:
        assert out[r][0] is x[r]
        if r != dst:
            assert torch.equal(x[r], originals[r])


@pytest.mark.parametrize("which", GROUPS)
def test_all_gather_lists_every_member_in_group_order(which):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N))
    out = w.collective(ranks, lambda c: c.all_gather(x[c.rank], group=group))
    for r in ranks:
        gathered = out[r][0]
        assert len(gathered) == len(ranks)
        for tensor, source in zip(gathered, ranks):
            assert torch.equal(tensor, x[source])
    # Each rank owns its copies: writing into one rank's list changes nobody else's.
    out[ranks[0]][0][1].fill_(123.0)
    assert torch.equal(out[ranks[1]][0][1], x[ranks[1]])


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("which", GROUPS)
def test_reduce_scatter_hands_out_the_tensor_split_of_the_reduction(op, which):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N))
    out = w.collective(ranks, lambda c: c.reduce_scatter(x[c.rank], op=op, group=group))
    chunks = torch.tensor_split(reference_reduce([x[r] for r in ranks], op), len(ranks))
    for i, r in enumerate(ranks):
        torch.testing.assert_close(out[r][0], chunks[i])
    assert sum(out[r][0].numel() for r in ranks) == NUMEL


def test_barrier_releases_everyone_when_the_last_rank_arrives():
    w = World()
    delays = {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.125}
    out = w.collective(range(N), lambda c: c.barrier(), delays)
    expected = 0.5 + collective_time(w.graph, "barrier", 0)
    for r in range(N):
        value, t = out[r]
        assert value is None
        assert t == pytest.approx(expected, rel=1e-12)


def test_barrier_on_a_sub_group_ignores_the_others():
    w = World()
    group = w.group([1, 3])
    out = w.collective([1, 3], lambda c: c.barrier(group=group), {1: 0.5})
    expected = 0.5 + collective_time(w.graph, "barrier", 0, ranks=[1, 3])
    assert out[1][1] == pytest.approx(expected, rel=1e-12)
    assert out[3][1] == pytest.approx(expected, rel=1e-12)


def test_a_group_of_one_completes_at_once_with_its_own_data():
    w = World()
    group = w.group([2])
    x = torch.arange(4.0)
    out = w.collective([2], lambda c: c.all_reduce(x, op="mean", group=group), {2: 1.0})
    assert out[2] == (x, 1.0)
    assert torch.equal(x, torch.arange(4.0))


def test_a_group_of_every_rank_is_the_world_itself():
    """``new_group(w.workers)`` over the whole world (AllReduceSGD's hierarchical path) must
    give the world object back: telling two equal groups of all ranks apart compares their
    tuples, which cost every rank's every call O(ranks), O(ranks^2) a step (issue 25)."""
    world = World(4)
    every = world.group([3, 2, 1, 0])
    part = world.group([0, 1])
    assert every is world.fabric.world and every == Group((0, 1, 2, 3))
    assert part is not world.fabric.world and part.ranks == (0, 1)
    out = world.collective(range(4), lambda c: c.all_reduce(torch.ones(1), group=every))
    assert [out[r][0].item() for r in range(4)] == [4.0] * 4


def test_collectives_on_different_groups_are_matched_per_group():
    # Rank 0 calls the world's all-reduce first and its pair's second; rank 1 the reverse.
    # Calls are matched by their order *within* each group, so both complete correctly.
    w = World()
    pair = w.group([0, 1])
    world_x = inputs(range(N), seed=1)
    pair_x = inputs(range(N), seed=2)
    expect_world = sum(t.clone() for t in world_x.values())
    expect_pair = pair_x[0] + pair_x[1]

    def program(rank):
        def gen():
            comm = w.comms[rank]
            if rank == 1:
                handles = [
                    comm.all_reduce(pair_x[rank], group=pair),
                    comm.all_reduce(world_x[rank]),
                ]
            else:
                handles = [comm.all_reduce(world_x[rank])]
                if rank == 0:
                    handles.append(comm.all_reduce(pair_x[rank], group=pair))
            return (yield comm.wait_all(handles))

        return gen

    w.run({r: program(r) for r in range(N)})
    for r in range(N):
        torch.testing.assert_close(world_x[r], expect_world)
    torch.testing.assert_close(pair_x[0], expect_pair)
    torch.testing.assert_close(pair_x[1], expect_pair)


def test_in_place_results_appear_only_when_the_collective_completes():
    w = World()
    x = {r: torch.full((25_000,), float(r)) for r in range(N)}  # 100 kB: ~100 us on the wire
    done = collective_time(w.graph, "all_reduce", 100_000)
    seen = {}

    def program(rank):
        def gen():
            handle = w.comms[rank].all_reduce(x[rank])
            yield w.env.timeout(done / 2)
            seen[rank] = x[rank][0].item()  # peeking mid-flight, as a careless strategy might
            return (yield handle)

        return gen

    out = w.run({r: program(r) for r in range(N)})
    assert seen == {r: float(r) for r in range(N)}
    assert out[0][1] == pytest.approx(done, rel=1e-12)
    assert torch.equal(x[3], torch.full((25_000,), 6.0))


# -- collective timing -------------------------------------------------------------------------

TIMED = [
    ("all_reduce", "ring", lambda c, t, g: c.all_reduce(t, group=g, algorithm="ring")),
    ("all_reduce", "auto", lambda c, t, g: c.all_reduce(t, group=g)),
    (
        "all_reduce",
        "halving_doubling",
        lambda c, t, g: c.all_reduce(t, group=g, algorithm="halving_doubling"),
    ),
    ("all_reduce", "tree", lambda c, t, g: c.all_reduce(t, group=g, algorithm="tree")),
    ("broadcast", "auto", lambda c, t, g: c.broadcast(t, src=3, group=g)),
    ("broadcast", "ring", lambda c, t, g: c.broadcast(t, src=3, group=g, algorithm="ring")),
    ("reduce", "tree", lambda c, t, g: c.reduce(t, dst=3, group=g, algorithm="tree")),
    ("all_gather", "ring", lambda c, t, g: c.all_gather(t, group=g, algorithm="ring")),
    ("all_gather", "auto", lambda c, t, g: c.all_gather(t, group=g)),
    ("reduce_scatter", "ring", lambda c, t, g: c.reduce_scatter(t, group=g, algorithm="ring")),
]


def reference_time(graph, kind, algorithm, ranks, tensor_bytes):
    # The engine takes the full buffer per rank: a reduction's input, a gather's output.
    nbytes = tensor_bytes * len(ranks) if kind == "all_gather" else tensor_bytes
    root = 3 if kind in ("broadcast", "reduce") else None
    return collective_time(graph, kind, nbytes, algorithm=algorithm, ranks=ranks, root=root)


@pytest.mark.parametrize("kind, algorithm, call", TIMED, ids=[f"{k}-{a}" for k, a, _ in TIMED])
@pytest.mark.parametrize("which", GROUPS)
def test_collective_time_is_the_engine_time_when_ranks_arrive_together(
    kind, algorithm, call, which
):
    w = World()
    ranks = members(GROUPS[which])
    group = None if GROUPS[which] is None else w.group(ranks)
    x = inputs(range(N), numel=2500)  # 10 kB: bandwidth and latency both matter
    out = w.collective(ranks, lambda c: call(c, x[c.rank], group))
    expected = reference_time(w.graph, kind, algorithm, list(ranks), 10_000)
    assert expected > 2 * LATENCY
    for r in ranks:
        assert out[r][1] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind, algorithm, call", TIMED[:1] + TIMED[4:5] + TIMED[7:8])
def test_a_late_rank_delays_the_collective_by_exactly_its_lateness(kind, algorithm, call):
    w = World()
    late = 0.25
    x = inputs(range(N), numel=2500)
    handles = {}

    def keep(c):
        handles[c.rank] = call(c, x[c.rank], None)
        return handles[c.rank]

    out = w.collective(range(N), keep, delays={2: late})
    expected = late + reference_time(w.graph, kind, algorithm, list(range(N)), 10_000)
    for r in range(N):
        assert out[r][1] == pytest.approx(expected, rel=1e-12)
        # The data moved only after the late rank joined; the early ranks waited idle before.
        assert handles[r].started_at == late
        assert busy_time(handles[r], 0.0, expected) == pytest.approx(expected - late, rel=1e-12)


# -- point to point ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "graph, src, dst",
    [
        (topologies.star(N, BANDWIDTH, LATENCY), 0, 3),
        (topologies.ring(5, BANDWIDTH, LATENCY), 0, 2),  # two hops
        (topologies.ring(5, BANDWIDTH, LATENCY), 4, 1),
    ],
)
def test_a_message_arrives_after_the_engines_transfer_time(graph, src, dst):
    w = World(len(topologies.hosts(graph)), graph)
    message = [torch.randn(3000), torch.tensor([7], dtype=torch.int64)]  # 12 kB + 8 B
    buffers = [torch.empty(3000), torch.empty(1, dtype=torch.int64)]
    send = {}

    def sender():
        send["op"] = w.comms[src].send(message, dst=dst)
        return (yield send["op"])

    def receiver():
        return (yield w.comms[dst].recv(buffers, src=src))

    out = w.run({src: sender, dst: receiver})
    expected = transfer_time(graph, src, dst, 12_008)
    assert out[dst][1] == pytest.approx(expected, rel=1e-12)
    assert out[src] == (None, pytest.approx(expected, rel=1e-12))
    sender_rank, received, _ = out[dst][0]
    assert sender_rank == src
    assert received is not None and all(a is b for a, b in zip(received, buffers))  # in place
    assert all(torch.equal(a, b) for a, b in zip(buffers, message))
    assert (send["op"].started_at, send["op"].finished_at) == (0.0, pytest.approx(expected))


def test_a_send_waits_for_its_receive_then_takes_the_transfer_time():
    # Rendezvous, as gloo and NCCL: the data starts moving once the receive is posted, and the
    # send completes only then (it used to complete without a receiver).
    w = World()
    out = w.run(
        {
            0: lambda: (yield w.comms[0].send(torch.ones(3), dst=1)),
            1: lambda: (yield w.comms[1].recv(torch.empty(3))),
        },
        delays={1: 0.5},
    )
    expected = 0.5 + transfer_time(w.graph, 0, 1, 12)
    assert out[1][1] == pytest.approx(expected, rel=1e-12)
    assert out[0][1] == pytest.approx(expected, rel=1e-12)
    assert out[1][0][0] == 0


def test_a_ring_exchange_that_sends_before_receiving_deadlocks_and_names_each_wait():
    # The natural ring written send-then-recv hangs on a real world; the simulator says so at
    # once, naming every rank and what it waits on.
    graph = topologies.ring(3)

    class SendFirstRing(AllReduceSGD):
        name = "send_first_ring_test_only"
        global_model = "average"

        def worker(self, w):
            right, left = (w.rank + 1) % w.world_size, (w.rank - 1) % w.world_size
            while not w.done:
                yield w.comm.send(w.parameters(), dst=right)
                yield w.comm.recv(torch.empty(w.numel), src=left)

    with pytest.raises(SimulationError) as err:
        sim_run(SendFirstRing(), "quadratic", graph, steps=3)
    message = one_line(err)
    for rank, right in ((0, 1), (1, 2), (2, 0)):
        assert f"rank {rank} waits on send to rank {right}" in message
    assert "which no rank has matched" in message and "after 0 steps" in message


def test_recv_from_a_given_source_skips_earlier_messages_from_others():
    w = World()
    got = []

    def receiver():
        buffer = torch.empty(2)
        sender, _, _ = yield w.comms[1].recv(buffer, src=2)  # rank 0's message arrives first
        got.append((sender, buffer.clone(), w.env.now))
        sender, _, _ = yield w.comms[1].recv(buffer)  # then any source: rank 0's, waiting
        got.append((sender, buffer.clone(), w.env.now))

    w.run(
        {
            0: lambda: (yield w.comms[0].send(torch.zeros(2), dst=1)),
            2: lambda: (yield w.comms[2].send(torch.full((2,), 2.0), dst=1)),
            1: receiver,
        },
        delays={2: 1.0},
    )
    t2 = 1.0 + transfer_time(w.graph, 2, 1, 8)
    assert got[0][0] == 2 and torch.equal(got[0][1], torch.full((2,), 2.0))
    assert got[0][2] == pytest.approx(t2, rel=1e-12)
    assert got[1][0] == 0 and torch.equal(got[1][1], torch.zeros(2))
    # Rank 0's message waited for a receive that accepts it; only then did it move.
    assert got[1][2] == pytest.approx(t2 + transfer_time(w.graph, 0, 1, 8), rel=1e-12)


def test_recv_from_any_source_returns_whoever_arrives_first():
    w = World()
    senders = []

    def receiver():
        for _ in range(3):
            sender, _, _ = yield w.comms[0].recv(torch.empty(1))
            senders.append(sender)

    delays = {1: 0.3, 2: 0.1, 3: 0.2}
    programs = {
        r: (lambda r=r: (yield w.comms[r].send(torch.tensor([float(r)]), dst=0))) for r in delays
    }
    w.run(programs | {0: receiver}, delays)
    assert senders == [2, 3, 1]


@pytest.mark.parametrize("src", [0, None])
def test_messages_from_one_sender_arrive_in_the_order_sent(src):
    # A big message then small ones, all sent at once: the small flows would finish first on
    # their own, but torch.distributed (and the real backend) deliver one pair's messages in order.
    w = World()
    sizes = [50_000, 1, 1, 10, 1]
    received = []

    def sender():
        handles = [w.comms[0].send(torch.full((n,), float(i)), dst=1) for i, n in enumerate(sizes)]
        return (yield w.comms[0].wait_all(handles))

    def receiver():
        for n in sizes:
            buffer = torch.empty(n)
            who, _, _ = yield w.comms[1].recv(buffer, src=src)
            received.append((who, buffer[0].item(), w.env.now))

    w.run({0: sender, 1: receiver})
    assert [value for _, value, _ in received] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert {who for who, _, _ in received} == {0}
    big = transfer_time(w.graph, 0, 1, 200_000)
    assert received[0][2] >= big * (1 - 1e-12)  # nothing overtook the first message


def test_send_snapshots_the_tensor_when_it_is_sent():
    w = World()
    payload = torch.arange(5.0)
    buffer = torch.empty(5)

    def sender():
        handle = w.comms[0].send(payload, dst=1)
        payload.mul_(100)  # before delivery
        yield handle
        payload.fill_(-1)

    w.run({0: sender, 1: lambda: (yield w.comms[1].recv(buffer, src=0))})
    assert torch.equal(buffer, torch.arange(5.0))


def test_send_to_self_is_refused_as_gloo_refuses_it():
    w = World()
    with pytest.raises(CommError, match="rank 2 sent to itself"):
        w.comms[2].send(torch.ones(2), dst=2)
    with pytest.raises(CommError, match="rank 2 receives from itself"):
        w.comms[2].recv(torch.ones(2), src=2)


def test_wait_all_returns_values_in_the_order_given():
    w = World()
    x = {r: torch.full((2,), float(r)) for r in range(N)}

    def rank0():
        late = w.comms[0].recv(torch.empty(2), src=1)  # arrives last
        early = w.comms[0].recv(torch.empty(2), src=3)
        reduced = w.comms[0].all_reduce(x[0])
        values = yield w.comms[0].wait_all([late, reduced, early])
        return values

    def sends_then_reduces(r, delay):
        def gen():
            yield w.env.timeout(delay)
            yield w.comms[r].send(torch.full((2,), 10.0 * r), dst=0)
            return (yield w.comms[r].all_reduce(x[r]))

        return gen

    def reduces(r):
        return lambda: (yield w.comms[r].all_reduce(x[r]))

    out = w.run(
        {0: rank0, 1: sends_then_reduces(1, 1.0), 2: reduces(2), 3: sends_then_reduces(3, 0.0)}
    )
    (late_src, late_buf, _), reduced, (early_src, early_buf, _) = out[0][0]
    assert (late_src, early_src) == (1, 3)
    assert torch.equal(late_buf[0], torch.full((2,), 10.0))
    assert torch.equal(early_buf[0], torch.full((2,), 30.0))
    assert reduced is x[0] and torch.equal(reduced, torch.full((2,), 6.0))


def test_wait_all_of_nothing_is_done_at_once():
    w = World()
    out = w.run({0: lambda: (yield w.comms[0].wait_all([]))}, delays={0: 0.5})
    assert out[0] == ([], 0.5)


def test_wait_all_busy_time_is_the_union_of_its_transfers():
    w = World()
    handle = {}

    def sender():
        handle["all"] = w.comms[0].wait_all(
            [w.comms[0].send(torch.ones(1000), dst=1), w.comms[0].send(torch.ones(1000), dst=2)]
        )
        return (yield handle["all"])

    receivers = {r: (lambda r=r: (yield w.comms[r].recv(torch.empty(1000)))) for r in (1, 2)}
    out = w.run({0: sender} | receivers)
    end = out[0][1]
    assert busy_time(handle["all"], 0.0, end) == pytest.approx(end, rel=1e-12)
    assert handle["all"].started_at == 0.0


# -- errors ------------------------------------------------------------------------------------


def one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "first, second, needles",
    [
        (
            lambda c, t: c.all_reduce(t),
            lambda c, t: c.broadcast(t, src=0),
            ("all_reduce", "broadcast"),
        ),
        (
            lambda c, t: c.all_reduce(t, op="sum"),
            lambda c, t: c.all_reduce(t, op="max"),
            ("'sum'", "'max'"),
        ),
        (lambda c, t: c.broadcast(t, src=0), lambda c, t: c.broadcast(t, src=1), ("0", "1")),
        (
            lambda c, t: c.all_reduce(t, algorithm="ring"),
            lambda c, t: c.all_reduce(t, algorithm="tree"),
            ("'ring'", "'tree'"),
        ),
        (lambda c, t: c.barrier(), lambda c, t: c.all_gather(t), ("barrier", "all_gather")),
    ],
    ids=["kind", "op", "root", "algorithm", "barrier"],
)
def test_mismatched_collectives_name_both_calls(first, second, needles):
    w = World()
    first(w.comms[0], torch.ones(3))
    with pytest.raises(CommError) as err:
        second(w.comms[1], torch.ones(3))
    message = one_line(err)
    assert all(needle in message for needle in needles)
    assert "rank 0" in message and "rank 1" in message


def test_mismatched_collective_shapes_are_an_error_not_a_broadcast():
    w = World(2, topologies.star(2))
    w.comms[0].all_reduce(torch.ones(3))
    with pytest.raises(CommError, match=r"\(1,\).*\(3,\)") as err:
        w.comms[1].all_reduce(torch.ones(1))
    one_line(err)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda c: c.send(torch.ones(1), dst=4), "dst=4"),
        (lambda c: c.send(torch.ones(1), dst=-1), "dst=-1"),
        (lambda c: c.send(torch.ones(1), dst=1.0), "dst=1.0"),
        (lambda c: c.recv(torch.ones(1), src=7), "src=7"),
        (lambda c: c.broadcast(torch.ones(1), src=9), "src=9"),
        (lambda c: c.reduce(torch.ones(1), dst=9), "dst=9"),
        (lambda c: c.broadcast(torch.ones(1), src=3, group=c.new_group((0, 1))), "src=3"),
        (lambda c: c.all_reduce(torch.ones(1), group=Group((0, 1))), "not made by comm.new_group"),
        (lambda c: c.all_reduce(torch.ones(3, 2).t()), "non-contiguous"),
        (lambda c: c.send(torch.ones(1), dst=1, header={"v": torch.ones(1)}), "header['v']"),
        (lambda c: c.all_reduce(torch.ones(1), op="prod"), "op='prod'"),
        (lambda c: c.new_group([0, 1, 0]), "repeat"),
        (lambda c: c.new_group([0, 5]), "group rank=5"),
        (lambda c: c.all_reduce(torch.ones(1), group=c.new_group((1, 2))), "not in"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_arguments_raise_one_line_errors_naming_them(call, needle):
    w = World()
    with pytest.raises(CommError) as err:
        call(w.comms[0])
    assert needle in one_line(err)


@pytest.mark.parametrize(
    "buffers",
    [
        torch.empty(4),
        [torch.empty(3), torch.empty(1)],
        torch.empty(3, 1),
        torch.empty(3, dtype=torch.float64),
    ],
    ids=["numel", "count", "shape", "dtype"],
)
def test_a_message_that_does_not_fit_the_buffers_fails_the_receive_at_its_yield(buffers):
    w = World()
    caught = {}

    def receiver():
        try:
            yield w.comms[1].recv(buffers, src=0)
        except CommError as exc:  # thrown into the program, as the real backend does
            caught["error"] = exc

    out = w.run({0: lambda: (yield w.comms[0].send(torch.ones(3), dst=1)), 1: receiver})
    assert out[0][0] is None  # the send itself was delivered
    message = str(caught["error"])
    assert "rank 1 received a message of [(3,) float32] from rank 0" in message
    assert "\n" not in message


def test_a_handle_passed_for_its_value_says_a_yield_is_missing():
    w = World()
    with pytest.raises(TypeError, match="all_reduce got a handle.*a yield is missing") as err:
        w.comms[0].all_reduce(w.comms[0].barrier())
    one_line(err)


times = st.floats(0.0, 10.0, allow_nan=False)


@given(times, times, times, times, st.sampled_from(["compute", "comm", "other"]), st.booleans())
def test_a_single_handle_wait_is_booked_as_busy_time_says(a, b, c, d, kind, started):
    # SimRuntime._account skips busy_time's interval union for a wait on one handle; the
    # books must come out bit for bit the same.
    start, end = min(a, b), max(a, b)
    op = Handle(kind)
    if started:
        op.resolve(None, at=max(c, d), started_at=min(c, d))
    fast = [0.0, 0.0, 0.0]
    SimRuntime._account(fast, op, start, end)
    compute = busy_time(op, start, end, ("compute",))
    moving = busy_time(op, start, end, ("compute", "comm")) - compute
    assert fast == [compute, moving, end - start - compute - moving]


def test_groups_must_be_created_in_the_same_order_on_every_rank():
    env = simpy.Environment()
    fabric = Fabric(env, Network(env, topologies.star(3)), 3)
    comms = [fabric.communicator(r) for r in range(3)]
    comms[0].new_group([0, 1])
    comms[0].new_group([1, 2])
    with pytest.raises(CommError, match=r"rank 1 created group #0 over \(1, 2\)"):
        comms[1].new_group([2, 1])
    comms[1].new_group([0, 1])
    with pytest.raises(CommError, match="rank 1 created 1 of the 2 groups"):
        fabric.check_groups()


def test_wait_any_of_nothing_is_a_commerror_naming_wait_any():
    w = World()
    with pytest.raises(CommError, match="wait_any needs at least one handle"):
        w.comms[0].wait_any([])


def test_a_collectives_number_in_its_group_is_a_field_of_its_handle_and_named_in_its_description():
    world = World(2)
    first, second = (
        world.comms[0].all_reduce(torch.ones(1)),
        world.comms[0].all_reduce(torch.ones(1)),
    )
    assert (first.seq, second.seq) == (0, 1)
    assert (second.operation, second.group) == ("all_reduce", None)
    assert second.describe() == "all_reduce (collective #1 of this group)"


def test_every_rank_passing_one_shared_list_validates_it_once(monkeypatch):
    import strategies.comm

    made = []
    real_make_group = strategies.comm.make_group

    def counting(ranks, world_size):
        made.append(tuple(ranks))
        return real_make_group(ranks, world_size)

    monkeypatch.setattr(strategies.comm, "make_group", counting)
    env = simpy.Environment()
    fabric = Fabric(env, Network(env, topologies.star(4)), 4)
    workers = [3, 1, 2, 0]  # a context's shared, read-only workers list
    groups = [fabric.communicator(r).new_group(workers) for r in range(4)]
    assert made == [(3, 1, 2, 0)]  # once a run, not once a rank: O(ranks), not O(ranks^2)
    assert all(g is groups[0] for g in groups) and groups[0].ranks == (0, 1, 2, 3)
    # A list of equal ranks that is another object is checked again, as is a bad one.
    assert fabric.communicator(0).new_group([0, 1, 2, 3]) is groups[0]
    assert made[-1] == (0, 1, 2, 3)
    with pytest.raises(CommError, match="group rank=9 is not a rank of this world"):
        fabric.communicator(1).new_group([0, 9])
