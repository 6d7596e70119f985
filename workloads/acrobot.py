"""Acrobot (Sutton 1996; Gymnasium's ``Acrobot-v1``) with an actor-critic policy: torque the
joint of a two-link pendulum (-1, 0, +1) to swing its tip above a line; -1 per step until it
does, at most 500 steps (a return of -500 is a policy that never gets there; good policies
reach about -80)."""

from __future__ import annotations

from options.declare import declared
from workloads.fields import Coefficient, Count, Discount, Share
from workloads.reinforcement import RLWorkload

__all__ = ["acrobot"]


@declared
def acrobot(
    *,
    hidden: Count = 64,
    n_envs: Count = 8,
    rollout: Count = 16,
    gamma: Discount = 0.99,
    gae_lambda: Discount = 0.95,
    entropy: Coefficient = 0.01,
    value_coef: Coefficient = 0.5,
    eval_episodes: Count = 10,
    actor_share: Share = 0.5,
) -> RLWorkload:
    """Acrobot-v1 with a ``hidden``-wide actor-critic (options: :class:`RLWorkload`).

    Examples
    --------
    >>> w = acrobot(n_envs=2, rollout=4)
    >>> w.obs_dim, w.n_actions, w.batch_size
    (6, 3, 8)
    """
    return RLWorkload(
        "acrobot",
        "Acrobot-v1",
        6,
        3,
        hidden=hidden,
        n_envs=n_envs,
        rollout=rollout,
        gamma=gamma,
        gae_lambda=gae_lambda,
        entropy=entropy,
        value_coef=value_coef,
        eval_episodes=eval_episodes,
        actor_share=actor_share,
    )
