"""Crashes, restarts and quorums in the simulator (sim.failures, sim.quorums, sim.injector)."""

from __future__ import annotations

import json

import pytest
import torch

import sim
import topologies
from strategies import AllReduceSGD
from tests.reference_strategies import CatchingAllReduce, CheckpointingLocal

KW = dict(steps=40, eval_every=10, compute=0.01)
QUORUM = "allreduce:fault_tolerance=quorum"


def test_quorum_allreduce_without_faults_is_plain_allreduce() -> None:
    plain = sim.run("allreduce", "quadratic", topologies.ring(4), **KW)
    quorum = sim.run(QUORUM, "quadratic", topologies.ring(4), **KW)
    assert quorum.summary["final_loss"] == plain.summary["final_loss"]
    assert quorum.summary["time"] == plain.summary["time"]
    assert quorum.summary["bytes"] == plain.summary["bytes"]
    assert torch.equal(quorum.parameters, plain.parameters)


def test_a_crash_and_restart_costs_one_step_detection_and_a_heal() -> None:
    crash = {"kind": "crash", "rank": 2, "step": 10, "restart_step": 20}
    result = sim.run(QUORUM, "quadratic", topologies.ring(4), **KW, faults=[crash])
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (40, 1, 1, 1)
    # The three survivors' gradients of the failed round (32 samples each) are lost.
    assert s["lost_samples"] == 3 * 32
    # Healing sends the parameters (plain SGD keeps no buffers): 4 bytes each.
    numel = result.parameters.numel()
    assert s["heal_bytes"] == 4 * numel
    # The step after the crash waits for its detection (3 s by default), then for a
    # new quorum round: recovery is the detection delay plus one step's compute.
    assert s["recovery_time"] == pytest.approx(3.0 + 0.01, abs=1e-3)
    events = result.metrics[result.metrics.kind == "fault"]
    assert list(events.event) == ["crash", "lost", "lost", "lost", "restart", "rejoin"]
    assert list(events[events.event == "restart"].step) == [20]
    assert result.config["faults"]["events"] == [crash]
    assert s["goodput"] == pytest.approx(s["samples"] / s["time"])


def test_detection_delay_is_the_schedules() -> None:
    crash = {"kind": "crash", "rank": 1, "step": 5, "restart": 1.0}
    times = []
    for detect in (1.0, 4.0):
        faults = {"events": [crash], "detect": detect}
        result = sim.run(QUORUM, "quadratic", topologies.ring(4), **KW, faults=faults)
        times.append(result.summary["time"])
    assert times[1] - times[0] == pytest.approx(3.0, abs=1e-9)


def test_without_a_policy_a_crash_ends_the_run_with_one_line_and_its_rows(tmp_path) -> None:
    crash = {"kind": "crash", "rank": 2, "step": 5}
    with pytest.raises(sim.SimulationError) as raised:
        sim.run("allreduce", "quadratic", topologies.ring(4), **KW, faults=[crash], out=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert "rank 2 crashed" in message and "fault_tolerance='quorum'" in message
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed"
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "metrics.parquet")
    assert (rows.kind == "fault").sum() == 1 and rows.step.max() == 5


def test_every_owner_down_loses_the_model_and_fails_the_run() -> None:
    # A restarted rank has no state: with every replica gone the model is lost, restart or
    # not (a checkpoint would keep it).
    faults = [{"kind": "crash", "rank": r, "at": 0.05, "restart": 1.0} for r in range(4)]
    with pytest.raises(sim.SimulationError, match="no owner of the global model is left"):
        sim.run(QUORUM, "quadratic", topologies.ring(4), **KW, faults=faults)


def test_a_servers_restart_step_it_would_wait_for_forever_fails_in_one_line() -> None:
    # The global step waits for a shard's server, so it could never reach the step the server
    # is to come back at: the run used to poll until max_time; it ends at the crash, rows kept.
    from strategies.parameter_server import ParameterServer

    faults = [{"kind": "crash", "rank": 0, "step": 4, "restart_step": 6}]
    with pytest.raises(sim.SimulationError, match="holds a shard.*restart_step=6") as raised:
        sim.run(
            ParameterServer(),
            "quadratic",
            topologies.star(4),
            steps=12,
            compute=0.01,
            max_time=30.0,
            faults=faults,
        )
    assert "after 4 steps" in str(raised.value) and "\n" not in str(raised.value)


def test_random_crashes_are_bit_identical_across_reruns() -> None:
    faults = {"events": [{"kind": "crash", "mtbf": "2s", "restart": "0.5s"}], "detect": 0.1}
    runs = [
        sim.run(QUORUM, "quadratic", topologies.ring(4), **KW, faults=faults, seed=3)
        for _ in range(2)
    ]
    assert runs[0].summary["failures"] > 0
    assert runs[0].metrics.equals(runs[1].metrics)
    other = sim.run(QUORUM, "quadratic", topologies.ring(4), **KW, faults=faults, seed=4)
    assert not other.metrics.equals(runs[0].metrics)


def test_a_transient_straggler_slows_its_compute_by_its_factor() -> None:
    # One worker, so the step time is its compute: 10 steps at 0.01 s, 10 at 0.04 s, 20.
    slow = {"kind": "slow", "rank": 0, "factor": 4, "at": 0.1, "until": 0.5}
    result = sim.run("allreduce", "quadratic", topologies.ring(1), **KW, faults=[slow])
    assert result.summary["time"] == pytest.approx(0.1 + 10 * 0.04 + 20 * 0.01)


def test_a_user_strategy_catching_peer_failure_carries_on() -> None:
    crash = {"kind": "crash", "rank": 1, "step": 5}
    result = sim.run(CatchingAllReduce(), "quadratic", topologies.ring(2), **KW, faults=[crash])
    assert result.summary["steps"] == 40 and result.summary["failures"] == 1
    # The PeerFailure named the crashed rank (the strategy logs the sum of the ranks named).
    assert set(result.metrics["failed_ranks"].dropna()) == {1.0}


def test_quorum_waits_for_min_replicas() -> None:
    strategy = AllReduceSGD(fault_tolerance="quorum", min_replicas=4)
    crash = {"kind": "crash", "rank": 1, "step": 5, "restart": 2.0}
    result = sim.run(strategy, "quadratic", topologies.ring(4), **KW, faults=[crash])
    # No round runs with three: the survivors wait for the restart (2 s), not only the
    # detection (3 s): the outage is the longer of the two, then a step.
    assert result.summary["recovery_time"] == pytest.approx(3.0 + 0.01, abs=1e-3)
    assert result.summary["lost_steps"] == 1


def _restart_policy(events, **options):  # type: ignore[no-untyped-def]
    return {"events": events, "recovery": "restart", **options}


def test_restart_from_a_checkpoint_repeats_the_lost_steps_exactly() -> None:
    # Momentum, so the optimizer's buffers must come back too; the data position as well.
    kw = dict(KW, optimizer="sgd:lr=0.05,momentum=0.9")
    plain = sim.run("allreduce", "quadratic", topologies.ring(4), **kw)
    faults = _restart_policy(
        [{"kind": "crash", "rank": 2, "step": 25, "restart": 1.0}],
        checkpoint_every=10,
        checkpoint={"bandwidth": "1GB/s", "latency": 0.05},
    )
    result = sim.run("allreduce", "quadratic", topologies.ring(4), **kw, faults=faults)
    assert torch.equal(result.parameters, plain.parameters)
    s = result.summary
    assert (s["failures"], s["restarts"], s["lost_steps"]) == (1, 1, 25 - 20)
    # Writes at steps 10, 20 and 30 (after the restart), one read: 4 x (latency + bytes/bw).
    nbytes = 2 * 4 * plain.parameters.numel()  # parameters and momentum, float32
    assert s["checkpoint_time"] == pytest.approx(4 * (0.05 + nbytes / 1e9))
    # The restart comes when the crash is detected (3 s > the 1 s restart delay).
    events = result.metrics[result.metrics.kind == "fault"]
    crash, restart = events.time.tolist()
    assert restart - crash == pytest.approx(3.0)


def test_a_restart_before_the_first_checkpoint_starts_over_from_the_initial_state() -> None:
    # The checkpoint of step 0 has no momentum buffer yet (the optimizer never stepped).
    kw = dict(KW, optimizer="sgd:lr=0.05,momentum=0.9")
    plain = sim.run("allreduce", "quadratic", topologies.ring(3), **kw)
    crash = {"kind": "crash", "rank": 1, "step": 5, "restart": 1.0}
    faults = _restart_policy([crash], checkpoint_every=10)
    result = sim.run("allreduce", "quadratic", topologies.ring(3), **kw, faults=faults)
    assert result.summary["lost_steps"] == 5
    assert torch.equal(result.parameters, plain.parameters)


def test_young_daly_sets_the_checkpoint_interval() -> None:
    from faults import FaultSchedule

    schedule = FaultSchedule.parse(
        _restart_policy(
            [{"kind": "crash", "mtbf": "400s", "restart": 1.0}],
            checkpoint={"bandwidth": "1GB/s", "latency": 0.5},
        ),
        world_size=4,
        links=None,
    )
    # The job's MTBF is 400 s / 4 ranks; Young/Daly: sqrt(2 x 0.5 s x 100 s) = 10 s.
    assert schedule.checkpoint_interval(0, 4) == pytest.approx(10.0)
    result = sim.run(
        "allreduce", "quadratic", topologies.ring(4), steps=40, compute=1.0, faults=schedule, seed=1
    )
    # A step takes a bit over 1 s: a checkpoint every ~10 s of the run, each costing 0.5 s
    # (and one read per restart).
    s = result.summary
    reads = s["restarts"]
    writes = round(s["checkpoint_time"] / 0.5) - reads
    assert writes == pytest.approx((s["time"] - 3.0 * reads) / 10.5, abs=1.0)
    assert s["lost_steps"] < 10  # never more than an interval's steps


def test_a_link_down_on_a_fat_tree_reroutes_and_the_run_completes() -> None:
    graph = topologies.fat_tree(4)
    kw = dict(steps=20, eval_every=10, compute=0.01, workload="mlp_digits")
    plain = sim.run("allreduce", topology=graph, **kw)
    # Down from 0.05 s on: the ring's flows between pods share the other core links.
    down = {"kind": "link_down", "link": ["core0", "agg1_0"], "at": 0.05, "until": 100}
    result = sim.run("allreduce", topology=graph, **kw, faults=[down])
    assert result.summary["steps"] == 20
    assert result.summary["time"] > plain.summary["time"]
    assert list(result.metrics[result.metrics.kind == "fault"].event) == ["link_down"]
    assert torch.equal(result.parameters, plain.parameters)  # the same maths, later


def test_a_host_link_down_on_a_star_fails_its_operations() -> None:
    down = {"kind": "link_down", "link": ["s0", "1"], "at": 0.05}
    # Its operations wait for the link, and fail once rank 1 has been cut off `detect`
    # (default 3 s) seconds, as a heartbeat timeout gives it up: at 0.05 + 3 s.
    with pytest.raises(sim.SimulationError, match=r"failed at t=3\.05s .*rank 1"):
        sim.run("allreduce", "quadratic", topologies.star(4), **KW, faults=[down])
    faults = {"events": [down], "detect": "1s"}
    with pytest.raises(sim.SimulationError, match=r"failed at t=1\.05s .*rank 1"):
        sim.run("allreduce", "quadratic", topologies.star(4), **KW, faults=faults)
    # A strategy that catches it goes on without the cut-off rank.
    result = sim.run(CatchingAllReduce(), "quadratic", topologies.star(2), **KW, faults=[down])
    assert result.summary["steps"] == 40
    # The failure names the ends of the flow that lost its path: ranks 0 and 1 (sum 1).
    assert set(result.metrics["failed_ranks"].dropna()) == {1.0}


def test_a_host_link_down_shorter_than_detect_delays_the_run_and_changes_no_number() -> None:
    # As gloo over TCP does on the testbed: the operations wait out the outage.
    kw = dict(KW, workload="quadratic", topology=topologies.star(4))
    plain = sim.run("allreduce", **kw)
    down = {"kind": "link_down", "link": ["s0", "1"], "at": 0.05, "until": 1.05}
    result = sim.run("allreduce", **kw, faults={"events": [down], "detect": "2s"})
    assert result.summary["steps"] == plain.summary["steps"] == 40
    assert result.summary["final_loss"] == plain.summary["final_loss"]
    assert torch.equal(result.parameters, plain.parameters)  # the same maths, later
    # The run waits from the first operation that needs the link (within a step's compute,
    # 0.01 s, of the outage's start) to the link's return, then goes on as it would have.
    assert plain.summary["time"] + 1.0 - 0.01 <= result.summary["time"]
    assert result.summary["time"] <= plain.summary["time"] + 1.0
    rows = result.metrics[result.metrics.kind == "fault"]
    assert list(rows.event) == ["link_down", "link_up"]


def test_a_host_link_down_longer_than_detect_fails_the_run_at_the_detection() -> None:
    down = {"kind": "link_down", "link": ["s0", "1"], "at": 0.05, "until": 2.05}
    faults = {"events": [down], "detect": "1s"}
    with pytest.raises(sim.SimulationError, match=r"failed at t=1\.05s .*no live route") as e:
        sim.run("allreduce", "quadratic", topologies.star(4), **KW, faults=faults)
    # A cut link, not a crash: the advice is about links.
    assert "stops at a crash" not in str(e.value) and "give the link_down an 'until'" in str(
        e.value
    )


def test_a_program_saves_and_restores_its_own_checkpoint() -> None:
    storage = {"bandwidth": "1MB/s", "latency": 0.01}
    crash = {"kind": "crash", "rank": 1, "step": 12, "restart": 0.02}
    faults = {"events": [crash], "checkpoint": storage}
    result = sim.run(
        CheckpointingLocal(every=5, restored=10),
        "quadratic",
        topologies.ring(2),
        **KW,
        faults=faults,
    )
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"]) == (40, 1, 1)
    numel = result.parameters.numel()
    write = 0.01 + 4 * numel / 1e6  # plain SGD: the parameters only
    # Rank 0 saves at 5, 10, ... 40 (8); rank 1 at 5, 10, then again from 15 to 40 (8),
    # and reads once.
    assert s["checkpoint_time"] == pytest.approx(17 * write)
    rejoin = result.metrics[(result.metrics.kind == "fault") & (result.metrics.event == "rejoin")]
    assert list(rejoin["rank"]) == [1]


CUT = {"kind": "link_down", "link": ["s0", "2"], "at": 0.05}


def test_a_partition_leaves_the_cut_rank_out_as_a_crash_at_the_link_failure_would() -> None:
    # star(3), rank 2's link down for good: it is alive but unreachable. The quorum holds
    # ranks 0 and 1 from the detection on; the run ends (max_time: a hang fails the test).
    quorum = AllReduceSGD(fault_tolerance="quorum")
    kw = dict(KW, workload="quadratic", topology=topologies.star(3), max_time=30)
    cut = sim.run(quorum, **kw, faults=[CUT])
    # An independent run: rank 2 crashed at the same time, never back.
    crash = sim.run(quorum, **kw, faults=[{"kind": "crash", "rank": 2, "at": 0.05}])
    s = cut.summary
    assert s["steps"] == 40 and s["failures"] == 1 and s["restarts"] == 0
    # The one round in flight at the cut fails at the detection (3 s) and is lost.
    assert s["lost_steps"] == 1
    # Its three gradients are lost (a crashed rank's own was never finished: two).
    assert s["lost_samples"] == 3 * 32 and crash.summary["lost_samples"] == 2 * 32
    for key in ("steps", "time", "lost_steps", "final_loss", "recovery_time"):
        assert s[key] == crash.summary[key], key
    assert torch.equal(cut.parameters, crash.parameters)
    assert s["recovery_time"] == pytest.approx(3.0 + 0.01, abs=1e-3)
    rows = cut.metrics[cut.metrics.kind == "fault"]
    assert list(rows.event) == ["link_down", "lost", "lost", "lost", "cut_off"]
    assert list(rows[rows.event == "cut_off"]["rank"]) == [2]


def test_a_cut_rank_rejoins_healed_once_its_link_is_back() -> None:
    quorum = AllReduceSGD(fault_tolerance="quorum")
    kw = dict(KW, steps=100, workload="quadratic", topology=topologies.star(3), max_time=30)
    cut = sim.run(quorum, **kw, faults=[dict(CUT, until=3.2)])
    crash = {"kind": "crash", "rank": 2, "at": 0.05, "restart": 3.15}
    restarted = sim.run(quorum, **kw, faults=[crash])
    s = cut.summary
    assert s["steps"] == 100
    # Counted as a crash and a restart are: one failure, one return, one heal of the
    # parameters (plain SGD: 4 bytes each), the detection and a step of outage.
    for key in ("failures", "restarts", "lost_steps", "heal_bytes", "recovery_time"):
        assert s[key] == restarted.summary[key], key
    assert (s["failures"], s["restarts"], s["lost_steps"]) == (1, 1, 1)
    assert s["heal_bytes"] == 4 * cut.parameters.numel()
    rows = cut.metrics[cut.metrics.kind == "fault"]
    assert list(rows.event)[-4:] == ["cut_off", "link_up", "reconnect", "rejoin"]
    # Back in the quorum, its replica is the others' again (it was healed).
    assert s["final_loss"] == pytest.approx(restarted.summary["final_loss"], rel=0.05)


def test_a_partition_too_small_for_min_replicas_ends_the_run_in_one_line(tmp_path) -> None:
    quorum = AllReduceSGD(fault_tolerance="quorum", min_replicas=3)
    kw = dict(KW, workload="quadratic", topology=topologies.star(3), max_time=30)
    with pytest.raises(sim.SimulationError) as raised:
        sim.run(quorum, **kw, faults=[CUT], out=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the run failed at t=3.05s after 4 steps: link ('s0', 2) ")
    assert "lower min_replicas to 2, or give the link_down an 'until'" in message
    assert "stops at a crash" not in message
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "metrics.parquet")
    assert list(rows[rows.kind == "fault"].event)[0] == "link_down" and rows.step.max() == 4
    # With a repair to come, the quorum waits for it instead (no quorum left rank 2 out:
    # nothing to heal), and the run goes on after it.
    result = sim.run(quorum, **kw, faults=[dict(CUT, until=4.0)])
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (40, 0, 0, 1)
    assert s["time"] > 4.0


@pytest.mark.parametrize("until", [None, 3.3])
def test_a_cut_local_sgd_worker_rolling_back_stays_out_until_healed(until) -> None:  # type: ignore[no-untyped-def]
    # Local SGD's failed averaging rolls each worker back (a `rejoin` row, as a rewind
    # is); the cut-off worker's rollback must not make it an owner again, or the global
    # step would wait for it for ever.
    down = CUT if until is None else dict(CUT, until=until)
    spec = "local_sgd:period=4,fault_tolerance=quorum"
    result = sim.run(spec, "quadratic", topologies.star(3), **KW, faults=[down], max_time=30)
    s = result.summary
    # The round in flight at the cut (4 local steps) is rolled back and lost.
    assert (s["steps"], s["failures"], s["lost_steps"]) == (40, 1, 4)
    assert s["restarts"] == (0 if until is None else 1)
    assert s["heal_bytes"] == (0 if until is None else 2 * 4 * result.parameters.numel())


def test_a_server_cut_off_for_good_ends_the_run_in_one_line() -> None:
    # Its workers carry on without an unreachable server by asking again: with no repair
    # to come they would ask for ever (the run used to end at the first failed push).
    cut = {"kind": "link_down", "link": ["s0", "0"], "at": 0.05}
    kw = dict(KW, workload="quadratic", topology=topologies.star(4))
    with pytest.raises(sim.SimulationError) as raised:
        sim.run("parameter_server:mode=async", **kw, faults=[cut])
    message = str(raised.value)
    assert "\n" not in message and message.startswith("the run failed at t=3.05s")
    assert "split the ranks into [0], [1, 2, 3], and no worker reaches every server (0)" in (
        message
    )
    assert "give the link_down an 'until'" in message
    # Known for good only once another link's repair, the last to come, is done.
    other = {"kind": "link_down", "link": ["s0", "2"], "at": 0.01, "until": 6.0}
    with pytest.raises(sim.SimulationError, match=r"failed at t=6s .* no worker reaches"):
        sim.run("parameter_server:mode=async", **kw, faults=[cut, other])
    # With the link back, the workers ask until the server answers, and the run completes.
    result = sim.run("parameter_server:mode=async", **kw, faults=[dict(cut, until=3.5)])
    assert result.summary["steps"] == 40 and result.summary["time"] > 3.5


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_server_cut_off_with_a_worker_carries_on_with_it(mode: str) -> None:
    # hierarchical(3, 2): node0 holds server 0 and worker 1. Its uplink down for good leaves
    # them the smaller part: not the primary part, but the server still has a worker.
    topo = topologies.hierarchical(3, 2)
    kw = dict(KW, steps=30, workload="quadratic", topology=topo, max_time=60)
    strategy = f"parameter_server:mode={mode}"
    cut = sim.run(
        strategy, **kw, faults=[{"kind": "link_down", "link": ["node0", "spine"], "at": 0.05}]
    )
    # Independent: workers 2-5 crashed at the link's failure instead.
    gone = [{"kind": "crash", "rank": r, "at": 0.05} for r in (2, 3, 4, 5)]
    crashed = sim.run(strategy, **kw, faults=gone)
    assert cut.summary["steps"] == crashed.summary["steps"] == 30
    assert torch.equal(cut.parameters, crashed.parameters)
