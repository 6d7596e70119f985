"""A rollout of a worker's environments, and its one-tensor form for the network.

An actor sends what it collected as one flat float32 tensor, so that the strategies' messages
(tensors) carry it as they are and the bytes on the wire are the true bytes of the experience:
observations ``[T, E, d]``, the observation after the last step ``[E, d]`` (to bootstrap
from), then per step and environment the action, the reward, whether the episode ended there
and the behaviour policy's log-probability of the action (``[T, E]`` each). Discrete actions
are small integers, exact in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Experience", "packed_size"]


def packed_size(steps: int, envs: int, obs_dim: int) -> int:
    """Floats in a packed rollout of ``steps`` steps of ``envs`` environments.

    Examples
    --------
    >>> packed_size(16, 8, 4)  # 16*8*4 observations, 8*4 last ones, 4 x 16*8 per-step values
    1056
    """
    return steps * envs * obs_dim + envs * obs_dim + 4 * steps * envs


@dataclass(frozen=True)
class Experience:
    """One rollout (or several, batched along the environments).

    Attributes
    ----------
    obs : Tensor
        ``[T, E, d]`` observations the actions were taken in.
    last_obs : Tensor
        ``[E, d]`` the observations after step ``T - 1``.
    actions, rewards, dones, behaviour_logp : Tensor
        ``[T, E]``: the action taken, the reward received (a truncated episode's bootstrap
        value already added), 1.0 where the episode ended at that step, and the log-probability
        the acting policy gave the action.

    Examples
    --------
    >>> e = Experience(torch.zeros(3, 2, 4), torch.ones(2, 4), torch.zeros(3, 2),
    ...                torch.ones(3, 2), torch.zeros(3, 2), torch.full((3, 2), -0.7))
    >>> flat = e.pack(); flat.numel() == packed_size(3, 2, 4)
    True
    >>> back = Experience.unpack(flat, steps=3, obs_dim=4)
    >>> back.envs, bool(torch.equal(back.last_obs, e.last_obs))
    (2, True)
    >>> Experience.batch([e, e]).obs.shape
    torch.Size([3, 4, 4])
    """

    obs: Tensor
    last_obs: Tensor
    actions: Tensor
    rewards: Tensor
    dones: Tensor
    behaviour_logp: Tensor

    @property
    def steps(self) -> int:
        """Rollout length ``T``."""
        return int(self.obs.shape[0])

    @property
    def envs(self) -> int:
        """Environments ``E``."""
        return int(self.obs.shape[1])

    def pack(self) -> Tensor:
        """The one flat float32 tensor an actor sends."""
        parts = (self.obs, self.last_obs, self.actions, self.rewards, self.dones)
        return torch.cat([p.reshape(-1).float() for p in (*parts, self.behaviour_logp)])

    @staticmethod
    def envs_in(numel: int, steps: int, obs_dim: int) -> int:
        """Environments in a packed rollout of ``numel`` floats (read from its size alone),
        or a one-line error if it holds no whole number of them."""
        per_env = steps * obs_dim + obs_dim + 4 * steps
        envs, left = divmod(numel, per_env)
        if left or envs <= 0:
            raise ValueError(
                f"a tensor of {numel} values is not a packed rollout of {steps} steps "
                f"of {obs_dim}-value observations; send what w.collect_experience() returned"
            )
        return envs

    @classmethod
    def unpack(cls, flat: Tensor, steps: int, obs_dim: int) -> Experience:
        """The rollout ``pack`` made (``flat`` must hold a whole number of environments)."""
        envs = cls.envs_in(flat.numel(), steps, obs_dim)
        t, e, d = steps, envs, obs_dim
        sizes = [t * e * d, e * d, t * e, t * e, t * e, t * e]
        obs, last, actions, rewards, dones, logp = torch.split(flat, sizes)
        return cls(
            obs.view(t, e, d),
            last.view(e, d),
            actions.view(t, e),
            rewards.view(t, e),
            dones.view(t, e),
            logp.view(t, e),
        )

    @classmethod
    def batch(cls, parts: list[Experience]) -> Experience:
        """Rollouts of equal length side by side, as more environments."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            torch.cat([p.obs for p in parts], 1),
            torch.cat([p.last_obs for p in parts], 0),
            torch.cat([p.actions for p in parts], 1),
            torch.cat([p.rewards for p in parts], 1),
            torch.cat([p.dones for p in parts], 1),
            torch.cat([p.behaviour_logp for p in parts], 1),
        )
