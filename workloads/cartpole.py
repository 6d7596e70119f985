"""CartPole (Barto, Sutton and Anderson 1983; Gymnasium's ``CartPole-v1``) with an
actor-critic policy: push a cart left or right to keep a pole upright, +1 per step, episodes
end when it falls or after 500 steps. The classic bar is a mean return of 195 (v0's
"solved"); the maximum is 500."""

from __future__ import annotations

from options.declare import declared
from workloads.fields import Coefficient, Count, Discount, Share
from workloads.reinforcement import RLWorkload

__all__ = ["cartpole"]


@declared
def cartpole(
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
    """CartPole-v1 with a ``hidden``-wide actor-critic (options: :class:`RLWorkload`).

    Examples
    --------
    >>> w = cartpole(n_envs=4, rollout=8)
    >>> w.batch_size, w.metric
    (32, 'return')
    """
    return RLWorkload(
        "cartpole",
        "CartPole-v1",
        4,
        2,
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
