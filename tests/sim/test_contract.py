"""The strategy contract in simulation: steps vs versions, stopping, failures at the yield,
the clock, locality, named optimizers and message headers, against worked expectations."""

import pytest
import torch

import topologies
import workloads
from sim.run import run
from sim.timing import transfer_time
from strategies import AllReduceSGD, CommTimeout, ParameterServer, Strategy
from strategies.comm import CommError
from strategies.roles import Evaluator, TrainingSetup

FAST = dict(bandwidth=1e15, latency=1e-12)


class LoadsWithoutVersion(Strategy):
    """Finding 1: loading parameters without version= must neither count as a step nor
    break the run."""

    name = "loads_without_version_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params)
            assert w.version == w.step  # apply moves the tag, loading does not


def test_loading_parameters_is_not_a_step_and_does_not_move_the_version():
    result = run(LoadsWithoutVersion(), "quadratic", topologies.star(3), steps=6, eval_every=3)
    assert result.summary["steps"] == 6
    assert result.summary["samples"] == 6 * 3 * 32  # six gradients per worker, no more
    assert list(result.evals["step"]) == [0, 3, 6]


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


class CatchesAFailedReceive(Strategy):
    """Finding 7: a failure reaches the program at its yield, where it can handle it."""

    name = "catches_test_only"
    global_model = "primary"
    caught: list = []

    def worker(self, w):
        if w.rank == 0:
            yield w.comm.send(torch.ones(3), dst=1)
        else:
            try:
                yield w.comm.recv(torch.empty(2), src=0)  # wrong size
            except CommError as exc:
                CatchesAFailedReceive.caught.append(str(exc))


def test_a_communication_error_is_thrown_into_the_program_at_its_yield():
    CatchesAFailedReceive.caught = []
    run(CatchesAFailedReceive(), "quadratic", topologies.star(2), steps=1)
    assert CatchesAFailedReceive.caught == [
        "rank 1 received a message of [(3,) float32] from rank 0 into buffers of "
        "[(2,) float32]; make the buffers match the payload"
    ]


class ForgetsTheYield(Strategy):
    name = "forgets_yield_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            grads = w.comm.all_reduce(grads, op="mean")  # no yield
            w.apply(grads)


def test_a_forgotten_yield_is_one_line_saying_to_yield_the_handle():
    with pytest.raises(TypeError) as err:
        run(ForgetsTheYield(), "quadratic", topologies.star(2), steps=2)
    assert "w.apply(grads) got a handle" in str(err.value) and "yield" in str(err.value)
    assert "\n" not in str(err.value)


class NotAGenerator(Strategy):
    name = "not_a_generator_test_only"

    def worker(self, w):
        w.compute_gradients()


def test_a_role_program_that_is_not_a_generator_is_refused():
    with pytest.raises(TypeError, match=r"NotAGenerator.worker\(\) returned None, not a generator"):
        run(NotAGenerator(), "quadratic", topologies.star(2), steps=1)


def test_a_global_model_must_be_one_the_backends_know():
    with pytest.raises(TypeError, match="global_model='rank0'"):

        class Bad(AllReduceSGD):
            global_model = "rank0"


class Where(Strategy):
    name = "where_test_only"
    global_model = "primary"
    found: dict = {}

    def worker(self, w):
        Where.found[w.rank] = (w.node, w.local_rank, w.nodes)
        yield w.comm.barrier()


def test_every_context_knows_its_node_and_local_rank_from_the_topology():
    Where.found = {}
    run(Where(), "quadratic", topologies.hierarchical(2, 3), steps=1)
    nodes = (0, 0, 0, 1, 1, 1)
    assert Where.found == {r: (r // 3, r % 3, nodes) for r in range(6)}
    Where.found = {}
    run(Where(), "quadratic", topologies.star(3), steps=1)  # no 'node': a node each
    assert Where.found == {r: (r, 0, (0, 1, 2)) for r in range(3)}


class TwoOptimizers(AllReduceSGD):
    name = "two_optimizers_test_only"
    optimizers = {"inner": None, "outer": {"name": "sgd", "lr": 1.0}}
    outer_lrs: list = []

    def worker(self, w):
        outer = w.make_optimizer("outer", torch.zeros(1))
        TwoOptimizers.outer_lrs.append(outer.optimizer.param_groups[0]["lr"])
        outer.step(torch.ones(1))  # not a global step
        yield from super().worker(w)


def test_a_strategy_declares_named_optimizers_that_a_run_configures():
    TwoOptimizers.outer_lrs = []
    result = run(
        TwoOptimizers(),
        "quadratic",
        topologies.star(2),
        steps=2,
        optimizer={"inner": {"name": "sgd", "lr": 0.1}, "outer": {"name": "sgd", "lr": 0.7}},
    )
    assert TwoOptimizers.outer_lrs == [0.7, 0.7]
    assert result.summary["steps"] == 2
    assert result.config["optimizer"]["outer"] == {"name": "sgd", "lr": 0.7}
    with pytest.raises(ValueError, match="optimizer names 'outr', which TwoOptimizers does not"):
        run(TwoOptimizers(), "quadratic", topologies.star(2), steps=1, optimizer={"outr": "sgd"})


class NoSuper(Strategy):
    name = "no_super_test_only"

    def __init__(self, period=2):
        self.period = period

    def worker(self, w):
        yield w.compute_gradients()


def test_a_strategy_that_skips_super_init_is_told_to_call_it():
    with pytest.raises(TypeError, match=r"NoSuper.__init__ did not call super\(\).__init__"):
        run(NoSuper(), "quadratic", topologies.star(2), steps=1)


class YieldsATensor(Strategy):
    name = "yields_a_tensor_test_only"

    def worker(self, w):
        grads = yield w.compute_gradients()
        yield grads  # not a handle


def test_yielding_something_else_names_its_type_and_line_in_one_line():
    with pytest.raises(TypeError) as err:
        run(YieldsATensor(), "quadratic", topologies.star(2), steps=1)
    message = str(err.value)
    assert "\n" not in message
    assert "program yielded a Tensor at test_contract.py:" in message


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


class ServersStepButAverageDeclared(ParameterServer):
    name = "servers_step_but_average_test_only"
    global_model = "average"


def test_a_global_model_that_never_advances_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match=r"rank 0 has applied 1021 optimizer steps"):
        run(ServersStepButAverageDeclared(), "quadratic", topologies.star(3), steps=2)


def test_mean_of_an_integer_tensor_is_refused_at_the_call():
    class IntMean(Strategy):
        name = "int_mean_test_only"

        def worker(self, w):
            yield w.comm.all_reduce(torch.ones(2, dtype=torch.int64), op="mean")

    with pytest.raises(CommError, match="op='mean' needs a floating-point tensor, got torch.int64"):
        run(IntMean(), "quadratic", topologies.star(2), steps=1)


class PollsWithZeroWaits(Strategy):
    name = "polls_test_only"
    global_model = "primary"

    def worker(self, w):
        pending = w.comm.all_reduce(torch.ones(1000))
        while not pending.done:
            yield w.compute(0)


class SleepsZero(Strategy):
    name = "sleeps_zero_test_only"

    def worker(self, w):
        yield w.sleep(0)


def test_a_zero_length_sleep_is_refused_and_a_zero_wait_poll_is_named():
    with pytest.raises(ValueError, match=r"seconds=0 must be a number of seconds > 0"):
        run(SleepsZero(), "quadratic", topologies.star(1), steps=1)
    graph = topologies.star(2, bandwidth="1Mbps", latency="1ms")
    with pytest.raises(RuntimeError, match="resumed 100000 times at t=0s without simulated time"):
        run(PollsWithZeroWaits(), "quadratic", graph, steps=1)


class TimesOutZero(Strategy):
    name = "times_out_zero_test_only"

    def worker(self, w):
        yield w.timeout(w.comm.all_reduce(torch.ones(4)), 0)


def test_a_zero_timeout_is_refused_as_a_timeout_not_a_sleep():
    with pytest.raises(ValueError) as refused:
        run(TimesOutZero(), "quadratic", topologies.star(2), steps=1)
    message = str(refused.value)
    assert "seconds=0 must be a number of seconds > 0 (a timeout of 0 fails before" in message
    assert "sleep" not in message


class BroadcastsIntoParameters(Strategy):
    """A parameter is a buffer for an in-place collective, as on gloo."""

    name = "broadcasts_into_parameters_test_only"

    def worker(self, w):
        while not w.done:
            for p in w.model.parameters():
                yield w.comm.broadcast(p, src=0)
            grads = yield w.compute_gradients()
            w.apply(grads)


def test_in_place_collectives_and_receives_fill_parameters():
    result = run(BroadcastsIntoParameters(), "quadratic", topologies.star(3), steps=2)
    assert result.summary["steps"] == 2


class WaitsInFinally(AllReduceSGD):
    name = "waits_in_finally_test_only"

    def worker(self, w):
        try:
            yield from super().worker(w)
        finally:
            yield w.comm.barrier()


def test_a_finally_that_waits_after_the_stop_is_one_clear_error():
    with pytest.raises(RuntimeError) as err:
        run(WaitsInFinally(), "quadratic", topologies.star(2), steps=2)
    message = str(err.value)
    assert "\n" not in message
    assert "program yielded again while being closed at test_contract.py:" in message


def test_an_algorithm_the_collective_lacks_is_refused_at_the_call():
    class GathersByTree(Strategy):
        name = "gathers_by_tree_test_only"

        def worker(self, w):
            yield w.comm.all_gather(torch.ones(2), algorithm="tree")

    with pytest.raises(CommError, match="all_gather: algorithm='tree' does not implement it"):
        run(GathersByTree(), "quadratic", topologies.star(2), steps=1)


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


def test_a_message_too_large_for_the_real_envelope_is_refused_in_sim_too():
    class ManyTensors(Strategy):
        name = "many_tensors_test_only"

        def worker(self, w):
            if w.rank == 0:
                yield w.comm.send([torch.zeros(2, 3, 4)] * 300, dst=1)

    with pytest.raises(CommError, match="does not fit the 4096-byte envelope"):
        run(ManyTensors(), "quadratic", topologies.star(2), steps=1)


class OuterStep(Strategy):
    """A step's state includes the communication after it: after each local step the
    workers average, then take an outer step that moves every replica by +1. The global
    model at an evaluation point must include that move (as DiLoCo's outer step)."""

    name = "outer_step_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params + 1.0)


class PlainAverage(OuterStep):
    name = "plain_average_test_only"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            params = w.parameters()
            yield w.comm.all_reduce(params, op="mean")
            w.load_parameters(params)


def test_an_evaluation_point_sees_the_communication_that_follows_its_step():
    kwargs = dict(steps=4, eval_every=2, optimizer={"name": "sgd", "lr": 0.0})
    moved = run(OuterStep(), "quadratic", topologies.star(2), **kwargs)
    still = run(PlainAverage(), "quadratic", topologies.star(2), **kwargs)
    # lr 0: the replicas move only by the outer +1 after each step. Step 2's state is taken
    # before step 3 (two moves); the last step's when applied (three: its own never runs).
    evaluate = Evaluator(
        TrainingSetup.create(PlainAverage(), workloads.get("quadratic"), 2, steps=1)
    )
    losses = moved.evals.set_index("step")["loss"]
    assert losses[2] == pytest.approx(evaluate(still.parameters + 2.0)["loss"], rel=1e-6)
    assert losses[4] == pytest.approx(evaluate(still.parameters + 3.0)["loss"], rel=1e-6)
    final = moved.parameters - still.parameters
    torch.testing.assert_close(final, torch.full_like(final, 3.0))


class Disagree(Strategy):
    """Workers never communicate and start apart: the consensus distance is known."""

    name = "disagree_test_only"

    def worker(self, w):
        w.load_parameters(w.parameters() + float(w.index))
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads * 0)


def test_the_consensus_distance_of_an_average_is_recorded_with_each_evaluation():
    result = run(Disagree(), "quadratic", topologies.star(3), steps=2, eval_every=1)
    numel = result.parameters.numel()
    # offsets 0, 1, 2 on every parameter: mean squared distance to the mean is 2/3 each.
    after_start = result.evals[result.evals["step"] > 0]["consensus"]
    assert list(after_start) == pytest.approx([numel * 2 / 3] * 2)
    allreduce = run(AllReduceSGD(), "quadratic", topologies.star(3), steps=2, eval_every=1)
    assert "consensus" not in allreduce.evals  # replicas equal by construction


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
