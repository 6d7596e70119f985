"""Link statistics: the pattern history, per-link figures, and the Network's delegating API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import simpy

import topologies
from sim.linkstats import LinkStats
from sim.network import Network, NetworkError
from sim.routing import Router

B, L = 1e9, 1e-6


def two_patterns() -> tuple[Router, LinkStats, np.ndarray, np.ndarray]:
    router = Router(topologies.star(3, bandwidth=B, latency=L))
    a = router.route_links[router.route(0, 2)]
    b = router.route_links[router.route(1, 2)]
    patterns = [(a, np.array([B, B])), (np.union1d(a, b), np.array([B / 2, B / 2, B]))]
    return router, LinkStats(router, patterns), a, b


def test_contiguous_intervals_of_one_pattern_merge_and_gaps_do_not():
    _, stats, _, _ = two_patterns()
    stats.log(0.0, 1.0, 0)
    stats.log(1.0, 2.0, 0)  # contiguous, same pattern: merged
    stats.log(3.0, 4.0, 0)  # a gap: new row
    stats.log(4.0, 5.0, 1)  # another pattern: new row
    stats.log(5.0, 6.0, -1)  # nothing moving: not recorded
    assert stats.history == [[0.0, 2.0, 0], [3.0, 4.0, 0], [4.0, 5.0, 1]]


def test_carried_bytes_and_busy_time_are_clipped_to_the_window():
    router, stats, a, b = two_patterns()
    stats.log(0.0, 2.0, 0)
    stats.log(2.0, 3.0, 1)
    carried, busy = stats.carried(1.0, 2.5)
    expect_carried, expect_busy = np.zeros(len(router.links)), np.zeros(len(router.links))
    expect_carried[a] += B * 1.0  # pattern 0 within [1, 2]
    expect_busy[a] += 1.0
    both = np.union1d(a, b)
    expect_carried[both] += np.array([B / 2, B / 2, B]) * 0.5  # pattern 1 within [2, 2.5]
    expect_busy[both] += 0.5
    np.testing.assert_allclose(carried, expect_carried)
    np.testing.assert_allclose(busy, expect_busy)


def test_empty_history_gives_zeros():
    router, stats, _, _ = two_patterns()
    carried, busy = stats.carried(0.0, 1.0)
    assert not carried.any() and not busy.any()
    table = stats.table(0.0, 0.0)  # an empty span: utilisation 0, not nan
    assert list(table.columns) == ["bandwidth", "latency", "bytes", "busy_time", "utilisation"]
    assert (table["utilisation"] == 0).all() and len(table) == len(router.links)


def test_table_and_utilisation_are_indexed_by_directed_link():
    router, stats, a, _ = two_patterns()
    stats.log(0.0, 2.0, 0)
    table = stats.table(0.0, 4.0)
    assert table.index.names == ["u", "v"]
    assert list(table.index) == router.links
    first = router.links[a[0]]
    assert table.loc[first, "bytes"] == pytest.approx(2 * B)
    assert table.loc[first, "utilisation"] == pytest.approx(0.5)
    series = stats.utilisation(1.0, 2.0)
    assert isinstance(series, pd.Series) and series.name == "utilisation"
    assert series.loc[first] == pytest.approx(1.0)


@pytest.mark.parametrize("window", [(1.0, 1.0), (2.0, 1.0), (0.0, float("inf")), (float("nan"), 1)])
def test_utilisation_needs_a_finite_nonempty_window(window):
    _, stats, _, _ = two_patterns()
    with pytest.raises(NetworkError, match="finite start < end"):
        stats.utilisation(*window)


def test_network_link_stats_and_utilisation_delegate_to_its_linkstats():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    net.send(0, 2, 1e6)
    net.send(1, 2, 1e6)
    env.run()
    pd.testing.assert_frame_equal(net.link_stats(), net.stats.table(0.0, env.now))
    pd.testing.assert_series_equal(
        net.utilisation(0.0, env.now), net.stats.utilisation(0.0, env.now)
    )
    # Both flows share the switch's downlink to host 2 for their whole transfer: it is busy
    # for 2e6 / B seconds and carries 2 MB.
    down = net.link_stats().loc[("s0", 2)]
    assert down["bytes"] == pytest.approx(2e6)
    assert down["busy_time"] == pytest.approx(2e6 / B)


def test_a_network_that_does_not_record_has_no_history():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L), record=False)
    net.send(0, 2, 1e6)
    env.run()
    assert net.stats.history == []
    assert (net.link_stats()["bytes"] == 0).all()
