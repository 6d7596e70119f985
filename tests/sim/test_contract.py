"""The strategy contract in simulation: steps vs versions, stopping, failures at the yield,
the clock, locality, named optimizers and message headers, against worked expectations."""

import pytest
import torch

import topologies
from sim.run import run
from sim.timing import transfer_time
from strategies import AllReduceSGD, CommTimeout, Strategy
from strategies.comm import CommError

FAST = dict(bandwidth=1e15, latency=1e-12)


class Finally(AllReduceSGD):
    name = "finally_test_only"
    closed: list = []

    def worker(self, w):
        try:
            yield from super().worker(w)
        finally:
            Finally.closed.append(w.rank)


def test_a_stopped_run_closes_every_program_at_its_yield():
    Finally.closed = []
    result = run(Finally(), "quadratic", topologies.star(3), steps=4)
    assert result.summary["stop_reason"] == "steps"
    assert sorted(Finally.closed) == [0, 1, 2]


class Clockwork(Strategy):
    """Rank 0 sleeps, then sends; rank 1 gives up waiting after a timeout, then waits on."""

    name = "clockwork_test_only"
    global_model = "primary"
    seen: dict = {}

    def worker(self, w):
        if w.rank == 0:
            yield w.sleep(0.5)
            yield w.comm.send(torch.ones(4), dst=1, header={"sent_at": w.now})
            yield w.compute(0.25)
            Clockwork.seen["computed_until"] = w.now
        else:
            pending = w.comm.recv(torch.empty(4), src=0)
            try:
                yield w.timeout(pending, 0.2)
            except CommTimeout as exc:
                Clockwork.seen["timed_out"] = (w.now, str(exc))
            src, _, header = yield pending  # the receive went on; the message completes it
            Clockwork.seen["received"] = (w.now, src, header)


def test_sleep_timeout_and_compute_are_handles_on_the_simulated_clock():
    Clockwork.seen = {}
    graph = topologies.star(2, bandwidth="1GB/s", latency="1us")
    result = run(Clockwork(), "quadratic", graph, steps=1)
    assert result.summary["stop_reason"] == "finished"
    t_out, message = Clockwork.seen["timed_out"]
    assert t_out == pytest.approx(0.2)
    assert "rank 1: recv from rank 0 did not finish within 0.2 s" == message
    at, src, header = Clockwork.seen["received"]
    assert (src, header) == (0, {"sent_at": 0.5})
    # The header is charged 8 bytes a field beside the 16-byte payload.
    assert at == pytest.approx(0.5 + transfer_time(graph, 0, 1, 16 + 8), rel=1e-12)
    assert Clockwork.seen["computed_until"] == pytest.approx(at + 0.25)
    ranks = result.ranks.set_index("rank")
    assert ranks.loc[0, "compute_time"] == pytest.approx(0.25)


def test_a_global_model_must_be_one_the_backends_know():
    with pytest.raises(TypeError, match="global_model='rank0'"):

        class Bad(AllReduceSGD):
            global_model = "rank0"


class LateGroup(Strategy):
    """new_group blocks on a real world until every rank calls it: rank 0 creates a group
    and then waits for rank 1's message, which rank 1 sends before creating it."""

    name = "late_group_test_only"
    global_model = "primary"

    def worker(self, w):
        if w.rank == 0:
            w.comm.new_group([0, 1])
            yield w.comm.recv(torch.zeros(1), src=1)
        else:
            yield w.comm.send(torch.ones(1), dst=0)
            w.comm.new_group([0, 1])


def test_operations_after_new_group_wait_for_every_rank_to_create_it():
    # It used to finish in sim and deadlock on gloo.
    with pytest.raises(CommError) as err:
        run(LateGroup(), "quadratic", topologies.star(2), steps=1)
    message = str(err.value)
    assert "rank 1 created 0 of the 1 groups the other ranks created" in message
    assert "rank 0 waits on recv from rank 1 (held until every rank creates group #0)" in message
    assert "rank 1 waits on send to rank 0" in message


class PollsWithZeroWaits(Strategy):
    name = "polls_test_only"
    global_model = "primary"

    def worker(self, w):
        pending = w.comm.all_reduce(torch.ones(1000))
        while not pending.done:
            yield w.compute(0)


def test_a_zero_wait_poll_is_named():
    graph = topologies.star(2, bandwidth="1Mbps", latency="1ms")
    with pytest.raises(RuntimeError, match="resumed 100000 times at t=0s without simulated time"):
        run(PollsWithZeroWaits(), "quadratic", graph, steps=1)


def test_an_algorithm_the_topology_cannot_run_fails_every_rank_at_its_yield():
    class Caught(Strategy):
        name = "hierarchical_on_a_star_test_only"
        global_model = "primary"
        errors: list = []

        def worker(self, w):
            try:
                yield w.comm.all_reduce(torch.ones(2), algorithm="hierarchical")
            except CommError as exc:
                Caught.errors.append((w.rank, "needs a 'node' attribute" in str(exc)))

    run(Caught(), "quadratic", topologies.star(2), steps=1)
    assert sorted(Caught.errors) == [(0, True), (1, True)]


def test_replicas_equal_by_construction_record_no_consensus_distance():
    # The distance itself, for replicas that disagree, is asserted on every backend in
    # tests/strategies/test_contract.py.
    allreduce = run(AllReduceSGD(), "quadratic", topologies.star(3), steps=2, eval_every=1)
    assert "consensus" not in allreduce.evals


class LocalOptimizer(Strategy):
    """EASGD-like: workers step their own model with a declared optimizer that the run's
    ``optimizer`` configures (the one declared None), and a server owns the global model."""

    name = "local_optimizer_test_only"
    global_model = "servers"
    optimizers = {"center": {"name": "sgd", "lr": 0.5}, "local": None}
    seen: dict = {}

    def servers(self, world_size):
        return [0]

    def worker(self, w):
        local = w.make_optimizer("local")
        LocalOptimizer.seen[w.rank] = (local.optimizer.param_groups[0]["lr"], w.seed)
        before = w.parameters()
        local.step(torch.ones(w.numel))
        LocalOptimizer.seen["moved"] = float((before - w.parameters()).mean())
        yield w.comm.send(w.parameters(), dst=0)

    def server(self, s):
        LocalOptimizer.seen["server_lr"] = s.shard.optimizer.param_groups[0]["lr"]
        got = yield s.comm.recv(torch.empty(s.numel), src=1)
        s.apply(s.parameters() - got.tensors[0])


def test_a_run_optimizer_configures_the_one_a_strategy_leaves_to_it():
    LocalOptimizer.seen = {}
    run(LocalOptimizer(), "quadratic", topologies.star(2), steps=1, seed=7, optimizer="adam")
    assert LocalOptimizer.seen[1] == (1e-3, 7)
    assert LocalOptimizer.seen["server_lr"] == 0.5
    assert LocalOptimizer.seen["moved"] == pytest.approx(1e-3, rel=1e-4)  # adam's 1st step: lr


def test_a_context_knows_the_network_neighbours_from_the_topology():
    seen = {}

    class Neighbours(AllReduceSGD):
        name = "neighbours_test_only"

        def worker(self, w):
            seen[w.rank] = w.host_graph[w.rank]
            yield from super().worker(w)

    run(Neighbours(), "quadratic", topologies.ring(4), steps=1)
    assert seen == {0: (1, 3), 1: (0, 2), 2: (1, 3), 3: (0, 2)}


class Scheduled(Strategy):
    """Records the learning rates its two optimizers step with under the run's schedule."""

    name = "scheduled_test_only"
    optimizers = {"inner": None, "outer": {"name": "sgd", "lr": 0.5}}
    seen: dict = {}

    def worker(self, w):
        outer = w.make_optimizer("outer", torch.zeros(1))
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            outer.step(torch.zeros(1))
            lrs = (
                w.replica.optimizer.optimizer.param_groups[0]["lr"],
                outer.optimizer.param_groups[0]["lr"],
            )
            Scheduled.seen.setdefault(w.rank, []).append(lrs)


def test_the_run_schedule_drives_only_the_optimizer_the_run_configures():
    Scheduled.seen = {}
    run(
        Scheduled(),
        "quadratic",
        topologies.star(1),
        steps=4,
        optimizer={"name": "sgd", "lr": 0.1},
        lr_schedule={"name": "warmup", "warmup": 4},
    )
    inner, outer = zip(*Scheduled.seen[0])
    assert inner == pytest.approx([0.025, 0.05, 0.075, 0.1])  # warm-up over the run's steps
    assert outer == (0.5, 0.5, 0.5, 0.5)  # an outer optimizer keeps its own rate
