"""The reinforcement-learning workloads: rollouts, A2C's gradient against a hand-written one,
experience as a message, evaluation by return, and the errors."""

import pytest
import torch
from torch.distributions import Categorical

import workloads
from workloads.experience import Experience, packed_size
from workloads.reinforcement import RLWorkload

GAMMA, LAM, ENTROPY, VALUE = 0.9, 0.8, 0.02, 0.5


def _small(**options):
    settings = dict(n_envs=3, rollout=5, hidden=8, gamma=GAMMA, gae_lambda=LAM,
                    entropy=ENTROPY, value_coef=VALUE, eval_episodes=3)  # fmt: skip
    return workloads.cartpole(**{**settings, **options})


def _reference_a2c_loss(model, e: Experience):
    """A2C's loss written per transition: one forward per observation, Categorical's
    log-probability and entropy, GAE as the discounted sum of TD errors (not the recursion)."""
    steps, envs = e.steps, e.envs
    terms_pg, terms_v, terms_h = [], [], []
    for env in range(envs):
        with torch.no_grad():
            values = [float(model(e.obs[t, env].unsqueeze(0))[1]) for t in range(steps)]
            values.append(float(model(e.last_obs[env].unsqueeze(0))[1]))
        for t in range(steps):
            advantage, weight = 0.0, 1.0
            for u in range(t, steps):
                live = 1.0 - float(e.dones[u, env])
                delta = float(e.rewards[u, env]) + GAMMA * live * values[u + 1] - values[u]
                advantage += weight * delta
                if not live:
                    break
                weight *= GAMMA * LAM
            logits, value = model(e.obs[t, env].unsqueeze(0))
            policy = Categorical(logits=logits.squeeze(0))
            terms_pg.append(-policy.log_prob(e.actions[t, env].long()) * advantage)
            terms_v.append(0.5 * (advantage + values[t] - value.squeeze(0)) ** 2)
            terms_h.append(policy.entropy())
    mean = lambda xs: torch.stack(xs).mean()  # noqa: E731
    return mean(terms_pg) + VALUE * mean(terms_v) - ENTROPY * mean(terms_h)


def _gradient(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_the_a2c_gradient_matches_a_hand_written_one_on_a_fixed_rollout():
    w = _small(n_envs=2, rollout=30)
    model = w.make_model(seed=3)
    rollout = w.stream(0, 1, seed=7).collect(model, w.rollout)
    assert rollout.dones.sum() >= 2  # episodes end inside it: GAE's cuts are exercised
    packed = rollout.pack()
    loss, steps = w.experience_loss(model, [packed], correction="none")
    assert steps == 60
    reference = _reference_a2c_loss(model, rollout)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        _gradient(model, loss), _gradient(model, reference), rtol=1e-4, atol=1e-6
    )


def test_a_workers_own_step_is_its_rollout_then_the_loss_on_it():
    w = _small()
    model = w.make_model(seed=0)
    loss, samples = w.step_loss(model, w.stream(1, 2, seed=5))
    same, _ = w.experience_loss(
        model, [w.collect(model, w.stream(1, 2, seed=5))], correction="none"
    )
    assert samples == w.batch_size == 15
    assert torch.equal(_gradient(model, loss), _gradient(model, same))


def test_rollouts_are_seeded_by_the_run_and_the_worker_and_go_on_between_calls():
    w = _small()
    model = w.make_model(seed=0)
    a, b, other = (w.stream(i, 2, seed=1) for i in (0, 0, 1))
    first = a.collect(model, 5)
    assert torch.equal(first.pack(), b.collect(model, 5).pack())
    assert not torch.equal(first.pack(), other.collect(model, 5).pack())
    # The next rollout starts where the last one ended.
    assert torch.equal(a.collect(model, 5).obs[0], first.last_obs)


def test_a_resumed_stream_is_the_same_in_any_process():
    w = _small()
    model = w.make_model(seed=0)
    a, b = w.stream(0, 1, seed=2), w.stream(0, 1, seed=2)
    a.collect(model, 5)
    a.resume(4)
    b.resume(4)
    assert torch.equal(a.collect(model, 5).pack(), b.collect(model, 5).pack())


def test_experience_packs_to_its_true_size_and_batches_along_environments():
    w = _small()
    model = w.make_model(seed=0)
    packed = w.collect(model, w.stream(0, 1, seed=0))
    assert packed.dtype == torch.float32
    assert packed.numel() == packed_size(5, 3, 4)
    assert w.experience_steps(packed) == 15
    loss, steps = w.experience_loss(model, [packed, packed])
    assert steps == 30
    one, _ = w.experience_loss(model, [packed])
    # Two copies of one rollout side by side: the same means, the same loss.
    torch.testing.assert_close(loss, one)


def test_bad_experience_and_options_are_refused_in_one_line():
    w = _small()
    model = w.make_model(seed=0)
    with pytest.raises(ValueError, match=r"^a tensor of 7 values is not a packed rollout"):
        w.experience_loss(model, [torch.zeros(7)])
    packed = w.collect(model, w.stream(0, 1, seed=0))
    with pytest.raises(
        ValueError, match=r"^correction='retrace' is unknown; use one of vtrace, none$"
    ):
        w.experience_loss(model, [packed], correction="retrace")
    with pytest.raises(TypeError, match="has environments, not a dataset"):
        w.batches(0, 1, 0)
    with pytest.raises(Exception, match="rollout"):
        workloads.get("cartpole", rollout=0)


def test_vtrace_on_the_acting_policys_own_rollout_is_n_step_a2c():
    w = _small(gae_lambda=1.0)
    model = w.make_model(seed=0)
    packed = w.collect(model, w.stream(0, 1, seed=0))
    # pi = mu: V-trace's targets are the n-step returns, its advantages GAE(1)'s; the
    # log-probabilities the learner recomputes equal the actor's to float precision.
    vtrace, _ = w.experience_loss(model, [packed], correction="vtrace")
    plain, _ = w.experience_loss(model, [packed], correction="none")
    torch.testing.assert_close(vtrace, plain, rtol=1e-5, atol=1e-6)


def test_evaluation_is_the_greedy_policys_mean_return_over_fixed_episodes():
    w = _small()
    model = w.make_model(seed=0)
    first = w.evaluate(model)
    assert first == w.evaluate(model)  # the same episodes each time
    assert set(first) == {"return", "episode_length"}
    assert first["return"] == first["episode_length"]  # CartPole: +1 per step
    assert w.metric == "return" and w.maximize


def test_acrobot_rolls_out_with_three_actions():
    w = workloads.acrobot(n_envs=2, rollout=4, hidden=8, eval_episodes=1)
    model = w.make_model(seed=0)
    e = Experience.unpack(w.collect(model, w.stream(0, 1, seed=0)), 4, 6)
    assert set(e.actions.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert (e.rewards <= 0).all()


def test_workload_options_are_recorded_and_the_model_counts_its_flops():
    w = workloads.get("cartpole", n_envs=4, rollout=8)
    assert isinstance(w, RLWorkload)
    assert w.config() == {"name": "cartpole", "n_envs": 4, "rollout": 8}
    # Two 2-layer tanh MLPs: (4*64 + 64*64 + 64*2) + (4*64 + 64*64 + 64*1) weights; the
    # counter sees matmuls only: 2 FLOPs per weight forward, and backward's weight gradients
    # (2 per weight) plus input gradients (2 per weight but the first layers', which take
    # the observations).
    weights = (4 * 64 + 64 * 64 + 64 * 2) + (4 * 64 + 64 * 64 + 64 * 1)
    first = 2 * 4 * 64
    assert w.flops_per_step() == 32 * (2 * weights + 2 * weights + 2 * (weights - first))


def test_a2c_solves_cartpole_within_a_bounded_number_of_steps():
    import sim

    result = sim.run(
        "allreduce", "cartpole", "star:n=2", steps=150, eval_every=10, seed=0,
        optimizer="adam:lr=0.002", target_return=195,
    )  # fmt: skip
    assert result.summary["stop_reason"] == "target_return"
    assert result.summary["final_return"] >= 195
    assert result.summary["steps"] <= 150
    assert result.evals["return"].iloc[0] < 50  # an untrained policy falls in ~10 steps
