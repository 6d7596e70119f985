"""Flows in flight: routed batches and the pending/active flow table."""

from __future__ import annotations

import math

import numpy as np
import pytest

import topologies
from sim.flows import DUE, FlowBatch, FlowTable
from sim.routing import Router


def star_router() -> Router:
    return Router(topologies.star(4, bandwidth=2.0, latency=0.5))


def batch_of(r: Router, src, dst, nbytes) -> FlowBatch:
    return FlowBatch(r, np.array(src), np.array(dst), np.array(nbytes, dtype=float))


def test_flow_batch_precomputes_what_the_network_needs_per_flow():
    r = Router(topologies.star(4, bandwidth=2.0, latency=0.5))
    batch = FlowBatch(r, np.array([0, 1, 2, 3]), np.array([1, 1, 3, 0]), np.array([4, 0, 2, 1]))
    assert batch.size == 4 and batch.index.tolist() == [0, 1, 2, 3]
    assert (
        batch.routes.tolist() == r.routes(np.array([0, 1, 2, 3]), np.array([1, 1, 3, 0])).tolist()
    )
    assert batch.latency.tolist() == [1.0, 0.0, 1.0, 1.0] and batch.min_latency == 0.0
    # Delivered at the end of their latency: empty messages and host-to-itself routes.
    assert batch.instant.tolist() == [False, True, False, False]
    assert batch.nbytes.dtype == float and batch.per_rank.tolist() == [4.0, 0.0, 2.0, 1.0]
    assert batch.total == 7.0
    for array in (batch.routes, batch.latency, batch.nbytes, batch.instant, batch.per_rank):
        assert not array.flags.writeable


def test_an_empty_flow_batch():
    r = Router(topologies.star(2))
    batch = FlowBatch(r, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    assert batch.size == 0 and batch.total == 0.0 and batch.min_latency == float("inf")


def test_a_batch_goes_pending_then_active_then_finished_as_a_whole():
    r = star_router()
    table = FlowTable()
    table.add(batch_of(r, [0, 1], [2, 3], [4.0, 4.0]), 3, np.array([10, 11]), 1.0)
    assert table.first_due == 2.0  # two links of 0.5 s
    finished = []
    assert table.activate(2.0, finished) and finished == []
    assert table.first_due == math.inf and table.active[3].tolist() == [1.0, 1.0]
    table.set_rates(np.array([2.0, 1.0]))
    assert table.next_event(2.0) == 4.0  # the faster flow: 4 bytes at 2 B/s
    table.progress(2.0)
    assert table.active[1].tolist() == [0.0, 2.0]
    assert table.complete(4.0, finished)
    ((owners, tags, sole),) = finished
    assert owners.tolist() == [3] and tags.tolist() == [10] and sole == 3
    assert table.active[0].size == 1


def test_partial_activation_keeps_the_rest_pending_with_exact_bounds():
    r = star_router()
    table = FlowTable()
    table.add(batch_of(r, [0], [1], [1.0]), 1, np.array([0]), 0.0)  # due at 1.0
    table.add(batch_of(r, [2], [3], [1.0]), 2, np.array([0]), 0.5)  # due at 1.5
    assert table.first_due == 1.0
    assert table.activate(1.0, [])
    assert table.pending[0].tolist() == [1.5] and table.first_due == 1.5
    assert table.active[4].tolist() == [1]
    assert table.activate(1.5, []) and table.active[4].tolist() == [1, 2]
    assert table.first_due == math.inf


def test_empty_messages_finish_at_the_end_of_their_latency():
    r = star_router()
    table = FlowTable()
    table.add(batch_of(r, [0, 1], [2, 3], [0.0, 5.0]), 4, np.array([7, 8]), 0.0)
    finished = []
    assert table.activate(1.0, finished)
    assert [(o.tolist(), t.tolist(), s) for o, t, s in finished] == [([4], [7], 4)]
    assert table.active[5].tolist() == [8]
    only_empty = FlowTable()
    only_empty.add(batch_of(r, [0], [2], [0.0]), 4, np.array([1]), 0.0)
    assert not only_empty.activate(1.0, [])  # nothing to transfer, no rates to solve


def test_owners_of_mixed_batches_are_not_assumed_to_be_one():
    r = star_router()
    table = FlowTable()
    table.add(batch_of(r, [0], [1], [1.0]), 1, np.array([0]), 0.0)
    table.add(batch_of(r, [2], [3], [1.0]), 2, np.array([0]), 0.0)
    finished = []
    table.activate(1.0, finished)
    table.set_rates(np.array([1.0, 1.0]))
    table.progress(1.0)
    assert table.complete(2.0, finished)
    ((owners, _, sole),) = finished
    assert owners.tolist() == [1, 2] and sole == -1


def test_a_latency_phase_ending_within_float_noise_of_the_clock_has_ended():
    r = star_router()
    table = FlowTable()
    table.add(batch_of(r, [0], [1], [1.0]), 0, np.array([0]), 0.0)  # due at 1.0
    assert table.first_due <= (1.0 - 1e-16) * DUE
    assert table.activate(1.0 - 1e-16, [])


def test_shared_arrays_are_never_written():
    r = star_router()
    batch = batch_of(r, [0], [1], [4.0])
    table = FlowTable()
    for start in (0.0, 10.0):  # the same batch twice: its bytes must still be 4
        table.add(batch, 0, batch.index, start)
        table.activate(start + 1.0, [])
        table.set_rates(np.array([2.0]))
        table.progress(2.0)
        assert table.complete(start + 3.0, finished := [])
        assert len(finished) == 1
    assert batch.nbytes.tolist() == [4.0]
    with pytest.raises(ValueError, match="read-only"):
        batch.nbytes[0] = 1.0


def test_part_of_a_batch_is_the_batch_of_those_messages():
    # ecmp on a fat tree: routes hashed per pair; once the whole batch is routed, a part's
    # route ids (and all that follows from them) are what routing those messages gives.
    r = Router(topologies.fat_tree(4, bandwidth=1e9, latency=1e-6))
    src = np.array([0, 3, 5, 9, 14, 2])
    dst = np.array([15, 4, 5, 1, 7, 11])
    nbytes = np.array([8.0, 0.0, 3.0, 5.0, 2.0, 9.0])
    whole = FlowBatch(r, src, dst, nbytes, 2)
    pos = np.array([4, 1, 2])
    part = whole.part(pos, src[pos])
    alone = FlowBatch(r, src[pos], dst[pos], nbytes[pos], 2)
    for name in ("routes", "nbytes", "latency", "instant", "per_rank", "index"):
        assert getattr(part, name).tolist() == getattr(alone, name).tolist(), name
        assert not getattr(part, name).flags.writeable
    for name in ("size", "total", "min_latency", "max_latency", "any_instant"):
        assert getattr(part, name) == getattr(alone, name), name
    assert part.instant.tolist() == [False, True, True]
    assert whole.part(np.array([], dtype=np.int64), src[:0]).size == 0
