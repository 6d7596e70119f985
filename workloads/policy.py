"""The actor-critic network of the reinforcement-learning workloads: a policy head and a value
head, two separate tanh MLPs over the observation (separate, as the A2C baselines of the
classic-control tasks use: a shared trunk lets the value loss disturb the policy)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ActorCritic"]


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.Tanh(),
        nn.Linear(hidden, outputs),
    )


class ActorCritic(nn.Module):
    """``obs [B, d] -> (logits [B, actions], value [B])``.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> logits, value = ActorCritic(4, 2, hidden=8)(torch.zeros(3, 4))
    >>> tuple(logits.shape), tuple(value.shape)
    ((3, 2), (3,))
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.policy = _mlp(obs_dim, hidden, n_actions)
        self.value = _mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(obs), self.value(obs).squeeze(-1)
