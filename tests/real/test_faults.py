"""Faults on the real backend (real.crashes, real.restarts): a crash is the rank process
killed with SIGKILL, a restart a new process that rejoins; the same schedule as sim's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import real
import sim
import topologies
from faults import FaultError
from strategies import Strategy
from tests.reference_strategies import CatchingAllReduce, CheckpointingLocal, QuorumCollectives

KW = dict(steps=8, eval_every=4)
QUORUM = "allreduce:fault_tolerance=quorum"
#: sim's network where a run of 3+ ranks is compared with real bit for bit: the gloo rule sums
#: in gloo's order. The default rule's rank order lands on gloo's bits only by chance, which
#: changes with the CPU (PyTorch's kernels, picked by its vector instructions, give other
#: contributions): docs/collectives.md, "Numerics".
GLOO = {"collectives": "gloo"}


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.fixture(autouse=True)
def no_rank_left_behind():  # type: ignore[no-untyped-def]
    """Every rank process a fault test started, killed or restarted, is gone after it."""
    yield
    from real.pool import shared_pool

    pool = shared_pool()
    assert _children(pool._process.pid) == []


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"kind": "link_down", "link": ["s0", "h1"], "at": 1.0}, "needs a backend with links"),
        ({"kind": "crash", "rank": 5, "step": 2}, "rank"),
    ],
)
def test_faults_the_real_backend_cannot_apply_are_refused_in_one_line(event, words) -> None:
    with pytest.raises(FaultError) as raised:
        real.run("allreduce", "quadratic", nproc=2, **KW, faults=[event])
    assert "\n" not in str(raised.value) and words in str(raised.value)


def _restart_policy(**options):  # type: ignore[no-untyped-def]
    crash = {"kind": "crash", "rank": 1, "step": 7}
    return {"events": [crash], "recovery": "restart", "detect": 1.0, **options}


@pytest.mark.parametrize(
    ("strategy", "options", "words"),
    [
        ("parameter_server", {"checkpoint_every": 4}, "parameter_server has servers"),
        ("gossip:mode=async", {"checkpoint_every": 4}, "mode='async' is asynchronous"),
        (QUORUM, {"checkpoint_every": 4}, "recovers by itself"),
    ],
)
def test_checkpoint_restarts_the_real_backend_cannot_make_consistent_are_refused_in_one_line(
    strategy, options, words
) -> None:
    with pytest.raises(FaultError) as raised:
        real.run(strategy, "quadratic", nproc=4, **KW, faults=_restart_policy(**options))
    assert "\n" not in str(raised.value) and words in str(raised.value)


@pytest.mark.parametrize("strategy", ["allreduce", "local_sgd:period=4"])
def test_restart_from_a_checkpoint_equals_sim_exactly(strategy) -> None:
    # Rank 1 is killed at step 7; every rank is stopped and restarted as a new process
    # from the checkpoint all of them wrote at step 4 (parameters, momentum, data position),
    # in a new world process group: steps 5 to 7 are lost and run again.
    faults = _restart_policy(checkpoint_every=4)
    kw = dict(steps=12, eval_every=4, optimizer="sgd:lr=0.05,momentum=0.9")
    simulated = sim.run(
        strategy, "quadratic", topologies.ring(3), **kw, compute=0.01, faults=faults, network=GLOO
    )
    ran = real.run(strategy, "quadratic", nproc=3, **kw, timeout=60, faults=faults)
    keys = ("steps", "failures", "restarts", "lost_steps", "lost_samples")
    assert [ran.summary[k] for k in keys] == [simulated.summary[k] for k in keys]
    lost = 3 if strategy == "allreduce" else 4  # Local SGD's survivors step on to 8 alone
    assert [ran.summary[k] for k in keys] == [12, 1, 1, lost, ran.summary["lost_samples"]]
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]
    assert torch.equal(ran.parameters, simulated.parameters)
    if strategy == "allreduce":  # synchronous: the lost steps are repeated exactly
        plain = sim.run(strategy, "quadratic", topologies.ring(3), **kw, compute=0.01, network=GLOO)
        assert torch.equal(ran.parameters, plain.parameters)
    # Three writes (steps 4, 8 and 12; the step-8 one twice for Local SGD's survivors
    # alone ... counted once per step) and one read, each taking real time.
    assert ran.summary["checkpoint_time"] > 0

    def fault_rows(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "fault"]
        return list(zip(rows.step, rows["rank"], rows.event))

    if strategy == "allreduce":
        assert fault_rows(ran) == fault_rows(simulated) == [(7, 1, "crash"), (7, 1, "restart")]
    else:  # the global step when rank 1 dies is the slowest survivor's, which is timing's
        assert fault_rows(ran)[1:] == fault_rows(simulated)[1:] == [(8, 1, "restart")]
    evals = ran.metrics[ran.metrics.kind == "eval"]
    assert list(evals.step) == list(simulated.metrics[simulated.metrics.kind == "eval"].step)


def test_two_crashes_at_one_step_restart_the_job_once() -> None:
    # Ranks 1 and 2 both die at step 7 (each before it hears of the other): one restart, as
    # in sim, which drops a crash while every rank restarts; rank 2's next crash still comes.
    crashes = [{"kind": "crash", "rank": r, "step": 7} for r in (1, 2)]
    crashes.append({"kind": "crash", "rank": 2, "step": 10})
    faults = _restart_policy(checkpoint_every=4)
    faults["events"] = crashes
    kw = dict(steps=14, eval_every=7, optimizer="sgd:lr=0.05,momentum=0.9")
    simulated = sim.run(
        "allreduce", "quadratic", topologies.ring(3), **kw, faults=faults, network=GLOO
    )
    ran = real.run("allreduce", "quadratic", nproc=3, **kw, timeout=60, faults=faults)
    keys = ("steps", "failures", "restarts", "lost_steps", "final_loss")
    assert [ran.summary[k] for k in keys] == [simulated.summary[k] for k in keys]
    assert [ran.summary[k] for k in keys[:4]] == [14, 2, 2, 3 + 2]
    assert torch.equal(ran.parameters, simulated.parameters)


def test_a_crash_as_a_rank_is_asked_to_halt_leaves_it_up_once_all_restart() -> None:
    # The launcher's bookkeeping alone: rank 1 is killed, so rank 2 is asked to halt, but
    # rank 2's own scheduled crash came first. One Crashed (sim drops the second crash), and
    # rank 2 is not down for its peers in the restarted job (its crash is balanced).
    import torch.distributed as dist

    from faults import FaultSchedule
    from real.crashes import down, mark_crashed
    from real.restarts import Restarts
    from strategies.events import Crashed

    schedule = FaultSchedule.parse(
        {"events": [{"kind": "crash", "rank": r, "step": 7} for r in (1, 2)], "recovery": "restart"}
        | {"checkpoint_every": 4},
        world_size=3,
        links=None,
    )
    store = dist.HashStore()
    restarts = Restarts(schedule, 3, [0, 1, 2], store, start=None, kill=lambda pids: None)
    mark_crashed(store, 1, 0, 1.0)
    assert restarts.died(1, -9) and restarts.restarting
    mark_crashed(store, 2, 0, 1.001)
    assert restarts.died(2, -9) and restarts.died(2, -9)  # (asked again each poll)
    assert restarts.events == [Crashed(1.0, 1)]
    assert down(store, [0, 1, 2]) == (1,)


@pytest.mark.parametrize(("storage", "lost"), [((1e30, 0.0), 0), ((1e9, 0.05), 9)])
def test_young_daly_sets_the_interval_in_steps_on_real(storage, lost) -> None:
    # Without checkpoint_every the ranks agree on Young/Daly's interval in steps (rank 0's
    # seconds per step over the first ones): a free checkpoint is one every step (nothing
    # lost), one that costs 50 ms against a 10^6 s MTBF every 316 s (none in this run: all
    # 9 steps lost, from the initial state); so in sim, whose interval is in seconds.
    never = {"kind": "crash", "mtbf": 1e6, "ranks": [2], "restart": 0.1}
    faults = _restart_policy(checkpoint={"bandwidth": storage[0], "latency": storage[1]})
    faults["events"] = [{"kind": "crash", "rank": 1, "step": 9}, never]
    kw = dict(steps=12, eval_every=4, optimizer="sgd:lr=0.05,momentum=0.9")
    simulated = sim.run(
        "allreduce", "quadratic", topologies.ring(3), **kw, faults=faults, network=GLOO
    )
    ran = real.run("allreduce", "quadratic", nproc=3, **kw, timeout=60, faults=faults)
    keys = ("steps", "failures", "restarts", "lost_steps")
    assert [ran.summary[k] for k in keys] == [simulated.summary[k] for k in keys]
    assert [ran.summary[k] for k in keys] == [12, 1, 1, lost]
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]


def test_a_restart_from_a_checkpoint_leaves_no_process_and_no_files(tmp_path, monkeypatch) -> None:
    # Rank 0 (the first, whose clock the run keeps) crashes at step 5 and the job restarts
    # 0.3 s later from step 4: every checkpoint file is in the launcher's scratch directory,
    # which goes with the run, and no rank process is left (the autouse fixture).
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    crash = {"kind": "crash", "rank": 0, "step": 5, "restart": 0.3}
    faults = {"events": [crash], "recovery": "restart", "checkpoint_every": 2}
    ran = real.run("allreduce", "mlp_digits", nproc=2, steps=8, eval_every=4, faults=faults)
    s = ran.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (8, 1, 1, 1)
    rows = ran.metrics[ran.metrics.kind == "fault"]
    crashed, restarted = rows.time.tolist()
    assert restarted - crashed >= 0.3  # the crash's restart delay
    assert not list(tmp_path.glob("commsim-real-*"))


def test_without_a_policy_a_crash_ends_the_run_with_one_line_and_its_rows(tmp_path) -> None:
    crash = {"kind": "crash", "rank": 2, "step": 3}
    with pytest.raises(RuntimeError) as raised:
        real.run("allreduce", "quadratic", nproc=3, **KW, faults=[crash], out=tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert "rank 2 crashed" in message and "fault_tolerance='quorum'" in message
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["config"]["faults"]["events"] == [crash]
    rows = pd.read_parquet(tmp_path / "metrics.parquet")
    faults = rows[rows.kind == "fault"]
    assert list(faults.event) == ["crash"] and list(faults["rank"]) == [2]
    assert rows.step.max() == 3  # as sim's: the rows up to the crash


SUMMARY = ("steps", "failures", "restarts", "lost_steps", "lost_samples", "heal_bytes")


def test_quorum_allreduce_crash_and_restart_step_equals_sim_exactly() -> None:
    # Rank 2 is killed at step 3 (after asking for round 4's quorum, so round 4 fails on
    # the survivors: one lost step), comes back as a new process at step 6, rejoins the
    # quorum after step 7 and is healed from rank 0 by a broadcast over the quorum's group.
    faults = {"events": [{"kind": "crash", "rank": 2, "step": 3, "restart_step": 6}]}
    faults["detect"] = 1.0
    kw = dict(steps=10, eval_every=5)
    ring = topologies.ring(3)
    simulated = sim.run(QUORUM, "quadratic", ring, **kw, compute=0.01, faults=faults, network=GLOO)
    ran = real.run(QUORUM, "quadratic", nproc=3, **kw, timeout=60, faults=faults)
    assert [ran.summary[k] for k in SUMMARY] == [simulated.summary[k] for k in SUMMARY]
    assert (ran.summary["failures"], ran.summary["restarts"], ran.summary["lost_steps"]) == (
        1,
        1,
        1,
    )
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]
    assert torch.equal(ran.parameters, simulated.parameters)

    def fault_rows(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "fault"]
        return sorted(zip(rows.step, rows["rank"], rows.event))

    assert fault_rows(ran) == fault_rows(simulated)


def test_a_user_strategy_catching_peer_failure_runs_on_both_backends() -> None:
    crash = {"kind": "crash", "rank": 1, "step": 3}
    kw = dict(steps=8, eval_every=4)
    simulated = sim.run(CatchingAllReduce(), "quadratic", topologies.ring(2), **kw, faults=[crash])
    ran = real.run(CatchingAllReduce(), "quadratic", nproc=2, **kw, timeout=60, faults=[crash])
    for result in (simulated, ran):
        assert (result.summary["steps"], result.summary["failures"]) == (8, 1)
        logged = (
            result.metrics[result.metrics.kind == "log"]
            if "failed_ranks" in result.metrics
            else None
        )
        assert logged is None or set(logged.failed_ranks.dropna()) == {1.0}
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]


def test_the_conformance_kit_checks_a_fault_schedule() -> None:
    from studies.conformance import check

    faults = {"events": [{"kind": "crash", "rank": 1, "step": 2, "restart_step": 4}]}
    faults["detect"] = 1.0
    report = check(QUORUM, world_size=3, steps=8, timeout=60, faults=faults)
    assert report.differences == []
    # ... and a restart of every rank from a checkpoint (DiLoCo: its outer momentum, a
    # program variable, starts afresh in both backends).
    faults = _restart_policy(checkpoint_every=2)
    faults["events"] = [{"kind": "crash", "rank": 1, "step": 5}]
    report = check("diloco:period=2", world_size=3, steps=8, timeout=60, faults=faults)
    assert report.differences == []


def test_a_crash_at_a_time_is_asked_of_the_rank_and_it_rejoins_after_restart_seconds() -> None:
    # The launcher asks rank 1 to crash at 0.3 s: it hands in and dies at its next yield or
    # wait (its steps so far count), and a new process comes back 0.2 s later and is healed.
    faults = {"events": [{"kind": "crash", "rank": 1, "at": 0.3, "restart": 0.2}], "detect": 1.0}
    ran = real.run(QUORUM, "quadratic", nproc=3, steps=60, eval_every=30, timeout=60, faults=faults)
    s = ran.summary
    assert (s["steps"], s["failures"], s["restarts"]) == (60, 1, 1)
    rows = ran.metrics[ran.metrics.kind == "fault"]
    assert list(rows[rows["rank"] == 1].event) == ["crash", "restart", "rejoin"]
    assert s["heal_bytes"] == 4 * ran.parameters.numel()  # the parameters, plain SGD


def test_fault_events_travel_through_the_hand_in_and_malformed_ones_are_refused() -> None:
    from real.handin import HandInRefused, decode_events, encode
    from strategies.events import Checkpointed, Crashed, Lost, Restarted, Restored, to_wire

    events = [Crashed(1.0, 2), Restarted(2.0, 2), Restored(2.5, 2, 7, 40.0, torch.ones(3))]
    events += [Lost(3.0, 2, 1, False), Checkpointed(3.5, 2, 8, 0.01)]
    decoded = decode_events(encode([to_wire(e) for e in events]), rank=2)
    assert [type(e) for e in decoded] == [type(e) for e in events]
    assert decoded[2].step == 7 and torch.equal(decoded[2].state, torch.ones(3))
    with pytest.raises(HandInRefused, match="a 'lost' event"):
        decode_events(encode([("lost", 3.0, 2, "one", False)]), rank=2)
    with pytest.raises(HandInRefused, match="a 'checkpointed' event"):
        decode_events(encode([("checkpointed", 3.5, 2, 8, -1.0)]), rank=2)


def test_random_crashes_draw_the_seeds_uptimes_as_wall_seconds() -> None:
    # Seed 0 draws rank 1's uptimes 0.61 s, then 1.21 s from its restart: the launcher asks
    # it to crash at those wall times, and restarts it 0.3 s after each.
    from itertools import islice

    from faults import RandomCrashes

    crashes = {"kind": "crash", "mtbf": 1.0, "ranks": [1], "restart": 0.3}
    first = next(islice(RandomCrashes(mtbf=1.0, ranks=(1,)).uptimes(0, 1), 1))
    assert first == pytest.approx(0.61, abs=0.01)
    faults = {"events": [crashes], "detect": 0.5}
    ran = real.run(QUORUM, "quadratic", nproc=3, steps=60, eval_every=30, timeout=60, faults=faults)
    s = ran.summary
    assert s["steps"] == 60 and s["failures"] >= 1
    assert s["failures"] - 1 <= s["restarts"] <= s["failures"]  # the last may come after the end
    rows = ran.metrics[ran.metrics.kind == "fault"]
    crash_times = list(rows[rows.event == "crash"].time)
    assert crash_times[0] == pytest.approx(first, abs=0.5)  # wall time: the next yield after it


def test_a_program_restores_its_own_checkpoint_on_both_backends() -> None:
    # Each worker trains alone and writes its state every 4 steps; rank 1 crashes at step 6
    # and, restarted, takes its step-4 checkpoint back (a file in the launcher's directory,
    # read weights-only). The final model is the mean of both replicas at step 12, which
    # depends only on each one's own steps: the same, bit for bit, in both backends.
    strategy = CheckpointingLocal(every=4, rest=0.3, restored=4)
    crash = {"kind": "crash", "rank": 1, "step": 6, "restart": 0.2}
    kw = dict(steps=12, eval_every=6)
    simulated = sim.run(strategy, "quadratic", topologies.ring(2), **kw, faults=[crash])
    ran = real.run(strategy, "quadratic", nproc=2, **kw, timeout=60, faults=[crash])
    for result in (simulated, ran):
        s = result.summary
        assert (s["steps"], s["failures"], s["restarts"]) == (12, 1, 1)
        faults = result.metrics[result.metrics.kind == "fault"]
        assert list(faults.event) == ["crash", "restart", "rejoin"]
    assert torch.equal(ran.parameters, simulated.parameters)


@pytest.mark.parametrize(
    "spec",
    [
        QUORUM,
        "local_sgd:period=2,fault_tolerance=quorum",
        "diloco:period=2,fault_tolerance=quorum",
        "streaming_diloco:period=4,fragments=2,fault_tolerance=quorum",
    ],
)
def test_quorum_strategies_run_without_a_fault_schedule_as_in_sim(spec) -> None:
    # No schedule: the membership starts when the program first asks for a quorum (it was
    # refused on real), and a fault-free quorum run is the fault-free run, bit for bit. Two
    # ranks: a sum of two is the same in any order (of three, gloo's ring adds each chunk in
    # its own order and sim's default rule in rank order: the last bit may differ; under
    # the gloo rule sim adds in gloo's order, docs/faults.md).
    kw = dict(steps=4, eval_every=2)
    simulated = sim.run(spec, "quadratic", topologies.ring(2), **kw)
    ran = real.run(spec, "quadratic", nproc=2, **kw, timeout=60)

    def losses(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "eval"]
        return list(zip(rows.step, rows.loss))

    assert ran.summary["steps"] == simulated.summary["steps"] == 4
    assert losses(ran) == losses(simulated) and len(losses(ran)) >= 2
    assert torch.equal(ran.parameters, simulated.parameters)


def test_the_conformance_kit_checks_a_quorum_strategy_without_faults() -> None:
    from studies.conformance import check

    assert check(QUORUM, world_size=3, steps=4, timeout=60).differences == []


@pytest.mark.parametrize(
    "spec", ["local_sgd:period=2,fault_tolerance=quorum", "diloco:period=2,fault_tolerance=quorum"]
)
def test_a_restarted_worker_is_healed_with_the_strategys_state_on_both_backends(spec) -> None:
    # Rank 1 crashes at step 3 and is back at step 5; at its first round it is healed with
    # the worker's state and the strategy's own (the last global parameters; DiLoCo's outer
    # momentum). The heal was a send to it over the world group, which a restarted process
    # has not joined: on real the source failed ("Connection closed by peer" in isend). Two
    # ranks: every sum is the same in any order, so the numbers are the same bit for bit.
    faults = {"events": [{"kind": "crash", "rank": 1, "step": 3, "restart_step": 5}]}
    faults["detect"] = 1.0
    kw = dict(steps=12, eval_every=4)
    simulated = sim.run(spec, "quadratic", topologies.ring(2), **kw, compute=0.01, faults=faults)
    ran = real.run(spec, "quadratic", nproc=2, **kw, timeout=60, faults=faults)
    assert [ran.summary[k] for k in SUMMARY] == [simulated.summary[k] for k in SUMMARY]
    assert ran.summary["heal_bytes"] > 0 and ran.summary["restarts"] == 1
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]
    assert torch.equal(ran.parameters, simulated.parameters)


def test_a_slowed_rank_computes_longer_writes_sims_rows_and_changes_no_number() -> None:
    # Rank 1 is a transient straggler from the start (factor 20): it waits 19 x its
    # measured compute for each gradient, so its compute time is well above rank 0's; a
    # synchronous run's numbers are those of the run without it, and the launcher writes
    # the 'slow' row sim writes (the end, at 1000 s, comes after the run).
    slow = [{"kind": "slow", "rank": 1, "factor": 20, "at": 0.0, "until": 1000.0}]
    kw = dict(steps=10, eval_every=5)
    plain = real.run("allreduce", "mlp_digits", nproc=2, **kw, timeout=60)
    slowed = real.run("allreduce", "mlp_digits", nproc=2, **kw, timeout=60, faults=slow)
    simulated = sim.run("allreduce", "mlp_digits", topologies.ring(2), **kw, faults=slow)
    assert slowed.summary["final_loss"] == plain.summary["final_loss"]
    assert torch.equal(slowed.parameters, plain.parameters)

    def faults(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "fault"]
        return [(e, int(r), t) for e, r, t in zip(rows.event, rows["rank"], rows.time)]

    assert faults(slowed) == faults(simulated) == [("slow", 1, 0.0)]
    ranks = slowed.metrics[slowed.metrics.kind == "rank"].set_index("rank").compute_time
    assert ranks[1] > 3 * ranks[0]


def test_a_slow_events_start_and_end_rows_are_written_at_their_times() -> None:
    # The launcher writes both rows at the event's times on the run's clock, between the
    # ranks' events, with the step reached then: as sim's injector does.
    slow = [{"kind": "slow", "rank": 1, "factor": 2, "at": 0.0, "until": 1e-4}]
    kw = dict(steps=6, eval_every=3)
    ran = real.run("allreduce", "quadratic", nproc=2, **kw, timeout=60, faults=slow)
    simulated = sim.run("allreduce", "quadratic", topologies.ring(2), **kw, faults=slow)

    def faults(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "fault"]
        return list(zip(rows.event, rows["rank"], rows.time, rows.step))

    assert faults(ran) == faults(simulated) == [("slow", 1, 0.0, 0), ("slow", 1, 1e-4, 0)]
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]


class SumOrder(Strategy):
    """A user strategy that finds, for each value of a 10-value all-reduce, which two
    ranks' contributions are added first: probe k puts 1 on rank k and +-1e8 on the other
    two (float32: 1e8 + 1 rounds to 1e8), so the sum is 1 only where the two big ones meet
    first. It logs probe k's sums as ``p{k}_{i}``, then trains as plain SGD."""

    name = "sum_order"
    global_model = "average"

    def worker(self, w):  # type: ignore[no-untyped-def]
        for k in range(3):
            others = [r for r in range(3) if r != k]
            value = 1.0 if w.rank == k else (1e8 if w.rank == others[0] else -1e8)
            total = yield w.comm.all_reduce(torch.full((10,), value))
            w.log(**{f"p{k}_{i}": float(total[i]) for i in range(10)})
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)


def test_sums_of_three_are_added_in_gloos_order_on_real_and_in_sim_under_the_gloo_rule() -> None:
    # Why a run whose all-reduces have 3+ members may differ from sim in the last bit (the
    # DiLoCo quorum run of docs/faults.md, 8th digit): sim's default rule adds (x0 + x1) + x2
    # for every value; gloo's ring adds each chunk starting from a different rank, and sim
    # under the gloo rule does too (strategies.reduction_order).
    def first_pairs(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "log"]
        rows = rows[rows["rank"] == 0]
        pairs = []
        for i in range(10):
            ones = [k for k in range(3) if rows[f"p{k}_{i}"].dropna().iloc[0] == 1.0]
            pairs.append(tuple(r for r in range(3) if r not in ones))
        return pairs

    kw = dict(steps=2, eval_every=2)
    simulated = sim.run(SumOrder(), "quadratic", topologies.ring(3), **kw)
    ran = real.run(SumOrder(), "quadratic", nproc=3, **kw, timeout=60)
    gloo = sim.run(
        SumOrder(), "quadratic", topologies.ring(3), **kw, network={"collectives": "gloo"}
    )
    assert first_pairs(simulated) == [(0, 1)] * 10
    assert first_pairs(ran) == [(1, 2)] * 4 + [(0, 2)] * 4 + [(0, 1)] * 2
    assert first_pairs(gloo) == first_pairs(ran)
    assert torch.equal(gloo.parameters, ran.parameters)


SDILOCO = "streaming_diloco:period=4,fragments=2,fault_tolerance=quorum"


def test_streaming_diloco_quorum_rejoins_at_sims_round_on_real_bit_for_bit() -> None:
    # Rank 2 is killed at step 3 and back at global step 5. Its peers ask each fragment
    # round's quorum one round ahead: the one asked at step 4 waits for rank 2 in sim (its
    # crash is detected only after detect = 1 s, and its peers are held up by it no earlier
    # than at step 5, when fragment 0's all-reduce with it fails), so the restarted rank joins
    # it and is healed at step 6. On real it was left out of that quorum (its peers learn a
    # death at once) and rejoined at step 8, with other numbers; and one run in two or
    # three aborted in gloo ("Resource deadlock avoided"). Three ranks: sim under the gloo
    # rule adds in gloo's order (test_sums_of_three_are_added_in_gloos_order_...).
    faults = {"events": [{"kind": "crash", "rank": 2, "step": 3, "restart_step": 5}]}
    faults["detect"] = 1.0
    kw = dict(steps=12, eval_every=4)
    simulated = sim.run(
        SDILOCO,
        "quadratic",
        topologies.ring(3),
        **kw,
        compute=0.01,
        faults=faults,
        network=GLOO,
    )
    ran = real.run(SDILOCO, "quadratic", nproc=3, **kw, timeout=60, faults=faults)

    def rows(result, kind):  # type: ignore[no-untyped-def]
        return result.metrics[result.metrics.kind == kind]

    rejoined = rows(simulated, "fault")
    assert list(rejoined[rejoined.event == "rejoin"].step) == [6]  # sim's own account
    assert [ran.summary[k] for k in SUMMARY] == [simulated.summary[k] for k in SUMMARY]
    assert ran.summary["restarts"] == 1 and ran.summary["heal_bytes"] > 0
    evals = [list(zip(rows(r, "eval").step, rows(r, "eval").loss)) for r in (ran, simulated)]
    assert evals[0] == evals[1] and len(evals[0]) == 4
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]
    assert torch.equal(ran.parameters, simulated.parameters)
    # The same faults, rank by rank (their rows' steps are wall-clock stamps on real).
    events = [
        sorted(zip(rows(r, "fault")["rank"], rows(r, "fault").event)) for r in (ran, simulated)
    ]
    assert events[0] == events[1]


def test_a_rank_back_before_its_crash_is_detected_is_waited_for_by_the_quorums() -> None:
    # RankFaults on a store alone: rank 2 killed at step 3, back at global step 5. Until
    # its peers either reach step 5 ("early": it is back before sim detects its crash) or
    # are held up by it before then ("late"), a quorum waits for it; "late" quorums leave it
    # out up to step 5, as before, and the first to know settles it for every rank.
    import torch.distributed as dist

    from faults import FaultSchedule
    from real.crashes import RankFaults, mark_crashed, mark_restarted
    from real.runtime import STEP_KEY

    crash = {"kind": "crash", "rank": 2, "step": 3, "restart_step": 5}
    schedule = FaultSchedule.parse([crash], world_size=3, links=None)

    def made(steps: int):  # type: ignore[no-untyped-def]
        store = dist.HashStore()
        mark_crashed(store, 2, 0, 1.0)
        for r in (0, 1):
            store.set(STEP_KEY.format(rank=r), str(steps))
        faults = RankFaults(schedule, 0, 3, 0, [0, 1, 2], lambda: store)
        faults.step = steps
        return store, faults

    store, faults = made(4)
    assert faults.race(2, 0, 5) is None and faults.live(4, (0, 1, 2)) == (0, 1, 2)
    faults.blocked([2], step=5)  # a failure at its restart step: sim restarts it first
    assert faults.race(2, 0, 5) is None
    for r in (0, 1):
        store.set(STEP_KEY.format(rank=r), "5")
    assert faults.race(2, 0, 5) == "early"
    faults.blocked([2], step=4)  # settled: a later word does not change it
    assert faults.race(2, 0, 5) == "early" and faults.live(4, (0, 1, 2)) == (0, 1, 2)
    mark_restarted(store, 2)
    back = RankFaults(schedule, 2, 3, 1, [0, 1, 2], lambda: store)
    assert back.rejoin_when() == 5
    back.wait_to_rejoin(5)  # at once: "early"

    store, faults = made(4)  # held up at step 4 by an all-reduce with it
    faults.blocked([2], step=4)
    assert faults.race(2, 0, 5) == "late" and faults.live(4, (0, 1, 2)) == (0, 1)
    store, faults = made(4)  # ... or by a quorum that waits for it, at step 4
    assert faults.live(4, (0, 1, 2), waiting=lambda: False) == (0, 1, 2)
    assert faults.live(4, (0, 1, 2), waiting=lambda: True) == (0, 1)
    mark_restarted(store, 2)  # back: left out up to step 5, waited for after
    assert faults.live(5, (0, 1, 2)) == (0, 1) and faults.live(6, (0, 1, 2)) == (0, 1, 2)


def test_every_collective_on_a_workers_quorum_gives_sims_values_on_gloo() -> None:
    # Rank 0 is a server; workers 1-3 form their quorums without it (a subset of the ranks)
    # and run all_reduce, broadcast, reduce, all_gather, reduce_scatter and barrier on
    # each quorum's group; worker 3 is killed at step 2, so round 3 fails and the rest run
    # on two. Values whose float32 sums depend on the order of three (+-1e8): sim under
    # the gloo rule must give gloo's, bit for bit, and charge the same bytes.
    faults = {"events": [{"kind": "crash", "rank": 3, "step": 2}], "detect": 1.0}
    kw = dict(steps=4, eval_every=2)
    gloo = {"collectives": "gloo"}
    simulated = sim.run(
        QuorumCollectives(), "quadratic", topologies.ring(4), **kw, faults=faults, network=gloo
    )
    ran = real.run(QuorumCollectives(), "quadratic", nproc=4, **kw, timeout=60, faults=faults)

    def logged(result):  # type: ignore[no-untyped-def]
        rows = result.metrics[result.metrics.kind == "log"]
        names = ["rank", "step"] + sorted(c for c in rows if c.endswith(("_sum", "_last")))
        return sorted(map(tuple, rows[names + ["members"]].itertuples(index=False)))

    values = logged(ran)
    assert {row[-1] for row in values} == {2 + 4 + 8, 2 + 4}  # rounds of three, then two
    assert values == logged(simulated)
    assert [ran.summary[k] for k in SUMMARY] == [simulated.summary[k] for k in SUMMARY]
    assert ran.summary["lost_steps"] == 1
    bytes_ = [r.metrics[r.metrics.kind == "eval"].bytes.tolist() for r in (ran, simulated)]
    assert bytes_[0] == pytest.approx(bytes_[1], rel=1e-12)  # (summed in another order)
    assert torch.equal(ran.parameters, simulated.parameters)


def test_parameter_server_worker_crashes_pass_the_conformance_kit() -> None:
    # Worker 3 is killed at global step 3 (it has no steps of its own): the synchronous
    # server carries on with the others once its receive from rank 3 fails (a PeerFailure
    # on real too): bit for bit sim's; with a backup worker, which gradient is dropped
    # follows the arrival order, so it is judged over seeds.
    from studies.conformance import check

    faults = {"events": [{"kind": "crash", "rank": 3, "step": 3}], "detect": 1.0}
    report = check("parameter_server", world_size=4, steps=8, timeout=60, faults=faults)
    assert report.differences == []
    assert report.real.summary["failures"] == 1
    spec = "parameter_server:backup_workers=1"
    report = check(spec, world_size=4, steps=8, timeout=60, faults=faults, exact=False, seeds=3)
    assert report.differences == []


def sends_after(result, rank: int, dst: int, since: float) -> int:  # type: ignore[no-untyped-def]
    """How many of ``rank``'s spans that started after ``since`` seconds send to ``dst``
    (its trace: ``send→DST``, alone or in a ``wait_all``)."""
    events = result.trace.document()["traceEvents"]
    return sum(
        1
        for e in events
        if e.get("ph") == "X"
        and e.get("tid") == rank
        and f"send→{dst}" in e["name"]
        and e["ts"] / 1e6 > since
    )


def test_a_parameter_servers_restarted_worker_gets_the_parameters_and_pushes_again() -> None:
    # Worker 3 is killed at global step 3 and is back at step 5 as a new process, which has
    # no world process group: it asks its server for the parameters (a push the server does
    # not apply) and pushes again, over a gloo group of the pair (real.transport.links).
    # Which round its first push lands in follows the arrival order (sim's comes one latency
    # after the others'), so the losses are judged over seeds; the counts are sim's.
    from studies.conformance import check

    faults = {"events": [{"kind": "crash", "rank": 3, "step": 3, "restart_step": 5}], "detect": 1.0}
    report = check(
        "parameter_server", world_size=4, steps=10, timeout=60, faults=faults, exact=False, seeds=2
    )
    assert report.differences == []
    for result in (*report.sims, *report.reals):
        s = result.summary
        assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (10, 1, 1, 0)
    for result in report.reals:
        rows = result.metrics[result.metrics.kind == "fault"]
        back = float(rows[rows.event == "restart"].time.iloc[0])
        # Its request, then at least one gradient, to rank 0, the server.
        assert sends_after(result, 3, 0, back) >= 2


def test_a_server_restored_from_its_checkpoint_takes_its_workers_back_on_real() -> None:
    # The server is killed at step 6 and back 0.5 s later as a new process, which restores
    # its shard from its step-4 checkpoint (steps 5 and 6 lost); its workers' pushes fail
    # while it is down, and once it is back they ask it for the parameters over the pairs'
    # groups. Whether a worker took the reply of step 6 before the server died (a gradient
    # more from its stream) follows the timing, so the losses are judged over seeds.
    from strategies import ParameterServer
    from studies.conformance import check

    crash = {"kind": "crash", "rank": 0, "step": 6, "restart": 0.5}
    strategy = ParameterServer(checkpoint_every=4)
    faults = {"events": [crash], "detect": 1.0}
    report = check(
        strategy, world_size=4, steps=12, timeout=60, faults=faults, exact=False, seeds=2
    )
    assert report.differences == []
    for result in (*report.sims, *report.reals):
        s = result.summary
        assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (12, 1, 1, 2)
        rows = result.metrics[result.metrics.kind == "fault"]
        assert list(rows.event) == ["crash", "restart", "rejoin"]
    for result in report.reals:  # the restored server answers each worker again
        rows = result.metrics[result.metrics.kind == "fault"]
        back = float(rows[rows.event == "restart"].time.iloc[0])
        assert all(sends_after(result, 0, worker, back) >= 2 for worker in (1, 2, 3))


def test_a_restart_of_a_server_with_no_checkpoint_is_refused_in_one_line() -> None:
    back = {"kind": "crash", "rank": 0, "step": 3, "restart": 1.0}
    with pytest.raises(FaultError) as raised:
        real.run("parameter_server", "quadratic", nproc=3, **KW, faults=[back])
    assert "\n" not in str(raised.value) and str(raised.value).startswith("faults[0]: ")
    assert "server rank 0 comes back with nothing to restore" in str(raised.value)
    at_step = {"kind": "crash", "rank": 0, "step": 3, "restart_step": 5}  # sim refuses it too
    with pytest.raises(FaultError, match=r"^faults\[0\]: server rank 0 .* restart_step=5"):
        real.run(
            "parameter_server:checkpoint_every=2", "quadratic", nproc=3, **KW, faults=[at_step]
        )
