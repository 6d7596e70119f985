"""Samples counted the same in both backends: those of gradients that were applied.

A gradient's samples are *committed* at the computing rank's next optimizer step. The
samples at global step ``k`` are the sum over ranks of what each rank had committed by its
own ``k``-th step, or, for a rank that never steps (a parameter server's worker) or has not
reached step ``k``, all it has computed so far. Nothing here depends on how the ranks'
events interleave, which differs between backends (a real rank may compute its next
gradient before a peer's step is stamped): a synchronous run counts the same in ``sim`` and
on ``real``. What was computed and never counted (work after the stop, a rank's steps past
the global model's) is :attr:`SampleCounts.discarded`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HISTORY", "SampleCounts"]

#: How many of a rank's last steps a rollback may undo (``lose(rank, steps)``).
HISTORY = 4096


class SampleCounts:
    """Per-rank samples computed and committed.

    Examples
    --------
    Rank 0 steps after each gradient; rank 1 (a parameter server's worker, say) never does:

    >>> counts = SampleCounts()
    >>> counts.computed(0, 32); counts.computed(1, 32); counts.stepped(0)
    1
    >>> counts.computed(0, 32)  # rank 0's next gradient, not yet applied
    >>> counts.at(1), counts.total
    (64.0, 96.0)
    >>> counts.discarded(counts.at(1))
    32.0
    """

    def __init__(self) -> None:
        self._computed: dict[int, float] = {}
        self._steps: dict[int, int] = {}
        # A rank's samples computed by each of its own steps not yet passed by the global
        # step (older ones are forgotten: memory stays O(ranks) for long runs).
        self._commits: dict[int, dict[int, float]] = {}
        self._last_commit: dict[int, float] = {}  # what each rank's last step committed
        self._history: dict[int, dict[int, float]] = {}  # its last HISTORY steps' commits
        #: Whether rollbacks may come (a run with faults): the history is kept only then.
        self.keep_history = False
        self.total = 0.0
        #: Samples computed and dropped by a fault (a crashed rank's uncommitted gradients,
        #: a failed round's): part of the discarded samples, counted apart; and a crashed
        #: rank's held samples (:meth:`hold`), which no rank had counted as computed.
        self.lost = 0.0
        self._held: dict[int, float] = {}  # what each rank holds that nobody counted yet
        # at(k) of the last k asked, and each rank's part of it, brought up to date for the
        # ranks changed since (``_dirty``) rather than summed over every rank again: a run
        # asks at every rank's step, which would be O(ranks^2) a run. Samples are whole
        # numbers, so the sums are exact in any order (below 2**53); a fractional count
        # (``_exact`` false) sums every rank in order, as before.
        self._at: int | None = None
        self._at_total = 0.0
        self._parts: dict[int, float] = {}
        self._dirty: set[int] = set()
        self._exact = True

    def computed(self, rank: int, samples: float) -> None:
        self._computed[rank] = self._computed.get(rank, 0.0) + samples
        self.total += samples
        self._dirty.add(rank)
        # (an int is whole: only another number needs the test, once per gradient)
        if self._exact and type(samples) is not int and not float(samples).is_integer():
            self._exact = False

    def late(self, samples: float) -> None:
        """A gradient finished after the run stopped: computed, never counted."""
        self.total += samples

    def stepped(self, rank: int) -> int:
        """``rank`` applied an optimizer step: what it computed so far is committed. Returns
        the rank's count of steps."""
        j = self._steps[rank] = self._steps.get(rank, 0) + 1
        self._dirty.add(rank)
        committed = self._last_commit[rank] = self._computed.get(rank, 0.0)
        self._commits.setdefault(rank, {})[j] = committed
        if self.keep_history:
            history = self._history.setdefault(rank, {})
            history[j] = committed
            history.pop(j - HISTORY, None)  # a rollback goes back a round, not the whole run
        return j

    def steps_of(self, rank: int) -> int:
        """The optimizer steps ``rank`` has applied (as counted here)."""
        return self._steps.get(rank, 0)

    def lose(self, rank: int, steps: int = 0) -> float:
        """``rank`` dropped what it computed since its last step (it crashed, or its round
        failed) and, with ``steps``, its last ``steps`` steps too (a round rolled back: their
        samples are no longer committed). Returns the samples lost.

        Examples
        --------
        >>> counts = SampleCounts()
        >>> counts.keep_history = True
        >>> counts.computed(0, 32); _ = counts.stepped(0); counts.computed(0, 32)
        >>> counts.lose(0), counts.at(1), counts.lost, counts.total
        (32.0, 32.0, 32.0, 64.0)
        >>> counts.computed(0, 32); _ = counts.stepped(0); counts.lose(0, steps=1)
        32.0
        """
        if rank not in self._last_commit:
            # A rank that never steps (a parameter server's worker): what it computed counts
            # as computed, each gradient sent on at once; the one it was computing never
            # finished (it is not counted).
            return 0.0
        self._dirty.add(rank)
        computed = self._computed.get(rank, 0.0)
        committed = self._last_commit[rank]
        if steps:
            back = self._steps.get(rank, 0) - steps
            committed = self._history[rank].get(back, 0.0) if back > 0 else 0.0
            self._steps[rank] = max(back, 0)
            self._last_commit[rank] = committed
        dropped = computed - committed
        if dropped > 0:
            self._computed[rank] = committed
            self.lost += dropped
        return max(dropped, 0.0)

    def hold(self, rank: int, samples: float) -> None:
        """``rank`` holds ``samples`` samples it generated that no rank has counted yet (an
        actor's rollout until a learner has it), replacing what it held before."""
        if samples:
            self._held[rank] = samples
        else:
            self._held.pop(rank, None)

    def drop_held(self, rank: int) -> float:
        """``rank`` crashed: what it held is lost (it is in no count of computed samples: the
        rank that would have counted it never received it). Returns those samples.

        Examples
        --------
        >>> counts = SampleCounts()
        >>> counts.hold(3, 80); counts.drop_held(3), counts.drop_held(3), counts.lost
        (80, 0.0, 80.0)
        """
        held = self._held.pop(rank, 0.0)
        self.lost += held
        return held

    def restored(self, rank: int, step: int) -> None:
        """``rank`` took a state at optimizer step ``step`` (healed, or restored from a
        checkpoint): its own count of steps continues from there."""
        self._steps[rank] = step
        self._dirty.add(rank)
        committed = self._last_commit[rank] = self._computed.get(rank, 0.0)
        self._commits.setdefault(rank, {})[step] = committed

    def snapshot(self) -> dict[str, Any]:
        """What :meth:`rewind` goes back to (a checkpoint of the counts)."""
        return {
            "computed": dict(self._computed),
            "steps": dict(self._steps),
            "last": dict(self._last_commit),
            "total": self.total,
        }

    def snapshot_at(self, k: int) -> dict[str, Any]:
        """:meth:`snapshot` as of every rank's ``k``-th step, taken once the global step
        reached ``k``: what a faster rank computed since is left out, whatever order the
        ranks' events came in (a real run's checkpoint of step ``k``: each rank writes its
        own at its ``k``-th step).

        Examples
        --------
        >>> counts = SampleCounts()
        >>> counts.computed(0, 32); counts.computed(1, 32); _ = counts.stepped(0)
        >>> _ = counts.stepped(1); counts.computed(0, 32)  # rank 0's next, already done
        >>> mark = counts.snapshot_at(1)
        >>> mark["computed"], mark["total"]
        ({0: 32.0, 1: 32.0}, 64.0)
        """
        mark = self.snapshot()
        for rank, commits in self._commits.items():
            if k > 0 and k in commits and self._steps.get(rank, 0) >= k:
                mark["total"] -= mark["computed"][rank] - commits[k]
                mark["computed"][rank] = mark["last"][rank] = commits[k]
                mark["steps"][rank] = k
        return mark

    def rewind(self, snapshot: dict[str, Any]) -> float:
        """Go back to ``snapshot`` (every rank restarted from a checkpoint): what was
        computed since is lost; returns those samples.

        Examples
        --------
        >>> counts = SampleCounts()
        >>> counts.computed(0, 32); _ = counts.stepped(0); mark = counts.snapshot()
        >>> counts.computed(0, 32); _ = counts.stepped(0)
        >>> counts.rewind(mark), counts.at(1), counts.total
        (32.0, 32.0, 64.0)
        """
        lost = self.total - snapshot["total"]
        self._computed = dict(snapshot["computed"])
        self._steps = dict(snapshot["steps"])
        self._last_commit = dict(snapshot["last"])
        self._commits = {
            r: {j: c} for r, c in self._last_commit.items() if (j := self._steps.get(r))
        }
        self.lost += lost
        self._at = None
        return lost

    def at(self, k: int) -> float:
        """Samples at global step ``k`` (see the module docstring).

        Examples
        --------
        Asked again, only the ranks changed since are looked at; the sum is the same:

        >>> counts = SampleCounts()
        >>> for rank in range(3): counts.computed(rank, 32)
        >>> counts.at(0), counts.stepped(1), counts.at(1)
        (96.0, 1, 96.0)
        >>> counts.computed(1, 32); counts.at(1), counts.at(0)
        (96.0, 128.0)
        """
        if not self._exact or self._at != k:
            # Every rank, in order, one addition at a time (as before; not sum(), whose
            # float sum is compensated from Python 3.12).
            parts = {rank: self._part(rank, k) for rank in self._computed}
            total = 0.0
            for part in parts.values():
                total += part
            if self._exact:
                self._at, self._dirty, self._parts, self._at_total = k, set(), parts, total
            return total
        for rank in self._dirty:
            part = self._part(rank, k)
            self._at_total += part - self._parts.get(rank, 0.0)
            self._parts[rank] = part
        self._dirty.clear()
        return self._at_total

    def _part(self, rank: int, k: int) -> float:
        """``rank``'s samples at global step ``k``."""
        computed = self._computed.get(rank)
        if computed is None:
            return 0.0
        if self._steps.get(rank, 0) >= k and k > 0:
            return self._commits[rank].get(k, computed)
        return computed

    def forget(self, before: int) -> None:
        """Commits of steps before ``before`` are no longer needed."""
        if self._at is not None and self._at < before:
            self._at = None
        for commits in self._commits.values():
            for old in [j for j in commits if j < before]:
                del commits[old]

    def discarded(self, counted: float) -> float:
        """Samples computed but not in ``counted`` (the run's count at its end)."""
        return self.total - counted
