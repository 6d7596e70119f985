"""The actor-learner strategy (IMPALA): what a run learns from, how old its experience is,
what it sends, and the same run on gloo processes."""

import statistics

import pandas as pd
import pytest
import torch

import real
import topologies
from sim.run import run
from strategies import ActorLearner
from workloads.cartpole import cartpole
from workloads.experience import packed_size

ENVS, ROLLOUT, OBS = 2, 8, 4  # cartpole's observations have 4 values
#: Environment steps in one rollout: the samples a learner counts per rollout it learns.
ROLLOUT_STEPS = ENVS * ROLLOUT
ADAM = {"name": "adam", "lr": 0.01}


def workload(episodes=2):
    return cartpole(n_envs=ENVS, rollout=ROLLOUT, eval_episodes=episodes)


def simulate(strategy, world=3, steps=8, **kwargs):
    kwargs.setdefault("eval_every", 4)
    return run(strategy, workload(), topologies.star(world), steps=steps, **kwargs)


def rows(result, kind):
    return result.metrics[result.metrics["kind"] == kind]


def test_a_run_takes_its_steps_and_evaluates_the_return():
    result = simulate(ActorLearner(), steps=8)
    assert result.summary["steps"] == 8
    assert list(result.evals["step"]) == [0, 4, 8]
    assert result.evals["loss"].isna().all() and result.evals["return"].notna().all()
    assert (result.evals["return"] > 0).all()
    # The ledger counts the environment steps of the experience learnt by step 4, as the
    # learner logs the rollouts of each step (after it), and all of the run's at its end.
    logs = rows(result, "log")
    learnt = logs[logs["step"] <= 4]["rollouts"].sum()
    assert result.evals["samples"].iloc[1] == ROLLOUT_STEPS * learnt > 4 * ROLLOUT_STEPS
    assert list(logs["step"]) == list(range(1, 9))  # the last step's row too
    assert result.evals["samples"].iloc[-1] == ROLLOUT_STEPS * logs["rollouts"].sum()


def test_a_slow_actor_acts_one_version_behind_and_the_bytes_are_the_messages():
    # The actor takes 10 x the learner's time: each rollout is learnt long before the next
    # is ready, and the parameters of step s arrive while the actor collects with s - 1's.
    result = simulate(ActorLearner(), world=2, steps=6, compute={"base": 0.01, "slowdown": {1: 10}})
    assert list(rows(result, "step")["staleness"]) == [0, 1, 1, 1, 1, 1]
    numel = result.parameters.numel()
    rollout = 4 * packed_size(ROLLOUT, ENVS, OBS) + 8  # float32 experience + its version
    parameters = 4 * numel + 8
    # Six rollouts, and a broadcast after every step but the last (the run has stopped).
    assert result.summary["bytes"] == 6 * rollout + 5 * parameters


def test_a_straggling_actor_gets_fewer_broadcasts_and_holds_nobody_back():
    # Actor 2 collects 5 x slower than actor 1: while it has not taken a broadcast, the
    # learner skips it the next ones instead of waiting (a wait would pace every step by
    # the straggler's rollout, 0.025 s).
    result = simulate(ActorLearner(), steps=12, compute={"base": 0.01, "slowdown": {2: 5}})
    logs = rows(result, "log")
    skipped = int(logs["skipped_broadcasts"].sum())
    assert skipped > 0 and result.summary["time"] < 12 * 0.025 / 2
    assert result.summary["staleness_max"] > rows(result, "step")["staleness"].median()
    # The bytes are whole messages: rollouts (those learnt, and up to one an actor in flight
    # at the stop) and the broadcasts sent (two a step but the last, less the skipped ones;
    # one may still wait for its actor at the stop).
    rollout, parameters = 4 * packed_size(ROLLOUT, ENVS, OBS) + 8, 4 * result.parameters.numel() + 8
    learnt = result.summary["samples"] // ROLLOUT_STEPS
    sent = [
        (r, b)
        for r in range(learnt, learnt + 3)
        for b in range(2 * 11 - skipped - 2, 2 * 11 - skipped + 1)
        if r * rollout + b * parameters == result.summary["bytes"]
    ]
    assert len(sent) == 1


def test_actors_act_on_the_versions_broadcast_every_k_steps():
    k = 3
    steps = rows(simulate(ActorLearner(broadcast_every=k), steps=9), "step")
    # The oldest rollout of step s acted with version (s - 1) - staleness: one broadcast.
    acted = steps["step"] - 1 - steps["staleness"]
    assert (acted % k == 0).all() and (acted >= 0).all()
    assert steps["staleness"].max() >= k - 1 > 0


def test_the_correction_changes_what_is_learnt_not_what_is_sent():
    vtrace = simulate(ActorLearner(correction="vtrace"), optimizer=ADAM)
    plain = simulate(ActorLearner(correction="none"), optimizer=ADAM)
    assert not torch.equal(vtrace.parameters, plain.parameters)
    # sim's times do not depend on the numbers: the same messages, the same lags.
    assert vtrace.summary["bytes"] == plain.summary["bytes"]
    pd.testing.assert_series_equal(
        rows(vtrace, "step")["staleness"], rows(plain, "step")["staleness"]
    )


def test_a_simulated_run_is_deterministic():
    strategy = ActorLearner(batch=2, broadcast_every=2)
    first, second = (simulate(strategy, world=4, seed=3, optimizer=ADAM) for _ in range(2))
    assert torch.equal(first.parameters, second.parameters)
    pd.testing.assert_frame_equal(first.metrics, second.metrics)


def test_several_learners_step_together_on_their_own_actors_batches():
    # Learner 0 has actors 2 and 4, learner 1 actor 3 (dealt round-robin).
    result = simulate(ActorLearner(learners=2, batch=2), world=5, steps=4, eval_every=2)
    logs = rows(result, "log")
    # Both learners step together (they all-reduce their gradients), each from at least
    # `batch` rollouts of its own actors, logged after each step, and the run's last on the
    # learner whose step ended the run (the other's program was closed at its yield then).
    assert logs.groupby("rank")["step"].apply(list).to_dict() == {0: [1, 2, 3, 4], 1: [1, 2, 3]}
    assert (logs["rollouts"] >= 2).all()
    # The global model's samples are both learners' experience.
    learnt = logs[logs["step"] <= 2]["rollouts"].sum()
    assert result.evals["samples"].iloc[1] == ROLLOUT_STEPS * learnt


def test_a_workload_without_experience_is_refused_in_one_line():
    with pytest.raises(TypeError, match="impala .* reinforcement-learning workload") as err:
        run(ActorLearner(), "quadratic", topologies.star(2), steps=2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("learners", "world", "message"),
    [(1, 1, "at least 2 ranks"), (2, 3, "learners=2 leaves 1 actor among 3 ranks")],
)
def test_a_world_without_an_actor_for_each_learner_is_refused(learners, world, message):
    with pytest.raises(ValueError, match=message) as err:
        ActorLearner(learners=learners).check_world(world)
    assert "\n" not in str(err.value)


def test_real_processes_take_the_same_steps_and_reach_comparable_returns():
    # One learner, two actors. Asynchronous: which rollouts a step learns from, and with
    # which lag, follows the machines' timing, so returns are compared within a tolerance.
    # Rollouts of 64 environment steps, so that 40 steps learn in every run (smaller ones
    # make a run's return swing with its lags, in either backend).
    def big():
        return cartpole(n_envs=4, rollout=16, eval_episodes=4)

    options = dict(steps=40, eval_every=10, seed=0, optimizer=ADAM)
    simulated = run(ActorLearner(), big(), topologies.star(3), **options)
    measured = real.run(ActorLearner(), big(), nproc=3, timeout=60, **options)
    for result in (simulated, measured):
        assert result.summary["steps"] == 40
        assert list(result.evals["step"]) == [0, 10, 20, 30, 40]
        assert result.summary["samples"] >= 40 * 64  # each step learns a rollout or more
    # The same initial policy, evaluated on the same seeded episodes.
    start = simulated.evals["return"].iloc[0]
    assert measured.evals["return"].iloc[0] == start
    # Both learn: at some evaluation, a return four times the start's (cartpole's initial
    # policy falls in about ten steps); their mean returns within a factor of four.
    after = [r.evals["return"].iloc[1:] for r in (simulated, measured)]
    assert min(a.max() for a in after) >= 4 * start
    sim_mean, real_mean = (statistics.fmean(a) for a in after)
    assert sim_mean / 4 <= real_mean <= 4 * sim_mean
    # Actors take the broadcast parameters on both: actors acting on the first parameters
    # throughout would have a mean lag of about half the steps (20). Real's lag follows the
    # machine's load (a loaded CI machine's actors fall behind), so it is bounded by a
    # quarter of the steps rather than by sim's (about 1).
    assert simulated.summary["staleness_mean"] <= 40 / 4
    assert measured.summary["staleness_mean"] <= 40 / 4


# -- faults -----------------------------------------------------------------------------------
#: A crash is detected this long after it (sim's default is seconds, longer than these runs).
DETECT = 0.001


def faults(*events, **options):
    return {"events": list(events), "detect": DETECT, **options}


def test_an_actor_crashed_at_the_start_and_never_back_is_a_run_without_it():
    # Rank 2 dies before its first rollout: the learner learns from rank 1 alone, as in a
    # world of two, and stops sending parameters to the dead (the same numbers, bit for bit).
    crash = {"kind": "crash", "rank": 2, "at": 1e-9}
    crashed = simulate(ActorLearner(), world=3, steps=8, faults=faults(crash))
    alone = simulate(ActorLearner(), world=2, steps=8)
    s = crashed.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (8, 1, 0, 0)
    # The rollout it was collecting, which no learner received, is lost: one rollout's
    # environment steps, 2 environments x 8 steps (a learner counts a rollout it learns).
    assert s["lost_samples"] == 2 * 8
    assert torch.equal(crashed.parameters, alone.parameters)
    assert list(crashed.evals["return"]) == list(alone.evals["return"])


def test_a_restarted_actor_asks_for_the_parameters_and_acts_with_them():
    crash = {"kind": "crash", "rank": 2, "step": 2, "restart_step": 4}
    back = simulate(ActorLearner(), world=3, steps=12, faults=faults(crash))
    down = simulate(
        ActorLearner(), world=3, steps=12, faults=faults({**crash, "restart_step": None})
    )
    s = back.summary
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"], s["lost_samples"]) == (
        12,
        1,
        1,
        0,
        ROLLOUT_STEPS,  # the rollout it held at the crash (collecting or offering it)
    )
    fault = rows(back, "fault")
    assert list(zip(fault["step"], fault["rank"], fault["event"])) == [
        (2, 2, "crash"),
        (4, 2, "restart"),
    ]
    assert not torch.equal(back.parameters, down.parameters)  # its rollouts were learnt
    # It asked first: its rollouts were acted with a learner's recent parameters, not with
    # the initial ones (version 0, which would lag by the learner's step): no rollout lags
    # more than the other actor's do.
    lags = rows(back, "log")
    assert lags[lags["step"] > 4]["policy_lag"].max() <= rows(down, "log")["policy_lag"].max()


@pytest.mark.parametrize("when", [{"at": 1e-9}, {"step": 3}, {"at": 0.0105}])
def test_each_crashed_actor_loses_the_one_rollout_no_learner_received(when):
    # One learner, three actors; actors 2 and 3 crash (mid-collection at 1e-9; at step 3 or
    # at 10.5 ms wherever they are: collecting, or blocked offering a collected rollout, as
    # a learner takes one rollout per actor at a time). Each holds exactly one rollout
    # no learner has: lost, 2 environments x 8 steps each. The learner loses nothing.
    crashes = [{"kind": "crash", "rank": r, **when} for r in (2, 3)]
    result = simulate(ActorLearner(), world=4, steps=8, faults=faults(*crashes))
    s = result.summary
    assert (s["steps"], s["failures"], s["lost_steps"]) == (8, 2, 0)
    assert s["lost_samples"] == 2 * (2 * 8)


def test_without_a_policy_a_learners_crash_ends_the_run_naming_what_survives_it():
    from sim.run import SimulationError

    crash = {"kind": "crash", "rank": 0, "step": 3}
    with pytest.raises(SimulationError, match="learners >= 2 fault_tolerance='quorum'"):
        simulate(ActorLearner(), world=3, steps=8, faults=faults(crash))


def test_a_single_learner_restarts_from_its_checkpoint_with_recovery_restart():
    crash = {"kind": "crash", "rank": 0, "step": 5}
    policy = faults(crash, recovery="restart", checkpoint_every=4)
    result = simulate(ActorLearner(), world=3, steps=8, faults=policy)
    s = result.summary
    # Every rank restarts from step 4's checkpoint: step 5 is lost, and done again.
    assert (s["steps"], s["failures"], s["restarts"], s["lost_steps"]) == (8, 1, 1, 1)


def test_learners_carry_on_without_a_crashed_learner_over_a_quorum_and_heal_it():
    crash = {"kind": "crash", "rank": 1, "step": 3, "restart_step": 6}
    strategy = ActorLearner(learners=2, fault_tolerance="quorum")
    result = simulate(strategy, world=4, steps=10, faults=faults(crash))
    s = result.summary
    assert (s["steps"], s["failures"], s["restarts"]) == (10, 1, 1)
    # The round the crash broke is dropped on the survivor: one step, and the one rollout
    # (batch=1) it had learnt from, lost.
    assert (s["lost_steps"], s["lost_samples"]) == (1, ROLLOUT_STEPS)
    # The restarted learner took the survivor's parameters and optimizer state (plain SGD:
    # none), the bytes of its parameters.
    assert s["heal_bytes"] == 4 * result.parameters.numel()
    assert list(rows(result, "fault")["event"]) == ["crash", "lost", "restart", "rejoin"]


def test_impala_faults_the_real_backend_cannot_run_are_refused_in_one_line():
    from options.declare import OptionError

    crash = {"kind": "crash", "rank": 0, "step": 2, "restart_step": 4}
    with pytest.raises(OptionError, match="learner rank 0 comes back, and on the real backend"):
        real.run(ActorLearner(), workload(), nproc=3, steps=4, faults=faults(crash))
    strategy = ActorLearner(learners=2, fault_tolerance="quorum")
    with pytest.raises(OptionError, match="not built on the real backend"):
        real.run(strategy, workload(), nproc=4, steps=4, faults=faults({**crash, "rank": 3}))


def test_a_restarted_actor_on_real_asks_its_learner_and_acts_again_as_in_sim():
    from studies.conformance import check
    from tests.real.test_faults import sends_after

    # Rank 2 is killed at global step 3 and back at step 5 as a new process: it has no
    # world process group, and asks its learner for the parameters, then sends rollouts,
    # over a gloo group of the pair (real.transport.links).
    crash = {"kind": "crash", "rank": 2, "step": 3, "restart_step": 5}
    # Three seeds: real's returns after 12 steps run above sim's with the actor left down
    # too (sim [9.5, 16, 22], real [20.5, 24.5, 53] here), and two seeds' spread is narrow.
    options = dict(steps=12, exact=False, seeds=3, timeout=60, optimizer=ADAM)
    report = check(ActorLearner(), workload(), world_size=3, faults=faults(crash), **options)
    assert report.differences == []  # failures, restarts, lost_steps; the returns' verdict
    for result in (*report.sims, *report.reals):
        s = result.summary
        # lost_samples: the one rollout the actor held at its crash (2 environments x 8 steps).
        assert (s["steps"], s["failures"], s["restarts"], s["lost_samples"]) == (12, 1, 1, 16)
        fault = rows(result, "fault")  # (an actor blocked on its send dies once it is taken)
        assert list(fault["event"]) == ["crash", "restart"]
        assert fault["step"].iloc[0] >= 3 and fault["step"].iloc[1] >= 5
    for result in report.reals:
        fault = rows(result, "fault")
        back = float(fault[fault["event"] == "restart"]["time"].iloc[0])
        assert sends_after(result, 2, 0, back) >= 2  # it asks, then sends rollouts


def test_an_actor_crash_on_real_processes_conforms_to_sim_within_the_seeds_spread():
    from studies.conformance import check

    # Rank 2 is killed at global step 3 (on real: at its first yield once the learner has
    # published step 3) and stays down; the learner goes on with rank 1's rollouts.
    crash = {"kind": "crash", "rank": 2, "step": 3}
    options = dict(steps=12, exact=False, seeds=2, timeout=60, optimizer=ADAM)
    report = check(ActorLearner(), workload(), world_size=3, faults=faults(crash), **options)
    assert report.differences == []  # failures, restarts, lost_steps; the returns' verdict
    for result in (*report.sims, *report.reals):
        s = result.summary
        # The killed actor's rollout in hand (collected or being collected, not received)
        # is lost in both backends.
        assert (s["steps"], s["failures"], s["restarts"]) == (12, 1, 0)
        assert s["lost_samples"] == ROLLOUT_STEPS
        fault = rows(result, "fault")
        assert list(fault["event"]) == ["crash"] and (fault["step"] >= 3).all()
