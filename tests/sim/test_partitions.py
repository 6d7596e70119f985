"""The primary part of a partitioned network (sim.partitions), against hand-drawn cuts."""

from __future__ import annotations

import simpy

import topologies
from sim.partitions import Partitions


def _parts(graph, detect: float = 1.0) -> tuple[simpy.Environment, Partitions]:  # type: ignore[no-untyped-def]
    env = simpy.Environment()
    hosts = dict(enumerate(topologies.rank_nodes(graph)))
    return env, Partitions(env, graph, hosts, detect=detect)


def test_the_largest_part_is_primary_and_a_tie_goes_to_the_lowest_rank() -> None:
    # A ring of 6 cut at two links: {1, 2} and {3, 4, 5, 0}.
    env, parts = _parts(topologies.ring(6))
    parts.link((1, 0), 0.0)
    parts.link((2, 3), 0.0)
    env.run(until=1.0)
    assert parts.primary(range(6)) == frozenset({3, 4, 5, 0})
    # Only the live ranks count: without 4 and 5 the parts tie at two, {0, 3} vs {1, 2}.
    assert parts.primary((0, 1, 2, 3)) == frozenset({0, 3})
    assert parts.primary((1, 2, 3)) == frozenset({1, 2})


def test_a_cut_is_known_after_detect_and_a_repair_at_once() -> None:
    env, parts = _parts(topologies.star(4), detect=2.0)
    env.run(until=0.5)
    parts.link(("s0", 3), 0.0)
    env.run(until=2.4)
    assert parts.primary(range(4)) is None and parts.cut_by() == []
    env.run(until=2.5)
    assert parts.primary(range(4)) == frozenset({0, 1, 2}) and parts.since() == 0.5
    parts.link(("s0", 3), 0.5)  # slowed, not down: connected again
    assert parts.primary(range(4)) is None


def test_a_link_down_with_another_path_splits_nothing() -> None:
    env, parts = _parts(topologies.ring(4))
    parts.link((0, 1), 0.0)
    env.run(until=1.0)
    assert parts.primary(range(4)) is None
