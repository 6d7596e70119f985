"""The owners of the global model: how many steps each has applied, and its state at each
step the ledger may still evaluate.

Owners apply a step at different times, and a model mixing steps is no model: an owner ahead
of the global step keeps a copy of its state at each step not yet global, until the others
catch up (:meth:`OwnerStates.forget`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from strategies.aggregate import reduce_tensors

__all__ = ["COMBINES", "OwnerStates", "value"]

#: How owners' states make the global model: one owner's, concatenated shards, the mean.
COMBINES = ("one", "concat", "mean")


def value(state: Any) -> torch.Tensor | None:
    """A state's tensor: ``state`` itself, or what it returns when it is a function (the
    simulator passes ``ctx.parameters``, so copies are made only when needed)."""
    return state() if callable(state) else state


class OwnerStates:
    """Each owner's count of steps, its current state, and its copies at steps not yet
    global; the global step is the slowest owner's count (:func:`strategies.rules.global_step`),
    kept in O(1) per step for thousands of owners.

    Examples
    --------
    >>> owners = OwnerStates([0, 1], "mean")
    >>> owners.start({0: torch.zeros(1), 1: torch.ones(1)})
    >>> owners.stepped(0, torch.full((1,), 2.0)), owners.slowest
    (1, 0)
    >>> owners.stepped(1, torch.full((1,), 4.0)), owners.slowest
    (1, 1)
    >>> owners.combined(1)
    tensor([3.])
    """

    def __init__(self, owners: Sequence[int], combine: str) -> None:
        if combine not in COMBINES:
            raise ValueError(f"combine={combine!r}; use 'one', 'concat' or 'mean'")
        if not owners:
            raise ValueError("the global model needs at least one owner rank")
        self.owners = list(owners)
        self.combine = combine
        self.counts = {r: 0 for r in self.owners}
        # How many owners have applied each count of steps, and the smallest count.
        self._at_count = {0: len(self.owners)}
        self.slowest = 0
        self.current: dict[int, Any] = {}
        self.copies: dict[int, dict[int, torch.Tensor | None]] = {r: {} for r in self.owners}
        #: The owners whose states make the global model now: a crashed owner leaves until
        #: it rejoins (:meth:`leave`, :meth:`rejoin`), at the step it rejoined at.
        self.live = list(self.owners)
        self._joined: dict[int, int] = {}

    def start(self, states: dict[int, Any]) -> None:
        """Every owner's state before any step."""
        self.current = dict(states)
        for rank, copies in self.copies.items():
            copies[0] = value(self.current.get(rank))

    def stepped(self, rank: int, state: Any) -> int:
        """Owner ``rank`` applied a step and is now at ``state``; returns its count."""
        k = self.counts[rank] = self.counts[rank] + 1
        at = self._at_count
        at[k - 1] -= 1
        at[k] = at.get(k, 0) + 1
        if k - 1 == self.slowest and not at[k - 1]:
            del at[k - 1]
            self.slowest = k  # the last owner at the old minimum moved up by one
        self.current[rank] = state
        return k

    def leave(self, rank: int) -> bool:
        """Owner ``rank`` crashed: its state leaves the global model and the global step no
        longer waits for it (the slowest live owner's count is). Shards (``concat``) cannot
        leave: the model waits for the shard to be restored. Returns whether it left.

        Examples
        --------
        >>> owners = OwnerStates([0, 1], "mean")
        >>> owners.start({0: torch.zeros(1), 1: torch.ones(1)})
        >>> _ = owners.stepped(1, torch.full((1,), 4.0))
        >>> owners.leave(0), owners.slowest, owners.combined(1)
        (True, 1, tensor([4.]))
        """
        if self.combine == "concat" or rank not in self.live:
            return False
        self.live.remove(rank)
        k = self.counts.pop(rank)
        at = self._at_count
        at[k] -= 1
        if not at[k]:
            del at[k]
        if at:
            self.slowest = max(self.slowest, min(at))
        return True

    def rejoin(self, rank: int, k: int, state: Any) -> None:
        """Owner ``rank`` rejoined with ``state`` at its step ``k`` (healed from a peer, or
        restored from a checkpoint); the global model holds it again from step ``k`` on."""
        at = self._at_count
        if rank in self.counts:  # still counted: a shard restored in place
            old = self.counts[rank]
            at[old] -= 1
            if not at[old]:
                del at[old]
        else:
            position = {r: i for i, r in enumerate(self.owners)}
            self.live.append(rank)
            self.live.sort(key=position.__getitem__)
        self.counts[rank] = k
        self._at_count[k] = self._at_count.get(k, 0) + 1
        self.slowest = min(self._at_count)
        self._joined[rank] = k
        self.current[rank] = state
        self.copies[rank] = {k: value(state)}

    def reset(self, states: dict[int, Any], k: int) -> None:
        """Every owner restarted at step ``k`` with ``states`` (a checkpoint's)."""
        self.live = [r for r in self.owners if r in states]
        self.counts = {r: k for r in self.live}
        self._at_count = {k: len(self.live)}
        self.slowest = k
        self._joined = {r: k for r in self.live}
        self.current = dict(states)
        self.copies = {r: {} for r in self.owners}
        for r in self.live:
            self.copies[r][k] = value(states[r])

    def keep(self, rank: int, k: int, state: Any) -> None:
        """Owner ``rank``'s state at step ``k`` is ``state``."""
        self.copies[rank][k] = value(state)

    def ended(self, states: dict[int, Any], step: int) -> None:
        """The owners' final states (their programs ended): the model at ``step`` is theirs."""
        self.current.update(states)
        for rank, state in states.items():
            self.keep(rank, step, state)

    def forget(self, before: int) -> None:
        """Copies of steps before ``before`` are no longer needed."""
        for copies in self.copies.values():
            for old in [v for v in copies if v < before]:
                del copies[old]

    def states(self, k: int, settled_only: bool = False) -> list[torch.Tensor] | None:
        """Every owner's state at step ``k``, in owner order (``None`` if one is unknown)."""
        states = []
        for r in self.live:
            if self._joined.get(r, 0) > k:  # it rejoined after step k: not an owner then
                continue
            # Each owner's state as of step k (kept when it settled), so a later step does
            # not leak in; an owner still at step k contributes its state now, unless only
            # settled states will do. The real backend records states at evaluation points
            # only, and its final states otherwise.
            state = self.copies[r].get(k)
            if state is None and self.counts[r] == k and not settled_only:
                state = value(self.current.get(r))
            if state is None:
                return None
            states.append(state)
            if self.combine == "one":  # the first live owner's is the model
                break
        return states or None

    def combined(self, k: int, settled_only: bool = False) -> torch.Tensor | None:
        """The global model's flat parameters at step ``k`` (``None`` if unknown)."""
        states = self.states(k, settled_only)
        return None if states is None else self.join(states)

    def join(self, states: list[torch.Tensor]) -> torch.Tensor:
        """The global model of the owners' ``states``."""
        if self.combine == "one":
            return states[0].clone()
        if self.combine == "concat":
            return torch.cat(states)
        return reduce_tensors(states, "mean")
