"""The max-min solver against hand-computed rates and a plain progressive-filling reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.maxmin import RateSolver, maxmin_rates


def csr(routes: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.concatenate(([0], np.cumsum([len(r) for r in routes]))).astype(np.int64)
    links = np.array([link for r in routes for link in r], dtype=np.int64)
    return ptr, links


def reference(routes: list[list[int]], capacity: list[float], weights: list[float]) -> list[float]:
    """Progressive filling, literally: raise a common level t (flow f runs at w_f * t) until a
    link fills, freeze the flows crossing it, repeat."""
    frozen = [not r for r in routes]
    rate = [float("inf") if f else 0.0 for f in frozen]
    level = 0.0
    while not all(frozen):
        best = float("inf")
        for link, cap in enumerate(capacity):
            used = sum(rate[f] for f, r in enumerate(routes) if frozen[f] and link in r)
            growing = sum(weights[f] for f, r in enumerate(routes) if not frozen[f] and link in r)
            if growing:
                best = min(best, (cap - used) / growing)
        level = best
        for f in range(len(routes)):
            if not frozen[f]:
                rate[f] = weights[f] * level
        for link, cap in enumerate(capacity):
            load = sum(rate[f] for f, r in enumerate(routes) if link in r and rate[f] != np.inf)
            if load >= cap * (1 - 1e-9):
                for f, r in enumerate(routes):
                    if link in r:
                        frozen[f] = True
    return rate


def test_unequal_bottlenecks_by_hand():
    # Flows 0 and 1 share link 0 (capacity 10); flows 1 and 2 share link 1 (capacity 4).
    # Link 1 is the tighter: flows 1 and 2 get 2 each; flow 0 takes the remaining 8 of link 0.
    ptr, links = csr([[0], [0, 1], [1]])
    np.testing.assert_allclose(maxmin_rates(ptr, links, np.array([10.0, 4.0])), [8, 2, 2])


def test_three_levels_and_an_idle_link():
    # Link 0 (cap 3) has flows a, b, c; link 1 (cap 1) has c; link 2 (cap 50) has nobody.
    ptr, links = csr([[0], [0], [0, 1]])
    np.testing.assert_allclose(maxmin_rates(ptr, links, np.array([3.0, 1.0, 50.0])), [1, 1, 1])
    ptr, links = csr([[0], [0], [0, 1]])
    np.testing.assert_allclose(
        maxmin_rates(ptr, links, np.array([3.0, 0.5, 50.0])), [1.25, 1.25, 0.5]
    )


def test_weights_split_a_link_in_proportion():
    ptr, links = csr([[0], [0]])
    np.testing.assert_allclose(
        maxmin_rates(ptr, links, np.array([1.0]), np.array([3.0, 1.0])), [0.75, 0.25]
    )


def test_empty_route_is_unbounded():
    ptr, links = csr([[], [0]])
    assert maxmin_rates(ptr, links, np.array([2.0])).tolist() == [np.inf, 2.0]


instances = st.integers(1, 5).flatmap(
    lambda n_links: st.tuples(
        st.lists(st.floats(0.1, 100.0), min_size=n_links, max_size=n_links),
        st.lists(
            st.lists(st.integers(0, n_links - 1), min_size=1, max_size=n_links, unique=True),
            min_size=1,
            max_size=7,
        ),
        st.lists(st.floats(0.1, 10.0), min_size=7, max_size=7),
    )
)


@settings(max_examples=60, deadline=None)
@given(instances)
def test_solver_matches_reference_progressive_filling(instance):
    capacity, routes, weights = instance
    weights = weights[: len(routes)]
    ptr, links = csr(routes)
    got = maxmin_rates(ptr, links, np.array(capacity), np.array(weights))
    np.testing.assert_allclose(got, reference(routes, capacity, weights), rtol=1e-7)
    # The defining property: feasible, and every flow crosses a saturated link on which no
    # flow has a larger normalised rate (so no flow can grow without shrinking a poorer one).
    load = np.zeros(len(capacity))
    for f, r in enumerate(routes):
        load[r] += got[f]
    assert (load <= np.array(capacity) * (1 + 1e-9)).all()
    norm = got / np.array(weights)
    for f, r in enumerate(routes):
        assert any(
            load[link] >= capacity[link] * (1 - 1e-7)
            and all(norm[g] <= norm[f] * (1 + 1e-7) for g, q in enumerate(routes) if link in q)
            for link in r
        )


def solver(model: str = "flow", sharing: str = "maxmin") -> RateSolver:
    links = [np.array([0]), np.array([0, 1]), np.array([1])]
    return RateSolver(
        links,
        np.array([10.0, 4.0]),
        lambda: np.array([1.0, 2.0, 3.0]),
        lambda: np.array([10.0, 4.0, 4.0]),
        model,
        sharing,
    )


def test_rate_solver_caches_by_route_multiset():
    s = solver()
    rates, pattern = s.solve(np.array([0, 1, 2]))
    np.testing.assert_allclose(rates, [8, 2, 2])
    again, pattern2 = s.solve(np.array([2, 0, 1]))
    np.testing.assert_allclose(again, [2, 8, 2])
    assert pattern2 == pattern and (s.hits, s.misses) == (1, 1)
    links, load = s.patterns[pattern]
    assert links.tolist() == [0, 1] and load.tolist() == [10.0, 4.0]


def test_rate_solver_analytic_ignores_contention():
    rates, _ = solver("analytic").solve(np.array([0, 1, 1]))
    assert rates.tolist() == [10.0, 4.0, 4.0]


def test_rate_solver_rtt_weights_by_inverse_latency():
    # Routes 0 (latency 1) and 1 (latency 2) share link 0: weights 1 and 1/2.
    s = solver(sharing="rtt")
    rates, _ = s.solve(np.array([0, 1]))
    np.testing.assert_allclose(rates, [20 / 3, 10 / 3])


@pytest.mark.parametrize("n", [1, 50])
def test_many_identical_flows_split_evenly(n):
    ptr, links = csr([[0, 1]] * n)
    np.testing.assert_allclose(maxmin_rates(ptr, links, np.array([5.0, 7.0])), [5.0 / n] * n)


def test_rate_solver_answers_a_recurring_route_order_from_its_second_cache():
    s = solver()
    rates, pattern = s.solve(np.array([2, 0, 1]))
    again, pattern2 = s.solve(np.array([2, 0, 1]))
    assert again is rates and pattern2 == pattern and (s.hits, s.misses) == (1, 1)
    np.testing.assert_allclose(rates, [2, 8, 2])
    with pytest.raises(ValueError, match="read-only"):
        rates[0] = 1.0
    # Other integer widths are the same routes, not other bytes.
    narrow, pattern3 = s.solve(np.array([2, 0, 1], dtype=np.int32))
    assert narrow.tolist() == rates.tolist() and pattern3 == pattern


# -- fractional link usage (a flow split over several paths: spray routing) -------------------

split_instances = st.integers(1, 5).flatmap(
    lambda n_links: st.tuples(
        st.lists(st.floats(0.1, 100.0), min_size=n_links, max_size=n_links),
        st.lists(
            st.lists(
                st.tuples(st.integers(0, n_links - 1), st.floats(0.05, 1.0)),
                min_size=1,
                max_size=n_links,
                unique_by=lambda pair: pair[0],
            ),
            min_size=1,
            max_size=7,
        ),
        st.lists(st.floats(0.1, 10.0), min_size=7, max_size=7),
    )
)


@settings(max_examples=80, deadline=None)
@given(split_instances)
def test_fractional_usage_is_weighted_max_min_fair(instance):
    # The defining property, with flow f putting usage[f][l] * rate[f] on link l: feasible,
    # and every flow crosses a saturated link on which no flow has a larger normalised rate.
    capacity, routes, weights = instance
    weights = weights[: len(routes)]
    ptr, links = csr([[link for link, _ in r] for r in routes])
    usage = np.array([u for r in routes for _, u in r])
    got = maxmin_rates(ptr, links, np.array(capacity), np.array(weights), usage)
    load = np.zeros(len(capacity))
    for f, r in enumerate(routes):
        for link, u in r:
            load[link] += u * got[f]
    assert (load <= np.array(capacity) * (1 + 1e-9)).all()
    norm = got / np.array(weights)
    for f, r in enumerate(routes):
        assert any(
            load[link] >= capacity[link] * (1 - 1e-7)
            and all(
                norm[g] <= norm[f] * (1 + 1e-7) for g, q in enumerate(routes) if link in dict(q)
            )
            for link, _ in r
        ), (f, got.tolist(), load.tolist())


def test_usage_of_one_is_the_unsplit_solve_bit_for_bit():
    ptr, links = csr([[0], [0, 1], [1]])
    cap = np.array([10.0, 4.0])
    assert maxmin_rates(ptr, links, cap, usage=np.ones(4)).tolist() == (
        maxmin_rates(ptr, links, cap).tolist()
    )


def test_rate_solver_counts_a_split_flows_share_on_each_link():
    # Route 0 is split in halves over links 0 and 1; route 1 uses link 1 whole (capacities 1):
    # link 1 carries 0.5 r0 + r1 = 1 at r0 = r1 = 2/3, and link 0 carries r0 / 2 = 1/3.
    links = [np.array([0, 1]), np.array([1])]
    s = RateSolver(
        links,
        np.array([1.0, 1.0]),
        lambda: np.array([1.0, 1.0]),
        lambda: np.array([2.0, 1.0]),
        route_share=[np.array([0.5, 0.5]), None],
    )
    rates, pattern = s.solve(np.array([0, 1]))
    np.testing.assert_allclose(rates, [2 / 3, 2 / 3])
    used, load = s.patterns[pattern]
    assert used.tolist() == [0, 1]
    np.testing.assert_allclose(load, [1 / 3, 1.0])
