"""LocalSGD, DiLoCo and StreamingDiLoCo with fault_tolerance='quorum' in the simulator:
a quorum per synchronisation, a failed round rolled back, a restarted worker healed."""

from __future__ import annotations

import pytest
import torch

import sim
import topologies
from options.declare import OptionError
from strategies import DiLoCo, LocalSGD, StreamingDiLoCo

KW = dict(steps=40, eval_every=10, compute=0.01)
PLAIN = {
    "local_sgd": "local_sgd:period=5",
    "diloco": "diloco:period=5",
    "streaming_diloco": "streaming_diloco:period=6,fragments=3,overlap=1",
}
QUORUM = {name: spec + ",fault_tolerance=quorum" for name, spec in PLAIN.items()}
NUMEL = 10  # the quadratic's parameters


@pytest.mark.parametrize("name", list(PLAIN))
def test_quorum_without_faults_is_the_plain_strategy(name: str) -> None:
    # steps=40 is a multiple of period=5: the last averaging starts at the run's stop, and
    # its bytes count in both (the quorum is asked as a round starts, never waited for here).
    plain = sim.run(PLAIN[name], "quadratic", topologies.ring(4), **KW)
    quorum = sim.run(QUORUM[name], "quadratic", topologies.ring(4), **KW)
    for key in ("final_loss", "time", "bytes", "samples"):
        assert quorum.summary[key] == plain.summary[key], key
    assert torch.equal(quorum.parameters, plain.parameters)
    assert quorum.metrics.drop(columns="wall_time", errors="ignore").equals(
        plain.metrics.drop(columns="wall_time", errors="ignore")
    )


@pytest.mark.parametrize("name", ["local_sgd", "diloco"])
@pytest.mark.parametrize("at", [8, 10])
def test_a_crash_during_a_round_rolls_it_back_and_heals_the_restart(name: str, at: int) -> None:
    # Rank 2 crashes during the round of steps 6..10 (at 8: in its inner steps; at 10: as
    # its averaging starts). The round's quorum was formed at its start with rank 2, so its
    # all-reduce fails on every member: the round (period = 5 global steps) is lost and done
    # again from the last global weights.
    crash = {"kind": "crash", "rank": 2, "step": at, "restart_step": 20}
    result = sim.run(QUORUM[name], "quadratic", topologies.ring(4), **KW, faults=[crash])
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (40, 1, 1, 5)
    # Healing sends the parameters (plain SGD keeps no buffers) and, beside them, LocalSGD's
    # last averaged parameters or DiLoCo's outer state (parameters and Nesterov momentum).
    extra = NUMEL if name == "local_sgd" else 2 * NUMEL
    assert s["heal_bytes"] == 4 * (NUMEL + extra)
    events = result.metrics[result.metrics.kind == "fault"]
    # Each survivor drops the round and is set back to step 5 (a "rejoin" of no bytes);
    # rank 2 comes back at step 20 and is healed at the end of the round it joins (25).
    survivors = [(10, r, e) for r in (0, 1, 3) for e in ("lost", "rejoin")]
    expected = [(at, 2, "crash"), *survivors, (20, 2, "restart"), (25, 2, "rejoin")]
    assert list(zip(events.step, events["rank"].astype(int), events.event)) == expected
    plain = sim.run(PLAIN[name], "quadratic", topologies.ring(4), **KW)
    assert s["final_loss"] == pytest.approx(plain.summary["final_loss"], rel=0.1)


def test_lost_steps_are_the_period_whatever_it_is() -> None:
    crash = {"kind": "crash", "rank": 1, "step": 3, "restart_step": 20}
    for period in (4, 8):
        strategy = DiLoCo(period=period, fault_tolerance="quorum")
        result = sim.run(strategy, "quadratic", topologies.ring(4), **KW, faults=[crash])
        assert (result.summary["steps"], result.summary["lost_steps"]) == (40, period)


def test_healing_carries_the_inner_optimizers_buffers() -> None:
    # SGD with momentum keeps one buffer: the heal sends parameters and momentum, then the
    # outer state (parameters and momentum).
    crash = {"kind": "crash", "rank": 2, "step": 8, "restart_step": 20}
    result = sim.run(
        QUORUM["diloco"],
        "quadratic",
        topologies.ring(4),
        **KW,
        optimizer={"inner": "sgd:lr=0.1,momentum=0.9"},
        faults=[crash],
    )
    assert result.summary["heal_bytes"] == 4 * (2 * NUMEL + 2 * NUMEL)


def test_streaming_rolls_back_the_failed_fragment_and_redoes_no_step() -> None:
    crash = {"kind": "crash", "rank": 2, "step": 8, "restart_step": 20}
    name = "streaming_diloco"
    result = sim.run(QUORUM[name], "quadratic", topologies.ring(4), **KW, faults=[crash])
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (40, 1, 1, 0)
    # Parameters, then each fragment's outer state (its parameters and momentum).
    assert s["heal_bytes"] == 4 * (NUMEL + 2 * NUMEL)
    events = result.metrics[result.metrics.kind == "fault"]
    assert (events.event == "lost").sum() > 0 and list(events.event[-2:]) == ["restart", "rejoin"]
    plain = sim.run(PLAIN[name], "quadratic", topologies.ring(4), **KW)
    assert 0 < s["final_loss"] < 2 * plain.summary["final_loss"]


@pytest.mark.parametrize("name", list(PLAIN))
def test_without_a_policy_a_crash_ends_the_run_with_one_line(name: str) -> None:
    crash = {"kind": "crash", "rank": 2, "step": 8}
    with pytest.raises(sim.SimulationError) as raised:
        sim.run(PLAIN[name], "quadratic", topologies.ring(4), **KW, faults=[crash])
    message = str(raised.value)
    assert "\n" not in message
    assert "rank 2 crashed" in message and "fault_tolerance='quorum'" in message


def test_a_crash_without_restart_carries_on_with_the_survivors() -> None:
    crash = {"kind": "crash", "rank": 3, "step": 12}
    result = sim.run(QUORUM["local_sgd"], "quadratic", topologies.ring(4), **KW, faults=[crash])
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (40, 1, 0, 5)
    assert s["heal_bytes"] == 0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: LocalSGD(fault_tolerance="quorum", compression="fp16"), "compression"),
        (lambda: LocalSGD(fault_tolerance="quorum", warmup=4), "warmup"),
        (lambda: LocalSGD(fault_tolerance="quorum", period="adaptive"), "period"),
        (lambda: DiLoCo(fault_tolerance="quorum", compression="fp16"), "compression"),
        (lambda: StreamingDiLoCo(fault_tolerance="quorum", compression="fp16"), "compression"),
    ],
)
def test_options_quorum_cannot_carry_are_refused_in_one_line(make, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionError) as raised:
        make()
    assert raised.value.field == field and "\n" not in str(raised.value)


@pytest.mark.parametrize(("min_replicas", "extra"), [(1, 3.0 - 0.02 + 0.05), (4, 5.0 - 0.02)])
def test_min_replicas_waits_for_the_restart(min_replicas: int, extra: float) -> None:
    # Rank 1 crashes at step 8 (t = 0.08 s) and restarts 5 s later; the survivors reach their
    # averaging at step 10, 0.02 s later. With min_replicas=1 their round fails once the crash
    # is detected (3 s), and they redo its 5 steps (0.05 s) and go on with three. With
    # min_replicas=4 they redo at once but their next averaging waits for the restart.
    kw = {**KW, "steps": 60}
    plain = sim.run(PLAIN["diloco"], "quadratic", topologies.ring(4), **kw)
    strategy = DiLoCo(period=5, fault_tolerance="quorum", min_replicas=min_replicas)
    crash = {"kind": "crash", "rank": 1, "step": 8, "restart": 5.0}
    result = sim.run(strategy, "quadratic", topologies.ring(4), **kw, faults=[crash])
    assert result.summary["lost_steps"] == 5
    assert result.summary["time"] - plain.summary["time"] == pytest.approx(extra, abs=1e-3)


def test_random_crashes_are_bit_identical_across_reruns() -> None:
    faults = {"events": [{"kind": "crash", "mtbf": "1s", "restart": "0.3s"}], "detect": 0.1}
    kw = {**KW, "steps": 60}
    runs = [
        sim.run(QUORUM["diloco"], "quadratic", topologies.ring(4), **kw, faults=faults, seed=3)
        for _ in range(2)
    ]
    assert runs[0].summary["failures"] > 1 and runs[0].summary["lost_steps"] > 0
    assert (
        runs[0]
        .metrics.drop(columns="wall_time", errors="ignore")
        .equals(runs[1].metrics.drop(columns="wall_time", errors="ignore"))
    )


@pytest.mark.parametrize("name", list(PLAIN))
def test_min_replicas_is_checked_against_the_option_and_the_run(name: str) -> None:
    with pytest.raises(OptionError, match="applies only with fault_tolerance='quorum'"):
        sim.run(PLAIN[name] + ",min_replicas=2", "quadratic", topologies.ring(4), **KW)
    with pytest.raises(OptionError) as raised:
        sim.run(QUORUM[name] + ",min_replicas=5", "quadratic", topologies.ring(4), **KW)
    assert str(raised.value) == "min_replicas=5 exceeds the run's 4 workers; use min_replicas <= 4"


def test_a_rolled_back_round_loses_its_samples_and_recovers_only_after_it() -> None:
    # The crash at step 8 fails the round of steps 6..10 on the three survivors: those five
    # applied steps are undone, their samples lost (3 ranks x 5 steps x 32), and the run has
    # not recovered until the detection (3 s) lets a new round pass them.
    import sim
    import topologies

    crash = {"kind": "crash", "rank": 2, "step": 8, "restart": 1.0}
    result = sim.run(
        "local_sgd:period=5,fault_tolerance=quorum",
        "quadratic",
        topologies.ring(4),
        steps=40,
        eval_every=10,
        compute=0.01,
        faults=[crash],
    )
    s = result.summary
    assert (s["lost_steps"], s["lost_samples"]) == (5, 3 * 5 * 32)
    assert s["recovery_time"] > 3.0


@pytest.mark.parametrize("crashed", [0, 2])
def test_a_failed_diloco_round_loses_one_period_once(crashed: int) -> None:
    # The crash at step 10 fails the round of steps 9..16 at its synchronisation: 8 steps are
    # rolled back on the three survivors (counted once as global steps, their samples all).
    import sim
    import topologies

    crash = {"kind": "crash", "rank": crashed, "step": 10, "restart": 0.5}
    result = sim.run(
        "diloco:period=8,fault_tolerance=quorum",
        "quadratic",
        topologies.ring(4),
        steps=40,
        eval_every=10,
        compute=0.01,
        faults=[crash],
    )
    assert (result.summary["lost_steps"], result.summary["lost_samples"]) == (8, 3 * 8 * 32)
