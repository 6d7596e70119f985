"""The rules of a run, written once: evaluation points, the stop on ``steps``, the last
step's snapshot, the global step and the runaway guard.

Both backends decide with these: the :class:`~strategies.ledger.Ledger` (live in ``sim``,
in the replay of ``real``) and every real rank, live, for what it must record and when it
has done its share of the run (:class:`RunRules`). A rule changed here changes in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["RunRules", "RunawayError", "check_runaway", "global_step", "is_eval_step"]


def is_eval_step(step: int, eval_every: int, steps: int) -> bool:
    """Whether global step ``step`` is an evaluation point (each rank can tell on its own).

    Examples
    --------
    >>> [k for k in range(0, 13) if is_eval_step(k, 5, 12)]
    [0, 5, 10, 12]
    """
    return step % eval_every == 0 or step >= steps


def global_step(owner_steps: Iterable[int]) -> int:
    """The global step: the slowest owner's count of optimizer steps (0 with no owner).

    Examples
    --------
    >>> global_step([4, 2, 3]), global_step([])
    (2, 0)
    """
    return min(owner_steps, default=0)


class RunawayError(RuntimeError):
    """A rank stepped far past what the run can need: a symptom, whose cause (a peer's error,
    an owner that stopped) a backend names first when it has one."""


def runaway_limit(steps: int) -> int:
    """The most optimizer steps a rank may apply in a run of ``steps`` global steps."""
    return 10 * steps + 1000


def check_runaway(rank: int, rank_steps: int, steps: int, owners: Sequence[int]) -> None:
    """Raise if a rank has applied far more optimizer steps than the run can need: the
    strategy's declared global model (its owners) does not match who applies updates, and
    the run would never stop. Both backends call this on every step of every rank.

    Examples
    --------
    >>> check_runaway(0, 1000, 10, [1, 2])
    >>> check_runaway(0, 1101, 10, [1, 2])
    Traceback (most recent call last):
    ...
    strategies.rules.RunawayError: rank 0 has applied 1101 optimizer steps, far more than the run's 10 global steps need: a global step counts once every owner of the global model (ranks [1, 2]) has applied it, so an owner stopped stepping (its program ended early) or the strategy's global_model ('servers', 'primary', 'average') does not match the ranks that apply updates
    """
    if rank_steps > runaway_limit(steps):
        raise RunawayError(
            f"rank {rank} has applied {rank_steps} optimizer steps, far more than the run's "
            f"{steps} global steps need: a global step counts once every owner of the global "
            f"model (ranks {list(owners)}) has applied it, so an owner stopped stepping (its "
            "program ended early) or the strategy's global_model ('servers', 'primary', "
            "'average') does not match the ranks that apply updates"
        )


@dataclass(frozen=True)
class RunRules:
    """What a run's ``steps``, ``eval_every`` and owners imply, for the ledger and for each
    rank: when to evaluate, when an owner has done its share, which states to keep.

    An owner's state at step ``k`` is taken when it *settles* (it is about to apply step
    ``k + 1``: the communication after a step belongs to it), except the last step's, taken
    when it is applied (no step follows to settle it).

    Examples
    --------
    >>> rules = RunRules(steps=4, eval_every=3, owners=(0, 1))
    >>> [k for k in range(5) if rules.is_eval_step(k)]
    [0, 3, 4]
    >>> rules.snapshot_when_applied(4), rules.snapshot_when_settled(3), rules.snapshot_when_settled(2)
    (True, True, False)
    >>> rules.owner_finishes(3), rules.owner_finishes(4), rules.global_step({0: 4, 1: 3})
    (False, True, 3)
    """

    steps: int
    eval_every: int
    owners: tuple[int, ...]

    def is_eval_step(self, step: int) -> bool:
        return is_eval_step(step, self.eval_every, self.steps)

    def is_last(self, step: int) -> bool:
        """Whether ``step`` is the run's last global step (or past it)."""
        return step >= self.steps

    def owner_finishes(self, owner_steps: int) -> bool:
        """Whether an owner's ``owner_steps``-th step is the one with which it has done its
        share of the ``steps`` condition (true once): the run stops on ``steps`` once every
        owner has, which is when the global step is the last (:meth:`is_last`)."""
        return owner_steps == self.steps

    def snapshot_when_applied(self, owner_steps: int) -> bool:
        """Whether an owner's state is taken as it applies its ``owner_steps``-th step: the
        last step's is (nothing follows to settle it)."""
        return self.is_last(owner_steps)

    def snapshot_when_settled(self, owner_steps: int) -> bool:
        """Whether an owner about to move past step ``owner_steps`` must hand in its state
        for an evaluation (the real backend snapshots only what an evaluation reads)."""
        return not self.is_last(owner_steps) and self.is_eval_step(owner_steps)

    def check_runaway(self, rank: int, rank_steps: int) -> None:
        check_runaway(rank, rank_steps, self.steps, self.owners)

    def global_step(self, owner_steps: dict[int, int]) -> int:
        """The global step from each owner's count (0 until every owner has one)."""
        if any(r not in owner_steps for r in self.owners):
            return 0
        return global_step(owner_steps[r] for r in self.owners)
