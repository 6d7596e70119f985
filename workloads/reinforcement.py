"""Reinforcement learning as a workload: a worker's gradient is A2C's on a rollout of its own
environments, and the global policy is evaluated by its mean episodic return.

Every strategy of the catalogue then trains RL unchanged: ``allreduce`` is A2C (Mnih et al.
2016's synchronous variant), the asynchronous parameter server is A3C, Local SGD, DiLoCo and
gossip are their RL counterparts. A strategy may also split a step (the contract's
``w.collect_experience()`` and ``w.compute_gradients_from(...)``): actors act and send their
experience, learners learn from it, correcting for the policy lag with V-trace (Espeholt et
al. 2018; :func:`workloads.advantages.vtrace`) or not.

The loss of a rollout (``T`` steps of ``E`` environments) is A2C's: the policy gradient
``-mean(log pi(a_t|x_t) * A_t)``, plus ``value_coef`` x half the squared error of the value
against its target, minus ``entropy`` x the policy's mean entropy; on the worker's own rollout
``A_t`` is GAE(``gae_lambda``) and the target ``A_t + V(x_t)``; on experience from elsewhere
it is V-trace's (``correction="vtrace"``) or GAE's as though it were on-policy
(``correction="none"``). Samples are environment steps.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from workloads.advantages import gae, vtrace
from workloads.base import Workload
from workloads.environments import Actor, episode_returns, make_envs
from workloads.experience import Experience, packed_size
from workloads.policy import ActorCritic

__all__ = ["CORRECTIONS", "RLWorkload"]

#: How a learner treats experience its policy did not act on.
CORRECTIONS = ("vtrace", "none")


class RLWorkload(Workload):
    """An actor-critic policy on a Gymnasium environment (see the module docstring).

    Parameters
    ----------
    name, env_id : str
        The workload's name and Gymnasium's environment id.
    obs_dim, n_actions : int
        The observation's size and the number of discrete actions.
    hidden : int
        Width of the policy's and the value's two hidden layers.
    n_envs, rollout : int
        Environments per worker and steps per rollout: a gradient's samples are their product.
    gamma, gae_lambda : float
        Discount and GAE's lambda (V-trace's lambda too, so that the two corrections trace
        returns equally far back).
    entropy, value_coef : float
        The loss's entropy bonus and value-loss weights.
    eval_episodes : int
        Episodes of the evaluation (seeded the same for every run).
    actor_share : float
        The part of an on-policy step's compute time spent acting (environment steps and
        forward passes); the rest, the learner's forward and backward. ``sim`` charges
        ``w.collect_experience()`` and ``w.compute_gradients_from()`` by it.

    Examples
    --------
    >>> w = RLWorkload("cartpole", "CartPole-v1", 4, 2, n_envs=2, rollout=4, eval_episodes=2)
    >>> w.metric, w.maximize, w.batch_size
    ('return', True, 8)
    >>> model = w.make_model(seed=0)
    >>> loss, samples = w.step_loss(model, w.stream(0, 1, seed=0))
    >>> samples, loss.requires_grad
    (8, True)
    >>> sorted(w.evaluate(model))
    ['episode_length', 'return']
    >>> w.collect(model, w.stream(0, 1, seed=0)).numel() == w.rollout_numel  # a receive's size
    True
    """

    metric: ClassVar[str] = "return"
    maximize: ClassVar[bool] = True
    collects_experience: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        env_id: str,
        obs_dim: int,
        n_actions: int,
        *,
        hidden: int = 64,
        n_envs: int = 8,
        rollout: int = 16,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        entropy: float = 0.01,
        value_coef: float = 0.5,
        eval_episodes: int = 10,
        actor_share: float = 0.5,
    ) -> None:
        self.name = name
        self.env_id = env_id
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.hidden = hidden
        self.n_envs = n_envs
        self.rollout = rollout
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.entropy = entropy
        self.value_coef = value_coef
        self.eval_episodes = eval_episodes
        self.actor_share = actor_share
        self.rollout_steps = n_envs * rollout
        self.rollout_numel = packed_size(rollout, n_envs, obs_dim)
        # What the base class's size and cost methods read.
        self.batch_size = self.rollout_steps
        self.partition_scheme = "iid"
        self.alpha = 0.5
        self.has_accuracy = False
        self.model_factory = functools.partial(ActorCritic, obs_dim, n_actions, hidden)
        self._flops = None
        self._sizes = None
        self._activations = None
        self._eval_envs: Any = None

    def __repr__(self) -> str:
        return (
            f"RLWorkload(name={self.name!r}, env={self.env_id!r}, n_envs={self.n_envs}, "
            f"rollout={self.rollout})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # The evaluation's environments are made again where the workload is unpickled.
        return {**self.__dict__, "_eval_envs": None}

    def config(self) -> dict[str, Any]:
        if self.spec is not None:
            return dict(self.spec)
        return {"name": self.name, "env": self.env_id, "n_envs": self.n_envs}

    # -- what a worker draws from ------------------------------------------------------------

    def stream(
        self, rank: int, n_workers: int, seed: int, device: torch.device | None = None
    ) -> Actor:
        """Worker ``rank``'s environments (the model's device is read at each rollout)."""
        if not 0 <= rank < n_workers:
            raise ValueError(f"rank={rank} must be in 0..{n_workers - 1}; pass a valid rank")
        return Actor(self.env_id, self.n_envs, seed, rank, self.gamma)

    def batches(self, rank: int, n_workers: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise TypeError(
            f"{self.name} is a reinforcement-learning workload: it has environments, not a "
            "dataset; use stream() and step_loss(), or w.collect_experience()"
        )

    def partition(self, n_workers: int, seed: int) -> list[Any]:
        return self.batches(0, n_workers, seed)  # type: ignore[return-value]

    def step_loss(self, model: nn.Module, batches: Iterator[Any]) -> tuple[Tensor, int]:
        """A2C: a rollout of the worker's own environments with ``model``, and its loss."""
        actor = _actor(batches)
        experience = actor.collect(model, self.rollout)
        return self._loss(model, experience, "gae"), self.rollout_steps

    # -- experience as a message (strategies.context.Experiences) ----------------------------

    def collect(self, model: nn.Module, stream: Any) -> Tensor:
        """A rollout of ``stream``'s environments acting with ``model``, packed."""
        return _actor(stream).collect(model, self.rollout).pack()

    def experience_steps(self, experience: Tensor) -> int:
        """Environment steps in a packed rollout (one-line error if it is not one)."""
        # From its size: unpacking would copy a device's tensor to the CPU just to count.
        return Experience.envs_in(experience.numel(), self.rollout, self.obs_dim) * self.rollout

    def experience_loss(
        self,
        model: nn.Module,
        experiences: list[Tensor],
        *,
        correction: str = "vtrace",
        rho_bar: float = 1.0,
        c_bar: float = 1.0,
    ) -> tuple[Tensor, int]:
        """The loss of ``model`` on packed rollouts collected elsewhere, batched, and their
        environment steps; ``correction``: ``"vtrace"`` (with its clipping thresholds
        ``rho_bar`` and ``c_bar``) or ``"none"`` (GAE, as though on-policy)."""
        if correction not in CORRECTIONS:
            raise ValueError(
                f"correction={correction!r} is unknown; use one of {', '.join(CORRECTIONS)}"
            )
        batch = Experience.batch([self._unpack(e) for e in experiences])
        loss = self._loss(model, batch, correction, rho_bar, c_bar)
        return loss, batch.envs * self.rollout

    def _unpack(self, flat: Tensor) -> Experience:
        # Where it arrived (a learner's device): the loss reads it there, with no round trip.
        return Experience.unpack(flat.detach().float(), self.rollout, self.obs_dim)

    def _loss(
        self,
        model: nn.Module,
        experience: Experience,
        correction: str,
        rho_bar: float = 1.0,
        c_bar: float = 1.0,
    ) -> Tensor:
        t, e, d = experience.obs.shape
        device = next(model.parameters()).device
        obs = torch.cat([experience.obs.reshape(t * e, d), experience.last_obs]).to(device)
        logits, values = model(obs)
        log_probs = torch.log_softmax(logits[: t * e].view(t, e, -1), -1)
        value = values[: t * e].view(t, e)
        bootstrap = values[t * e :].detach()
        actions = experience.actions.to(device).long().unsqueeze(-1)
        logp = log_probs.gather(-1, actions).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
        rewards = experience.rewards.to(device)
        dones = experience.dones.to(device)
        if correction == "vtrace":
            behaviour = experience.behaviour_logp.to(device)
            targets, advantages = vtrace(
                behaviour, logp.detach(), rewards, value.detach(), bootstrap, dones,
                self.gamma, rho_bar, c_bar, self.gae_lambda,
            )  # fmt: skip
        else:
            advantages = gae(rewards, value.detach(), bootstrap, dones, self.gamma, self.gae_lambda)
            targets = advantages + value.detach()
        policy = -(logp * advantages).mean()
        value_loss = 0.5 * (targets - value).pow(2).mean()
        return policy + self.value_coef * value_loss - self.entropy * entropy

    # -- evaluation and counting -------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The policy's mean ``return`` (and ``episode_length``) over the fixed episodes."""
        if self._eval_envs is None:
            self._eval_envs = make_envs(self.env_id, self.eval_episodes)
        was_training = model.training
        model.eval()
        try:
            mean, length = episode_returns(model, self._eval_envs, self.eval_episodes)
        finally:
            model.train(was_training)
        return {"return": mean, "episode_length": length}

    def meta_batch(self) -> tuple[Tensor, Tensor]:
        """A rollout's observations and actions on the meta device (for counting)."""
        b = self.rollout_steps
        return (
            torch.empty(b, self.obs_dim, device="meta"),
            torch.empty(b, dtype=torch.long, device="meta"),
        )

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """A stand-in with the operations of the A2C loss on ``(logits, values)`` and the
        actions, for counting FLOPs and activations (the real loss needs a rollout)."""
        logits, values = output
        return nn.functional.cross_entropy(logits, target) + values.pow(2).mean()


def _actor(stream: Any) -> Actor:
    if not isinstance(stream, Actor):
        raise TypeError(
            f"a reinforcement-learning workload steps its environments (an Actor), not a "
            f"{type(stream).__name__}; pass what its stream() returns"
        )
    return stream
