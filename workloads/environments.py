"""A worker's environments (Gymnasium's classic control, vectorised) and the fixed episodes
the global policy is evaluated on.

Every draw is seeded from the run's seed and the worker, so that the same run gives the same
rollouts in ``sim`` and on ``real``: each environment's own generator (reset once with
``[seed, worker]``'s seeds; episodes then reset themselves and go on with it), and a torch
generator for the actions. Episodes reset in the step that ends them (Gymnasium's
``SAME_STEP`` autoreset), so every step of a rollout is a real transition; a truncated
episode (a time limit) gets the value of its last observation, discounted, added to its last
reward, as though it went on (the usual bootstrap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from workloads.experience import Experience

__all__ = ["Actor", "EVAL_SEED", "episode_returns", "make_envs"]

#: The evaluation episodes' seeds are EVAL_SEED, EVAL_SEED + 1, ...: the same for every run,
#: seed and strategy, so returns compare across them.
EVAL_SEED = 1_000_000
#: Streams of the seed sequence: the environments' seeds and the actions' generator.
_ENVS, _ACTIONS = 0, 1


def make_envs(env_id: str, n_envs: int) -> Any:
    """``n_envs`` copies of Gymnasium's ``env_id``, stepped together, reset in the step that
    ends an episode. Gymnasium is imported here, on first use."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    return gym.make_vec(
        env_id,
        num_envs=n_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )


def _seeds(seed: int, worker: int, stream: int, resumed: int, count: int) -> list[int]:
    state = np.random.SeedSequence([seed, worker, stream, resumed]).generate_state(count)
    return [int(s) for s in state]


class Actor:
    """One worker's environments and action generator: what a reinforcement-learning
    workload's :meth:`~workloads.base.Workload.stream` is.

    Parameters
    ----------
    env_id : str
        Gymnasium's id, e.g. ``"CartPole-v1"``.
    n_envs : int
        Environments stepped together.
    seed, worker : int
        The run's seed and the worker's position: its draws' seeds.
    gamma : float
        The discount, for a truncated episode's bootstrap.

    Examples
    --------
    >>> from workloads.policy import ActorCritic
    >>> actor = Actor("CartPole-v1", n_envs=2, seed=0, worker=0, gamma=0.99)
    >>> e = actor.collect(ActorCritic(4, 2, hidden=8), steps=5)
    >>> tuple(e.obs.shape), tuple(e.actions.shape)
    ((5, 2, 4), (5, 2))
    """

    def __init__(self, env_id: str, n_envs: int, seed: int, worker: int, gamma: float) -> None:
        self.env_id = env_id
        self.n_envs = n_envs
        self.seed = seed
        self.worker = worker
        self.gamma = gamma
        self.envs = make_envs(env_id, n_envs)
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.resume(0)

    def resume(self, gradients: int) -> None:
        """Start the environments afresh, as a process restarted after ``gradients`` of the
        worker's gradients would (environments are not checkpointed; their seeds say where)."""
        self.obs, _ = self.envs.reset(seed=_seeds(self.seed, self.worker, _ENVS, gradients, 1)[0])
        actions = _seeds(self.seed, self.worker, _ACTIONS, gradients, 1)[0]
        self.generator = torch.Generator().manual_seed(actions)

    def __iter__(self) -> Actor:
        return self

    def __next__(self) -> Actor:
        # A stream, to the worker: a rollout needs the policy, so the workload's step_loss
        # calls collect() with it rather than drawing batches.
        return self

    @torch.no_grad()
    def collect(self, model: nn.Module, steps: int) -> Experience:
        """``steps`` steps of every environment, acting with ``model``'s policy."""
        device = next(model.parameters()).device
        e, d = self.n_envs, self.obs_dim
        obs = torch.empty(steps, e, d)
        actions = torch.empty(steps, e)
        rewards = torch.empty(steps, e)
        dones = torch.empty(steps, e)
        logp = torch.empty(steps, e)
        for t in range(steps):
            current = torch.from_numpy(np.asarray(self.obs, dtype=np.float32)).reshape(e, d)
            obs[t] = current
            logits, _ = model(current.to(device))
            log_probs = torch.log_softmax(logits.float(), -1).cpu()
            action = torch.multinomial(log_probs.exp(), 1, generator=self.generator).squeeze(1)
            self.obs, reward, terminated, truncated, info = self.envs.step(action.numpy())
            reward = np.asarray(reward, dtype=np.float32)
            cut = np.flatnonzero(truncated & ~terminated)
            if cut.size:  # a time limit, not an end: bootstrap from the last observation
                last = np.stack([info["final_obs"][i] for i in cut]).astype(np.float32)
                _, value = model(torch.from_numpy(last).reshape(len(cut), d).to(device))
                reward[cut] += self.gamma * value.float().cpu().numpy()
            actions[t] = action.float()
            rewards[t] = torch.from_numpy(reward)
            dones[t] = torch.from_numpy((terminated | truncated).astype(np.float32))
            logp[t] = log_probs.gather(1, action.unsqueeze(1)).squeeze(1)
        last_obs = torch.from_numpy(np.asarray(self.obs, dtype=np.float32)).reshape(e, d)
        return Experience(obs, last_obs, actions, rewards, dones, logp)


@torch.no_grad()
def episode_returns(
    model: nn.Module, envs: Any, episodes: int, seed: int = EVAL_SEED, max_steps: int = 100_000
) -> tuple[float, float]:
    """Mean return and length of ``episodes`` episodes (one per environment of ``envs``, which
    has that many), seeded ``seed, seed + 1, ...``, acting greedily (the most probable action):
    the global policy's evaluation, the same episodes for every run."""
    device = next(model.parameters()).device
    obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes)
    live = np.ones(episodes, dtype=bool)
    for _ in range(max_steps):
        current = torch.from_numpy(np.asarray(obs, dtype=np.float32)).reshape(episodes, -1)
        logits, _ = model(current.to(device))
        action = logits.argmax(-1).cpu().numpy()
        obs, reward, terminated, truncated, _ = envs.step(action)
        returns += np.where(live, reward, 0.0)
        lengths += live
        live &= ~(terminated | truncated)
        if not live.any():
            break
    return float(returns.mean()), float(lengths.mean())
