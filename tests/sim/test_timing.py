"""One-shot timings leave the caller's objects out of the garbage collector's passes."""

from __future__ import annotations

import gc

import topologies
from sim.network import Network
from sim.timing import collective_time


def test_collective_time_runs_with_the_callers_objects_frozen_and_hands_them_back(monkeypatch):
    # A 4,096-rank ring on fat_tree(26) spent half its routing in two full collections
    # walking the imports and the topology; they are frozen while the collective runs.
    seen = []
    collective = Network.collective

    def watched(self, *args, **kwargs):
        seen.append(gc.get_freeze_count())
        return collective(self, *args, **kwargs)

    monkeypatch.setattr(Network, "collective", watched)
    assert gc.get_freeze_count() == 0
    g = topologies.ring(4, bandwidth=1e9, latency=1e-6)
    t = collective_time(g, "all_reduce", 8e6, algorithm="ring")
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
    assert round(t, 9) == round(2 * 3 * (1e-6 + 8e6 / (4 * 1e9)), 9)


def test_a_caller_that_froze_its_own_heap_is_left_as_it_was():
    gc.freeze()
    try:
        collective_time(topologies.ring(3), "all_reduce", 1e3, algorithm="ring")
        assert gc.get_freeze_count() > 0  # not handed back: not ours to hand back
    finally:
        gc.unfreeze()
