"""Samples of applied gradients: counted alike whatever the ranks' interleaving."""

import itertools
import random

import torch

from strategies.counts import SampleCounts
from strategies.events import Computed, Settled, Stepped
from strategies.ledger import Ledger
from strategies.owners import OwnerStates
from strategies.rules import global_step


def _rank_events(rank, gradients, extra):
    """A rank that computes and applies ``gradients`` gradients, then computes ``extra``
    more that it never applies (the run stopped)."""
    events = []
    for _ in range(gradients):
        events += [("computed", rank), ("stepped", rank)]
    return events + [("computed", rank)] * extra


def _interleavings(ranks, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        queues = [list(r) for r in ranks]
        merged = []
        while any(queues):
            q = rng.choice([q for q in queues if q])
            merged.append(q.pop(0))
        yield merged


def test_samples_at_each_global_step_do_not_depend_on_how_ranks_interleave():
    ranks = [_rank_events(r, 5, extra=r % 2) for r in range(3)]
    seen = set()
    for merged in _interleavings(ranks, seed=0, count=200):
        counts = SampleCounts()
        for kind, rank in merged:
            counts.computed(rank, 32) if kind == "computed" else counts.stepped(rank)
        seen.add(tuple(counts.at(k) for k in range(1, 6)))
    # What each rank applied by its own k-th step: k gradients of 32, three ranks.
    assert seen == {tuple(3 * 32 * k for k in range(1, 6))}


def test_a_rank_that_never_steps_counts_all_it_computed():
    counts = SampleCounts()
    counts.computed(1, 32)
    counts.computed(1, 32)  # a parameter server's worker: its pushes are applied elsewhere
    counts.computed(0, 0)
    counts.stepped(0)
    assert counts.at(1) == 64 and counts.discarded(counts.at(1)) == 0


def test_the_ledger_counts_samples_and_discards_what_comes_after_the_stop():
    ledger = Ledger([0, 1], "mean", steps=1, eval_every=1, evaluate=lambda p: {"loss": 0.0})
    ledger.start({0: torch.zeros(1), 1: torch.zeros(1)})
    for event in [
        Computed(0.1, 0, 32),
        Computed(0.1, 1, 32),
        Stepped(0.2, 0, 0, torch.ones(1)),
        Computed(0.3, 0, 32),  # rank 0's next gradient, before rank 1's step is stamped
        Stepped(0.4, 1, 0, torch.ones(1)),  # global step 1: the last; the run stops
        Computed(0.5, 1, 32),  # after the stop
        Settled(0.6, 0, torch.ones(1)),  # ignored: stopped
    ]:
        ledger.record(event)
    assert ledger.stop_reason == "steps" and ledger.samples == 64
    assert ledger.discarded_samples == 64
    assert ledger.now() == 0.4  # the ledger's time stops with it
    assert [r["samples"] for r in ledger.rows if r["kind"] == "step"] == [64.0]


def test_the_owners_slowest_count_is_the_rules_global_step():
    rng = random.Random(1)
    owners = OwnerStates([0, 1, 2, 3], "mean")
    owners.start({r: torch.zeros(1) for r in range(4)})
    for rank in itertools.islice((rng.randrange(4) for _ in itertools.count()), 300):
        owners.stepped(rank, torch.zeros(1))
        assert owners.slowest == global_step(owners.counts.values())


def _samples_at(counts, k):
    """The module docstring's rule, summed over every rank (what ``at`` must equal)."""
    total = 0.0
    for rank, computed in counts._computed.items():
        steps = counts._steps.get(rank, 0)
        total += counts._commits[rank].get(k, computed) if steps >= k > 0 else computed
    return total


def test_samples_asked_after_each_event_match_the_full_sum():
    rng = random.Random(1)
    counts = SampleCounts()
    counts.keep_history = True
    for _ in range(3000):
        rank, what = rng.randrange(6), rng.random()
        if what < 0.45:
            counts.computed(rank, rng.choice([1, 32, 7]))
        elif what < 0.85:
            counts.stepped(rank)
        elif what < 0.9:
            counts.lose(rank, rng.choice([0, 1]))
        elif what < 0.93:
            counts.restored(rank, rng.randrange(1, 5))
        elif what < 0.95:
            counts.rewind(counts.snapshot_at(rng.randrange(0, 4)))
        elif what < 0.97:
            counts.forget(rng.randrange(0, 4))
        k = rng.randrange(0, 6)
        assert counts.at(k) == _samples_at(counts, k)


def test_samples_asked_at_each_rank_step_look_only_at_changed_ranks(monkeypatch):
    counts = SampleCounts()
    for rank in range(1000):
        counts.computed(rank, 32)
    looked = []
    part = SampleCounts._part
    monkeypatch.setattr(
        SampleCounts, "_part", lambda self, r, k: looked.append(r) or part(self, r, k)
    )
    assert counts.at(1) == 32000.0 and len(looked) == 1000  # a new global step: every rank
    for rank in range(1000):  # each rank steps, the ledger asking after each: O(1) each
        counts.stepped(rank)
        counts.computed(rank, 32)
        assert counts.at(1) == 32000.0  # its next gradient is past step 1
    assert len(looked) == 2000
