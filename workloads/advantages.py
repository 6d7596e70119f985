"""Advantage estimates of actor-critic learning: GAE for on-policy rollouts, V-trace for
rollouts of a lagging policy. Pure tensor maths on ``[T, E]`` tensors (steps x environments),
no gradients.

An episode that ends at step ``t`` (``dones[t] = 1``) cuts every sum there: nothing after it
is discounted back into it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gae", "vtrace"]


@torch.no_grad()
def gae(
    rewards: Tensor, values: Tensor, bootstrap: Tensor, dones: Tensor, gamma: float, lam: float
) -> Tensor:
    """Generalised advantage estimates (Schulman et al. 2016): ``A_t = delta_t + gamma *
    lam * A_{t+1}``, with ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``V_T = bootstrap``.

    Examples
    --------
    >>> r = torch.tensor([[1.0], [1.0]]); v = torch.zeros(2, 1); d = torch.zeros(2, 1)
    >>> gae(r, v, torch.tensor([2.0]), d, gamma=0.5, lam=1.0).squeeze(1).tolist()
    [2.0, 2.0]
    """
    steps = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    carry = torch.zeros_like(bootstrap)
    next_value = bootstrap
    for t in range(steps - 1, -1, -1):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * next_value - values[t]
        carry = delta + gamma * lam * live * carry
        advantages[t] = carry
        next_value = values[t]
    return advantages


@torch.no_grad()
def vtrace(
    behaviour_logp: Tensor,
    target_logp: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap: Tensor,
    dones: Tensor,
    gamma: float,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    lam: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """V-trace targets and policy-gradient advantages (Espeholt et al. 2018, eq. 1 and 4).

    With ``rho_t = min(rho_bar, pi/mu)`` and ``c_t = lam * min(c_bar, pi/mu)`` of the target
    policy ``pi`` against the behaviour policy ``mu``, ``v_s - V(x_s) = delta_s + gamma *
    c_s * (v_{s+1} - V(x_{s+1}))`` where ``delta_s = rho_s * (r_s + gamma * V(x_{s+1}) -
    V(x_s))``, and the policy's advantage is ``rho_s * (r_s + gamma * v_{s+1} - V(x_s))``.

    Returns ``(vs, advantages)``, both ``[T, E]``. On-policy (``pi = mu``) with ``lam = 1``,
    ``vs`` is the n-step return to the rollout's end.

    Examples
    --------
    >>> logp = torch.zeros(2, 1); r = torch.ones(2, 1); v = torch.zeros(2, 1)
    >>> vs, adv = vtrace(logp, logp, r, v, torch.tensor([2.0]), torch.zeros(2, 1), gamma=0.5)
    >>> vs.squeeze(1).tolist(), adv.squeeze(1).tolist()
    ([2.0, 2.0], [2.0, 2.0])
    """
    ratios = torch.exp(target_logp - behaviour_logp)
    rhos = ratios.clamp(max=rho_bar)
    cs = lam * ratios.clamp(max=c_bar)
    discounts = gamma * (1.0 - dones)
    next_values = torch.cat([values[1:], bootstrap.unsqueeze(0)], 0)
    deltas = rhos * (rewards + discounts * next_values - values)
    steps = rewards.shape[0]
    corrections = torch.empty_like(values)
    carry = torch.zeros_like(bootstrap)
    for t in range(steps - 1, -1, -1):
        carry = deltas[t] + discounts[t] * cs[t] * carry
        corrections[t] = carry
    vs = values + corrections
    next_vs = torch.cat([vs[1:], bootstrap.unsqueeze(0)], 0)
    advantages = rhos * (rewards + discounts * next_vs - values)
    return vs, advantages
