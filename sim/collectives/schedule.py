"""Collective schedules (steps of point-to-point messages) and their execution on a network.

A :class:`Schedule` is a per-rank program shared by ``n`` participants (local indices
``0..n-1``): a sequence of :class:`Step` objects, each a batch of messages. A rank enters a
step only after all its sends and receives of its earlier steps have completed; on entering,
it starts its sends of that step at once. Receives never delay a sender (eager messages), and
a rank skips the steps in which it has nothing to do. So a ring all-reduce rank forwards a
chunk as soon as it has received the previous one, and a slow link delays only the ranks that
depend on it, exactly as the real algorithm does.

:class:`CollectiveRun` executes schedules ("channels", run concurrently, like NCCL's) on a
:class:`sim.network.Network` with no SimPy process per message: message completions arrive in
batches, and every bookkeeping step is a numpy operation over the batch. Lock-step rounds
(``pace="step"``) inject each step's routed flows (:meth:`Step.flows`) as they are.

A round that finds no live route between two of its ranks (links down, see
:meth:`sim.network.Network.set_link`) is held by the network (:meth:`Network.hold
<sim.network.Network.hold>`): it starts once a link comes back, or fails the whole collective
with the :class:`~sim.routing.LinkFailure` (:meth:`CollectiveRun.fail`: its event fails and
its flows stop) once its ranks have been cut off the network's ``detect`` seconds.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim.flows import FlowBatch
from sim.routing import LinkFailure, Router

__all__ = ["PACES", "Chain", "CollectiveRun", "Schedule", "Step"]

#: How ranks move through a schedule: each on its own (exact), or all together (lock-step).
PACES = ("rank", "step")


def _kept(memo: Any, members: np.ndarray, router: Router, channel: int) -> FlowBatch | None:
    """The batch kept as ``(members, router, channel, epoch, batch)`` if it is still the one
    to inject (the same members and router objects, channel, and no route reset since)."""
    if (
        memo is not None
        and memo[0] is members
        and memo[1] is router
        and memo[2] == channel
        and memo[3] == router.epoch
    ):
        return memo[4]
    return None


class Step:
    """One batch of messages between local ranks: ``src[i]`` sends ``nbytes[i]`` to ``dst[i]``.

    Examples
    --------
    >>> s = Step(3, [0, 1], [1, 2], [5.0, 5.0])
    >>> s.ops.tolist(), s.size
    ([1, 2, 1], 2)
    """

    def __init__(
        self,
        n: int,
        src: Sequence[int] | np.ndarray,
        dst: Sequence[int] | np.ndarray,
        nbytes: Sequence[float] | np.ndarray | float,
    ) -> None:
        self.src = np.asarray(src, dtype=np.int64)
        self.dst = np.asarray(dst, dtype=np.int64)
        self.nbytes = np.broadcast_to(np.asarray(nbytes, dtype=float), self.src.shape).copy()
        self.size = self.src.size
        #: Sends plus receives of each rank in this step; 0 means the rank skips the step.
        self.ops = np.bincount(self.src, minlength=n) + np.bincount(self.dst, minlength=n)
        self._order = np.argsort(self.src, kind="stable")
        self._ptr = np.searchsorted(self.src[self._order], np.arange(n + 1))
        self._all_send = self.size > 0 and bool((np.diff(self._ptr) > 0).all())
        self._touched: np.ndarray | None = None
        self._flows: tuple[np.ndarray, Router, int, int, FlowBatch] | None = None
        self._by_sender: tuple[np.ndarray, Router, int, int, FlowBatch] | None = None
        self._position: np.ndarray | None = None

    @property
    def touched(self) -> np.ndarray:
        """The ranks that send or receive in this step."""
        if self._touched is None:
            self._touched = np.flatnonzero(self.ops)
        return self._touched

    def flows(self, members: np.ndarray, router: Router, channel: int = 0) -> FlowBatch:
        """This step's messages as flows between network ranks ``members[i]``, on the
        connections of ``channel`` (``ecmp`` routing hashes it with the ranks).

        Kept for the next call with the same ``members`` and ``router`` objects: the next
        collective of the same cached plan injects it without routing anything (unless the
        router's routes were reset since, by a link fault: :attr:`Router.epoch`).
        """
        batch = _kept(self._flows, members, router, channel)
        if batch is None:
            batch = FlowBatch(router, members[self.src], members[self.dst], self.nbytes, channel)
            self._flows = (members, router, channel, router.epoch, batch)
        return batch

    @property
    def all_sends(self) -> np.ndarray:
        """Every message, by sender (what :meth:`sends_of` returns for all ranks at once)."""
        return self._order

    def flows_by_sender(self, members: np.ndarray, router: Router, channel: int = 0) -> FlowBatch:
        """Like :meth:`flows`, the messages in :attr:`all_sends` order: the batch per-rank
        progress injects when every rank enters the step at once (kept the same way)."""
        batch = _kept(self._by_sender, members, router, channel)
        if batch is None:
            o = self._order
            batch = FlowBatch(
                router, members[self.src[o]], members[self.dst[o]], self.nbytes[o], channel
            )
            self._by_sender = (members, router, channel, router.epoch, batch)
        return batch

    def kept_by_sender(
        self, members: np.ndarray, router: Router, channel: int = 0
    ) -> FlowBatch | None:
        """The batch :meth:`flows_by_sender` keeps, if it is still the one to inject (else
        None: nothing is routed here, so route ids keep their order of first appearance)."""
        return _kept(self._by_sender, members, router, channel)

    @property
    def position(self) -> np.ndarray:
        """Each message's position in :attr:`all_sends` (its place in the batch by sender)."""
        if self._position is None:
            self._position = np.empty_like(self._order)
            self._position[self._order] = np.arange(self.size)
        return self._position

    def sends_of(self, ranks: np.ndarray, n: int) -> np.ndarray:
        """Indices of the messages sent by ``ranks`` (a duplicate-free array)."""
        if ranks.size == n and self._all_send:
            return self._order
        start, stop = self._ptr[ranks], self._ptr[ranks + 1]
        counts = stop - start
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        offsets = np.repeat(start - np.cumsum(counts) + counts, counts)
        return self._order[offsets + np.arange(total)]


class Schedule:
    """A per-rank program of ``n_steps`` steps over ``n`` local ranks, produced lazily.

    ``step(s)`` may return the same :class:`Step` object for many ``s`` (a ring's steps are
    all alike), which is what keeps a 4096-rank schedule small.

    Examples
    --------
    >>> one = Step(2, [0], [1], 8.0)
    >>> Schedule(2, 3, lambda s: one).step(2) is one
    True
    """

    def __init__(self, n: int, n_steps: int, step: Callable[[int], Step]) -> None:
        self.n, self.n_steps, self.step = n, n_steps, step

    @classmethod
    def of(cls, n: int, steps: Sequence[Step]) -> Schedule:
        """A schedule from an explicit list of steps."""
        steps = list(steps)
        return cls(n, len(steps), steps.__getitem__)


class Chain(Schedule):
    """Schedules run one after the other by every rank (e.g. reduce-scatter then all-gather).

    Examples
    --------
    >>> a = Schedule.of(2, [Step(2, [0], [1], 1.0)])
    >>> b = Schedule.of(2, [Step(2, [1], [0], 2.0), Step(2, [0], [1], 3.0)])
    >>> c = Chain([a, b])
    >>> c.n_steps, c.step(2).nbytes.tolist()
    (3, [3.0])
    """

    def __init__(self, parts: Sequence[Schedule]) -> None:
        n = parts[0].n if parts else 0
        parts = [p for p in parts if p.n_steps > 0]
        self._starts = np.cumsum([0] + [p.n_steps for p in parts]).tolist()
        self._parts = parts
        super().__init__(n, self._starts[-1], self._step)

    def _step(self, s: int) -> Step:
        i = bisect_right(self._starts, s) - 1
        return self._parts[i].step(s - self._starts[i])


class _Lockstep:
    """Lock-step execution of one schedule: a round starts when the previous one is delivered.

    Only one round is ever in flight, so a round's flows are tagged by their position in it,
    and the round's routed flows are reused from the step (:meth:`Step.flows`).
    """

    def __init__(self, run: CollectiveRun, schedule: Schedule, channel: int = 0) -> None:
        self.run, self.schedule, self.channel = run, schedule, channel
        self._base = np.full(schedule.n, float(run.net.env.now))
        # Who finished a round when, oldest first: (ranks, time) for a whole round, (message
        # indices, time, step) for part of one; folded into each rank's
        # last time only when asked (:attr:`finished`), so a round of 131,072 ranks costs
        # no per-rank pass. An entry that writes the same ranks as an earlier one (the same
        # arrays: a ring's rounds repeat their classes) replaces it, since the later write
        # wins: a ring's log stays a few entries long instead of being folded every few
        # rounds. Keyed by the arrays' ids (held by the entries, so the ids stay theirs).
        self._log: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self._logged = 0  # ranks in partial entries of the log
        self.s = -1
        self.step: Step | None = None
        self.left = 0  # messages of the current round not yet delivered
        self.owner = run.net.register(self.on_done, run)

    def start(self) -> None:
        self.next_round()

    def next_round(self) -> None:
        run = self.run
        while True:
            self.s += 1
            if self.s >= self.schedule.n_steps:
                run.net.unregister(self.owner)
                run.channel_done()
                return
            step = self.schedule.step(self.s)
            if step.size:
                self.step, self.left = step, step.size
                try:
                    batch = step.flows(run.members, run.net.router, self.channel)
                except LinkFailure as exc:
                    self.hold(exc)
                    return
                run.net.inject(batch, self.owner, batch.index)
                return

    def hold(self, exc: LinkFailure) -> None:
        """The current round found no live route: it waits for one (or fails the run)."""
        run, step = self.run, self.step
        assert step is not None
        members = tuple(run.members.tolist())
        run.net.hold(exc, self.retry, run, members)

    def retry(self) -> None:
        """Start the current round, held for want of a live route, again."""
        run, step = self.run, self.step
        assert step is not None
        try:
            batch = step.flows(run.members, run.net.router, self.channel)
        except LinkFailure as exc:
            self.hold(exc)
            return
        run.net.inject(batch, self.owner, batch.index)

    @property
    def finished(self) -> np.ndarray:
        """Each rank's last send or receive so far (the start where none yet): the rounds'
        times folded in order, the latest written last."""
        finished = self._base.copy()
        for entry in self._log.values():
            if len(entry) == 2:  # a whole round: the ranks it touched
                finished[entry[0]] = entry[1]
            else:
                tags, at, step = entry
                finished[step.src[tags]] = at
                finished[step.dst[tags]] = at
        return finished

    def on_done(self, tags: np.ndarray) -> None:
        step = self.step
        assert step is not None, "a round's flows finish only after next_round injected them"
        now = self.run.net.env.now
        log = self._log
        if tags.size == step.size:
            touched = step.touched
            key: tuple[int, ...] = (id(touched),)
            log.pop(key, None)  # re-inserted last
            log[key] = (touched, now)
        else:  # the messages ``tags`` of ``step``: their ranks are looked up when folded
            key = (id(tags), id(step))
            if log.pop(key, None) is not None:
                self._logged -= tags.size
            log[key] = (tags, now, step)
            self._logged += tags.size
            if self._logged > 8 * self.schedule.n:  # partial rounds: fold (amortised O(1))
                self._base, self._logged = self.finished, 0
                log.clear()
        self.left -= tags.size
        if self.left == 0:
            self.next_round()


class _Channel:
    """Per-rank execution of one schedule: each rank's current step and its unfinished ops.

    Where every rank enters a step at once and each of them sends in it, the step is *in
    step*: its messages go out as the step's one batch, by sender (:meth:`Step.flows_by_sender`,
    exactly what per-rank entry injects), tagged by position so that the network may hold it
    as classes (:mod:`sim.flow_classes`), under an owner of their own (:meth:`on_round`). If
    they are all delivered at one instant, every rank completes the step then and the next is
    entered the same way, with no per-rank pass: a round of 131,072 ranks costs what one
    rank's does. A partial delivery turns the per-rank state (``current`` and the step's ops
    left) back into arrays, and the ranks go on one by one from there, as they always did.
    """

    def __init__(self, run: CollectiveRun, schedule: Schedule, channel: int = 0) -> None:
        self.run, self.schedule, self.n, self.channel = run, schedule, schedule.n, channel
        self.current = np.full(self.n, -1, dtype=np.int64)
        self.finished = np.full(self.n, float(run.net.env.now))
        self.n_finished = 0
        # Live steps: index -> [Step, first tag, ops left per rank (None: the step is in
        # step and nothing of it was delivered, so it is the step's ``ops``)].
        self.live: dict[int, list[Any]] = {}
        self.bases = np.empty(0, dtype=np.int64)  # first tag of each live step, ascending
        self.base_steps: list[int] = []
        self.next_tag = 0
        self._all = np.arange(self.n)
        self._keep = 4  # live steps kept before :meth:`forget` looks for passed ones
        # The last step entered in step: (index, Step, first tag); ``in_step``: whether
        # every rank is still in it with nothing delivered (``current`` is then stale).
        self._round: tuple[int, Step, int] | None = None
        self.in_step = False
        # Registered first: where a round's last messages finish at the instant later
        # steps' do, the network tells owners in id order, so the older step goes first,
        # as within one owner's call.
        self.round_owner = run.net.register(self.on_round, run)
        self.owner = run.net.register(self.on_done, run)

    def start(self) -> None:
        self.advance(self._all, -1)

    def enter_in_step(self, s: int) -> bool:
        """Every rank enters step ``s`` at once: send its messages as one batch tagged by
        position, if every rank sends in it (else, or where a route is missing, False: the
        per-rank path handles it)."""
        step = self.schedule.step(s)
        if not step._all_send or s in self.live:
            return False
        net = self.run.net
        try:
            batch = step.flows_by_sender(self.run.members, net.router, self.channel)
        except LinkFailure:
            return False  # the per-rank path routes it again and holds it
        base = self.next_tag
        self.next_tag += step.size
        # Every earlier step is delivered (every rank completed it): only ``s`` is live.
        self.live = {s: [step, base, None]}
        self.bases = np.array([base], dtype=np.int64)
        self.base_steps = [s]
        self._round, self.in_step = (s, step, base), True
        net.inject(batch, self.round_owner, batch.index)
        return True

    def leave_step(self) -> None:
        """Back to per-rank state: every rank is in the round's step, none of its ops done."""
        assert self._round is not None
        s, step, _ = self._round
        self.in_step = False
        self.current.fill(s)
        self.live[s][2] = step.ops.copy()

    def on_round(self, tags: np.ndarray) -> None:
        """Messages of the round entered in step finished (``tags``: their positions in its
        batch, by sender)."""
        assert self._round is not None, "a round's flows finish only after it was entered"
        s, step, base = self._round
        if self.in_step and tags.size == step.size:  # all of it: every rank completes s
            self.in_step = False
            self.advance(self._all, s)
            return
        if self.in_step:
            self.leave_step()
        self.on_done(base + step.all_sends[tags])

    def materialise(self, s: int) -> list[Any]:
        entry = self.live.get(s)
        if entry is None:
            step = self.schedule.step(s)
            entry = self.live[s] = [step, self.next_tag, step.ops.copy()]
            self.bases = np.append(self.bases, self.next_tag)
            self.base_steps.append(s)
            self.next_tag += step.size
        return entry

    def advance(self, ranks: np.ndarray, s: int) -> None:
        """``ranks`` have completed step ``s``: move each to its next step with work."""
        if self.run.failed:  # an earlier group of the same completions failed it
            return
        n_steps = self.schedule.n_steps
        while ranks.size:
            s += 1
            if s >= n_steps:
                self.finish(ranks)
                return
            if ranks.size == self.n and self.enter_in_step(s):
                return
            step, base, left = self.materialise(s)
            self.current[ranks] = s
            busy = step.ops[ranks] > 0
            movers = ranks[busy]
            if movers.size:
                msgs = step.sends_of(movers, self.n)
                if msgs.size:
                    net, m = self.run.net, self.run.members
                    try:
                        if msgs is step.all_sends:  # every rank at once: routed before
                            flows = step.flows_by_sender(m, net.router, self.channel)
                        elif (
                            whole := step.kept_by_sender(m, net.router, self.channel)
                        ) is not None:
                            # Some ranks: their part of the batch routed before.
                            flows = whole.part(step.position[msgs], m[step.src[msgs]])
                        else:
                            flows = FlowBatch(
                                net.router,
                                m[step.src[msgs]],
                                m[step.dst[msgs]],
                                step.nbytes[msgs],
                                self.channel,
                            )
                    except LinkFailure as exc:
                        self.hold(exc, step, msgs, base)
                        if self.run.failed:
                            return
                    else:
                        net.inject(flows, self.owner, base + msgs)
                # A rank whose only ops here are receives that already arrived moves on too.
                ranks = np.concatenate((ranks[~busy], movers[left[movers] == 0]))

    def hold(self, exc: LinkFailure, step: Step, msgs: np.ndarray, base: int) -> None:
        """Messages ``msgs`` of ``step`` found no live route: they wait for one (or fail the
        run); the ranks that do not need them go on."""
        run = self.run
        retry = functools.partial(self.retry, step, msgs, base)
        run.net.hold(exc, retry, run, tuple(run.members.tolist()))

    def retry(self, step: Step, msgs: np.ndarray, base: int) -> None:
        """Send messages ``msgs`` of ``step``, held for want of a live route, again."""
        net, m = self.run.net, self.run.members
        try:
            flows = FlowBatch(
                net.router, m[step.src[msgs]], m[step.dst[msgs]], step.nbytes[msgs], self.channel
            )
        except LinkFailure as exc:
            self.hold(exc, step, msgs, base)
            return
        net.inject(flows, self.owner, base + msgs)

    def on_done(self, tags: np.ndarray) -> None:
        if tags.min() >= self.bases[-1]:
            groups = [(len(self.base_steps) - 1, tags)]
        else:
            which = np.searchsorted(self.bases, tags, side="right") - 1
            groups = [(k, tags[which == k]) for k in np.unique(which).tolist()]
        for k, part in groups:
            s = self.base_steps[k]
            step, base, left = self.live[s]
            idx = part - base
            touched = np.concatenate((step.src[idx], step.dst[idx]))
            # Only the touched ranks' counts (not a pass over every rank: a drifting ring
            # finishes a few messages per event).
            hit = np.unique(touched)
            if hit.size == touched.size:
                left[touched] -= 1
            else:
                np.subtract.at(left, touched, 1)
            ready = hit[(self.current[hit] == s) & (left[hit] == 0)]
            if ready.size:
                self.advance(ready, s)
        if len(self.base_steps) > self._keep:  # amortised: a pass over the ranks per doubling
            self.forget()
            self._keep = max(4, 2 * len(self.base_steps))

    def forget(self) -> None:
        """Drop steps that every rank has passed, so long schedules stay small in memory."""
        low = int(self.current.min())
        drop = 0
        while drop < len(self.base_steps) - 1 and self.base_steps[drop] < low:
            del self.live[self.base_steps[drop]]
            drop += 1
        if drop:
            del self.base_steps[:drop]
            self.bases = self.bases[drop:]

    def finish(self, ranks: np.ndarray) -> None:
        self.current[ranks] = self.schedule.n_steps
        self.finished[ranks] = self.run.net.env.now
        self.n_finished += ranks.size
        if self.n_finished == self.n:
            self.run.net.unregister(self.round_owner)
            self.run.net.unregister(self.owner)
            self.run.channel_done()


class CollectiveRun:
    """Runs ``channels`` (schedules over the same local ranks) concurrently on ``net``.

    ``members[i]`` is the network rank of local rank ``i``. ``pace="rank"`` runs the per-rank
    programs (see the module docstring); ``pace="step"`` runs bulk-synchronous rounds instead:
    step ``s+1`` starts everywhere when all of step ``s`` has been delivered (fewer, larger
    batches: faster to simulate, and identical on homogeneous fabrics for ring algorithms).
    When every channel is complete, ``event`` succeeds with ``{rank: finish time}``, a rank's
    finish being its last send or receive. ``failed`` turns True when a fault ends it.
    """

    def __init__(
        self,
        net: Any,
        channels: Sequence[Schedule],
        members: np.ndarray,
        event: Any,
        pace: str = "step",
    ) -> None:
        self.net, self.members, self.event, self.pace = net, members, event, pace
        self.failed = False
        kind = _Lockstep if pace == "step" else _Channel
        # A channel's messages go on connections of their own (NCCL opens each channel's):
        # ``ecmp`` routing hashes the channel's index with the ranks.
        self.channels = [kind(self, c, i) for i, c in enumerate(channels) if c.n_steps > 0]
        self.pending = len(self.channels)
        if not self.pending:
            event.succeed({int(r): net.env.now for r in members.tolist()})
            return
        for channel in list(self.channels):
            if self.failed:
                return
            channel.start()

    def fail(self, exc: Exception) -> None:
        """End the collective: its event fails with ``exc`` and its flows stop (the network
        removes them)."""
        if not self.failed:
            self.net.fail_collective(self, exc)

    def channel_done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            if len(self.channels) == 1:
                times = self.channels[0].finished
            else:
                times = np.max(np.stack([c.finished for c in self.channels]), axis=0)
            self.event.succeed(dict(zip(self.members.tolist(), times.tolist(), strict=True)))
