"""Simulated training against independent references: a plain loop, closed forms, schedules."""

import pandas as pd
import pytest
import simpy
import torch

import topologies
import workloads
from sim.network import Network
from sim.run import SimulationError, run
from strategies import AllReduceSGD, ParameterServer
from strategies.replica import Replica

FAST = {"bandwidth": 1e15, "latency": 1e-12}  # a network too fast to matter


def test_allreduce_equals_large_batch_sgd_on_the_union_of_worker_batches():
    n, steps, lr = 4, 15, 0.2
    workload = workloads.get("mlp_digits", batch_size=16)
    result = run(
        AllReduceSGD(),
        workload,
        topologies.star(n),
        steps=steps,
        optimizer={"name": "sgd", "lr": lr},
        eval_every=steps,
    )
    reference = Replica(workload.make_model(0))
    optimizer = torch.optim.SGD(reference.model.parameters(), lr=lr)
    streams = [workload.batches(i, n, 0) for i in range(n)]
    for _ in range(steps):
        batches = [next(s) for s in streams]
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        optimizer.zero_grad()
        workload.loss(reference.model(x), y).backward()
        optimizer.step()
    torch.testing.assert_close(result.parameters, reference.parameters())


@pytest.mark.parametrize(
    "optimizer", [{"name": "sgd", "lr": 0.1, "momentum": 0.9}, {"name": "adam", "lr": 0.01}]
)
def test_sync_parameter_server_equals_allreduce_bitwise(optimizer):
    kwargs = {"steps": 12, "optimizer": optimizer, "eval_every": 4}
    allreduce = run("allreduce", "mlp_digits", topologies.star(4), **kwargs)
    for servers in (1, 3):
        ps = run(
            ParameterServer(servers=servers), "mlp_digits", topologies.star(4 + servers), **kwargs
        )
        assert torch.equal(ps.parameters, allreduce.parameters)
        pd.testing.assert_series_equal(ps.evals["loss"], allreduce.evals["loss"])


def _concurrent_transfer_time(graph, pairs, nbytes):
    env = simpy.Environment()
    net = Network(env, graph)
    events = [net.send(src, dst, nbytes) for src, dst in pairs]
    env.run(env.all_of(events))
    return env.now


def test_sync_ps_step_time_is_slowest_compute_plus_push_plus_pull():
    graph = topologies.star(4, bandwidth="1GB/s", latency="5us")
    base, slow = 0.01, {2: 3.0}
    result = run(
        ParameterServer(),
        "mlp_digits",
        graph,
        steps=4,
        eval_every=100,
        compute={"base": base, "slowdown": slow},
    )
    numel = Replica(workloads.get("mlp_digits").make_model(0)).numel
    message = numel * 4 + 8  # float32 shard + the int64 version tag
    # The fast workers' pushes are long done when the slow one pushes: its push is alone on
    # the links; the pull is the server sending to all three at once over its one uplink.
    push = _concurrent_transfer_time(graph, [(2, 0)], message)
    pull = _concurrent_transfer_time(graph, [(0, r) for r in (1, 2, 3)], message)
    times = result.steps["time"].to_numpy()
    assert times[0] == pytest.approx(base * 3.0 + push, rel=1e-9)
    for earlier, later in zip(times, times[1:]):
        assert later - earlier == pytest.approx(pull + base * 3.0 + push, rel=1e-9)


def test_throughput_closed_forms_with_one_slow_worker():
    """Sync is paced by the slow worker; async applies gradients at the sum of the rates."""
    n, k, base = 4, 3.0, 0.01
    graph = topologies.star(n + 1, **FAST)
    compute = {"base": base, "slowdown": {n: k}}
    sync = run(ParameterServer(), "logistic_regression", graph, steps=60, compute=compute)
    assert sync.summary["steps_per_s"] == pytest.approx(1 / (k * base), rel=1e-6)
    asyn = run(
        ParameterServer(mode="async"), "logistic_regression", graph, steps=600, compute=compute
    )
    rate = (n - 1) / base + 1 / (k * base)
    assert asyn.summary["steps_per_s"] == pytest.approx(rate, rel=0.01)


def test_asp_staleness_matches_a_hand_computed_schedule():
    # Worker ranks 1 and 2 take 1.0 s and 2.7 s per gradient; the network is instantaneous.
    # By hand: w1 pushes at 1, 2, 3, ...; w2 at 2.7, 5.4, 8.1 on the parameters it last pulled.
    result = run(
        ParameterServer(mode="async"),
        "quadratic",
        topologies.star(3, **FAST),
        steps=12,
        compute={"base": 1.0, "slowdown": {2: 2.7}},
    )
    staleness = result.steps["staleness"].astype(int).tolist()
    assert staleness == [0, 0, 2, 1, 0, 0, 3, 1, 0, 0, 3, 1]
    times = result.steps["time"].to_numpy()
    assert times == pytest.approx([1, 2, 2.7, 3, 4, 5, 5.4, 6, 7, 8, 8.1, 9], abs=1e-6)
    assert result.summary["staleness_max"] == 3


@pytest.mark.parametrize("bound", [0, 1, 3])
def test_ssp_never_exceeds_its_staleness_bound(bound):
    compute = {
        "base": 0.01,
        "straggler": "lognormal",
        "options": {"sigma": 0.8},
        "slowdown": {1: 2.5},
    }
    result = run(
        ParameterServer(mode="ssp", staleness=bound),
        "logistic_regression",
        topologies.star(5),
        steps=200,
        compute=compute,
    )
    logs = result.metrics[result.metrics["kind"] == "log"]
    assert logs["lead"].max() <= bound
    assert logs["spread"].max() <= bound + 1
    # The same setting without the bound drifts further apart: the bound really binds.
    free = run(
        ParameterServer(mode="async"),
        "logistic_regression",
        topologies.star(5),
        steps=200,
        compute=compute,
    )
    free_logs = free.metrics[free.metrics["kind"] == "log"]
    assert free_logs["spread"].max() > bound + 1


def test_same_config_and_seed_give_bit_identical_metrics():
    kwargs = {
        "steps": 30,
        "eval_every": 5,
        "seed": 3,
        "compute": {"base": 0.01, "straggler": "lognormal", "options": {"sigma": 0.5}},
    }
    a = run(ParameterServer(mode="async"), "mlp_digits", topologies.fat_tree(2), **kwargs)
    b = run(ParameterServer(mode="async"), "mlp_digits", topologies.fat_tree(2), **kwargs)
    pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
    c = run(
        ParameterServer(mode="async"), "mlp_digits", topologies.fat_tree(2), **{**kwargs, "seed": 4}
    )
    assert not a.metrics["loss"].equals(c.metrics["loss"])


def test_stop_conditions_time_budget_and_target_loss():
    timed = run(
        "allreduce", "quadratic", topologies.ring(4), steps=10_000, compute=0.01, max_time=0.5
    )
    assert timed.summary["stop_reason"] == "max_time"
    assert timed.summary["time"] == pytest.approx(0.5)
    assert timed.summary["steps"] < 10_000
    first = run("allreduce", "quadratic", topologies.ring(4), steps=200, eval_every=1)
    target = float(first.evals["loss"].iloc[40])
    hit = run(
        "allreduce", "quadratic", topologies.ring(4), steps=200, eval_every=1, target_loss=target
    )
    assert hit.summary["stop_reason"] == "target_loss"
    assert hit.summary["step_to_target"] <= 40
    reached = hit.evals.set_index("step").loc[hit.summary["step_to_target"]]
    assert hit.summary["time_to_target"] == reached["time"]
    # A step's state is known once its owner is about to take the next step: the run stops
    # then, one step after the target (the stamps above are the step's own).
    step_time = first.summary["time"] / 200
    assert 0 < hit.summary["time"] - hit.summary["time_to_target"] <= step_time * 1.01


def test_worker_time_breakdown_adds_up_and_sees_the_straggler():
    result = run(
        "allreduce",
        "quadratic",
        topologies.star(4),
        steps=20,
        compute={"base": 0.01, "slowdown": {3: 4.0}},
    )
    workers = result.ranks.set_index("rank")
    total = workers[["compute_time", "comm_time", "idle_time"]].sum(axis=1)
    assert total.to_numpy() == pytest.approx([result.summary["time"]] * 4)
    # Fast ranks spend the slow rank's extra compute idle, waiting for it to join.
    assert workers.loc[0, "idle_time"] == pytest.approx(20 * 0.03, rel=1e-6)
    assert workers.loc[3, "idle_time"] == pytest.approx(0, abs=1e-12)


def test_run_writes_results_incrementally_and_loads_back(tmp_path):
    from runs import RunResult

    result = run("allreduce", "quadratic", topologies.ring(3), steps=10, out=tmp_path / "r")
    loaded = RunResult.load(tmp_path / "r")
    assert loaded.summary["steps"] == 10
    pd.testing.assert_frame_equal(loaded.metrics, result.metrics)


def test_a_failing_strategy_keeps_what_was_measured(tmp_path):
    import json

    class Broken(AllReduceSGD):
        def worker(self, w):
            yield from super().worker(w) if w.rank else iter(())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(Broken(), "quadratic", topologies.ring(2), steps=5, out=tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "boom" in record["error"]
    assert (tmp_path / "metrics.parquet").is_file()


def test_deadlock_is_reported_in_one_line():
    class Mismatched(AllReduceSGD):
        def worker(self, w):
            if w.rank == 0:
                yield w.comm.recv(torch.zeros(1), src=1)  # nobody sends

    with pytest.raises(SimulationError, match="deadlock") as err:
        run(Mismatched(), "quadratic", topologies.ring(2), steps=3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: run("allreducee", "quadratic", topologies.ring(2), steps=1),
            "strategy 'allreducee'",
        ),
        (lambda: run("allreduce", "mnist", topologies.ring(2), steps=1), "mnist"),
        (lambda: ParameterServer(mode="ssp", staleness=-2), "staleness=-2"),
        (
            lambda: run(ParameterServer(servers=3), "quadratic", topologies.ring(3), steps=1),
            "servers=3",
        ),
        (lambda: run("allreduce", "quadratic", topologies.ring(2), steps=0), "steps=0"),
        (
            lambda: run("allreduce", "quadratic", topologies.ring(2), steps=1, eval_every=0),
            "eval_every=0",
        ),
        (
            lambda: run("allreduce", "quadratic", topologies.ring(2), steps=1, network="fluid"),
            "fluid",
        ),
        (
            lambda: run("allreduce", "quadratic", topologies.ring(2), steps=1, compute=-1),
            "compute.base: base=-1 must be",
        ),
        (
            lambda: run("allreduce", "quadratic", topologies.ring(2), steps=1, optimizer="lion"),
            "lion",
        ),
    ],
)
def test_bad_arguments_give_one_line_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_a_spec_as_the_command_line_writes_it_runs_and_fails_as_there():
    """``sim.run("local_sgd:period=0")`` said the strategy was unknown; ``commsim real
    --strategy local_sgd:period=0`` names the option."""
    from typer.testing import CliRunner

    from studies.cli import app

    result = run(
        "local_sgd:period=2",
        "quadratic",
        "ring:n=2",
        steps=4,
        optimizer="sgd:lr=0.05",
        lr_schedule="cosine:warmup=2",
    )
    assert result.config["strategy"]["period"] == 2 and result.config["optimizer"]["lr"] == 0.05
    with pytest.raises(ValueError) as through_api:
        run("local_sgd:period=0", "quadratic", "ring:n=2", steps=1)
    cli = CliRunner().invoke(
        app, ["real", "--strategy", "local_sgd:period=0", "--workload", "quadratic"]
    )
    assert cli.exit_code == 2
    assert cli.output.strip() == f"error: {through_api.value}"


def test_an_out_that_is_not_a_path_is_one_line():
    with pytest.raises(TypeError, match=r"^out=123 must be a directory path"):
        run("allreduce", "quadratic", "ring:n=2", steps=1, out=123)


def test_compute_overlapped_with_communication_is_booked_as_compute():
    class Overlapped(AllReduceSGD):
        """Computes the next gradient while the previous one is being all-reduced."""

        def worker(self, w):
            grads = yield w.compute_gradients()
            while not w.done:
                reduced, grads = yield w.comm.wait_all(
                    [w.comm.all_reduce(grads, op="mean"), w.compute_gradients()]
                )
                w.apply(reduced)

    result = run(
        Overlapped(), "quadratic", topologies.ring(3, bandwidth="1MB/s"), steps=5, compute=0.01
    )
    workers = result.ranks
    assert workers["compute_time"].to_numpy() == pytest.approx([0.06] * 3)
    total = workers[["compute_time", "comm_time", "idle_time"]].sum(axis=1)
    assert total.to_numpy() == pytest.approx([result.summary["time"]] * 3)


def test_a_rank_computes_one_gradient_at_a_time():
    class Greedy(AllReduceSGD):
        def worker(self, w):
            while not w.done:
                first, second = yield w.comm.wait_all(
                    [w.compute_gradients(), w.compute_gradients()]
                )
                grads = yield w.comm.all_reduce((first + second) / 2, op="mean")
                w.apply(grads)

    result = run(Greedy(), "quadratic", topologies.ring(2, **FAST), steps=5, compute=0.01)
    assert result.summary["time"] == pytest.approx(5 * 2 * 0.01, rel=1e-6)
    assert result.ranks["compute_time"].to_numpy() == pytest.approx([0.1, 0.1], rel=1e-6)


def test_sharded_servers_count_a_version_once_every_shard_has_it():
    """Server 1 on a slow link applies each update later than server 0: evaluations and the
    final model must still be whole versions, equal to all-reduce's."""
    graph = topologies.star(5, bandwidth="1GB/s", latency="5us")
    graph.edges[1, "s0"]["latency"] = 2e-3
    graph.edges[1, "s0"]["bandwidth"] = 1e7
    kwargs = {"steps": 12, "eval_every": 3, "optimizer": {"name": "sgd", "lr": 0.1}}
    sharded = run(ParameterServer(servers=2), "mlp_digits", graph, **kwargs)
    allreduce = run("allreduce", "mlp_digits", topologies.star(3), **kwargs)
    assert torch.equal(sharded.parameters, allreduce.parameters)
    pd.testing.assert_series_equal(sharded.evals["loss"], allreduce.evals["loss"])
    assert list(sharded.steps["step"]) == list(range(1, 13))


def test_a_group_only_its_members_create_is_refused_as_on_torch():
    from strategies import CommError

    class MembersOnly(ParameterServer):
        """Workers make a group the server never makes: gloo would hang in new_group."""

        def worker(self, w):
            w.comm.new_group(w.workers)
            yield w.compute_gradients()

        def server(self, s):
            return
            yield

    with pytest.raises(CommError, match="rank 0 created 0 of the 1 groups") as err:
        run(MembersOnly(), "quadratic", topologies.star(3), steps=2)
    assert "\n" not in str(err.value)


def test_async_shards_are_evaluated_at_one_version_even_when_one_runs_ahead():
    history = {}

    class Recording(ParameterServer):
        """Keeps every shard as of every version it reached (an independent record)."""

        def server(self, s):
            apply = s.apply

            def recorded(grads, **kwargs):
                apply(grads, **kwargs)
                history[(s.rank, s.version)] = s.parameters()

            s.apply = recorded
            yield from super().server(s)

    graph = topologies.star(6, bandwidth="1GB/s", latency="5us")
    for host in (1, 4):  # server 1 and one worker sit behind slow links
        graph.edges[host, "s0"]["latency"] = 3e-4
    workload = workloads.get("mlp_digits")
    result = run(
        Recording(mode="async", servers=2),
        workload,
        graph,
        steps=30,
        eval_every=1,
        compute={"base": 1e-3, "straggler": "lognormal"},
    )
    for row in result.evals.itertuples():
        if row.step == 0:
            continue
        flat = torch.cat([history[(0, row.step)], history[(1, row.step)]])
        replica = Replica(workload.make_model(0))
        replica.load(flat)
        assert row.loss == workload.evaluate(replica.model)["loss"]
    assert torch.equal(result.parameters, torch.cat([history[(0, 30)], history[(1, 30)]]))


def test_time_budget_on_an_event_instant_and_groups_made_late_are_fine():
    # max_time lands exactly on the end of a compute step (before any step: said so).
    with pytest.warns(UserWarning, match="before its first global step"):
        exact = run(
            "allreduce",
            "quadratic",
            topologies.ring(4, **FAST),
            steps=5,
            compute=0.01,
            max_time=0.01,
        )
    assert exact.summary["stop_reason"] == "max_time" and exact.summary["time"] == 0.01

    class LateGroups(AllReduceSGD):
        """Makes a group after computing; a slow rank has not got there when time runs out."""

        def worker(self, w):
            while not w.done:
                grads = yield w.compute_gradients()
                group = w.comm.new_group(w.workers)
                grads = yield w.comm.all_reduce(grads, op="mean", group=group)
                w.apply(grads)

    with pytest.warns(UserWarning, match="before its first global step"):
        budget = run(
            LateGroups(),
            "quadratic",
            topologies.ring(2, **FAST),
            steps=100,
            compute={"base": 0.01, "slowdown": {1: 3.0}},
            max_time=0.02,
        )
    assert budget.summary["stop_reason"] == "max_time"


def test_a_deadlock_is_reported_even_under_a_time_budget():
    class Stuck(AllReduceSGD):
        def worker(self, w):
            if w.rank == 0:
                yield w.comm.recv(torch.zeros(1), src=1)  # nobody sends

    with pytest.raises(SimulationError, match="deadlock at t=0s"):
        run(Stuck(), "quadratic", topologies.ring(2), steps=3, max_time=100.0)


def test_a_strategy_error_mentioning_until_is_not_swallowed():
    class Raises(AllReduceSGD):
        def worker(self, w):
            yield w.compute_gradients()
            raise RuntimeError("no progress until step 3")

    with pytest.raises(RuntimeError, match="until step 3"):
        run(Raises(), "quadratic", topologies.ring(2), steps=3)


def test_a_strategy_with_servers_that_updates_on_workers_evaluates_a_worker():
    class Helpers(AllReduceSGD):
        """All-reduce among workers; rank 0 is an idle helper 'server' that owns no model."""

        def servers(self, world_size):
            return [0]

        def server(self, s):
            s.comm.new_group(s.workers)  # every rank makes every group, as torch requires
            return
            yield

    result = run(Helpers(), "quadratic", topologies.ring(3), steps=4, eval_every=2)
    assert list(result.evals["step"]) == [0, 2, 4]


@pytest.mark.parametrize(("algorithm", "recorded"), [("auto", True), ("ring", False)])
def test_a_run_records_what_auto_resolved_to(tmp_path, algorithm, recorded):
    import json

    from sim.collectives.select import ALGORITHMS

    result = run(AllReduceSGD(algorithm=algorithm), "quadratic", "star:n=4", steps=2, out=tmp_path)
    choices = json.loads((tmp_path / "run.json").read_text())["config"]["auto"]["collectives"]
    assert choices == result.config["auto"]["collectives"]
    if recorded:
        assert list(choices) == ["all_reduce"] and set(choices["all_reduce"]) <= set(ALGORITHMS)
    else:
        assert choices == {}


@pytest.mark.parametrize("name", ["step", "rank", "nbytes"])
def test_a_log_name_that_is_a_row_column_is_refused_at_the_log(name):
    # Found by mypy: `w.log(step=...)` collided with the row's own `step` (a TypeError from
    # deep inside the ledger), and `w.log(nbytes=...)` with `row`'s parameter.
    class LogsAColumn(AllReduceSGD):
        def worker(self, w):
            w.log(**{name: 1.0})
            yield from super().worker(w)

    with pytest.raises(ValueError, match=rf"^w\.log\({name}=\.\.\.\): '{name}' is a column"):
        run(LogsAColumn(), "quadratic", topologies.ring(2), steps=2)


def test_samples_count_applied_gradients_and_a_straggler_leaves_the_rest_discarded():
    # Local SGD, period 5, 4 steps, rank 3 three times slower: ranks 0-2 compute and apply
    # their fifth gradient while rank 3 is still on its fourth step. The run stops at global
    # step 4, so the fifth gradients were computed but never part of the global model.
    result = run(
        "local_sgd:period=5",
        "quadratic",
        topologies.star(4),
        steps=4,
        eval_every=2,
        compute={"base": 0.01, "slowdown": {3: 3.0}},
    )
    batch = 32
    assert result.summary["samples"] == 4 * 4 * batch
    assert result.summary["discarded_samples"] == 3 * batch
    assert list(result.steps["samples"]) == [4 * k * batch for k in range(1, 5)]
