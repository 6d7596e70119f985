"""The flow-level network: closed forms, max-min dynamics, counters, link statistics, errors."""

from __future__ import annotations

import math
import re

import networkx as nx
import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from sim.network import Network, NetworkError
from sim.timing import collective_time, transfer_time

#: Values ``network.unfairness`` refuses.
UNFAIR_BAD = (-0.1, math.inf, "high", True)

B, L = 1e9, 1e-6


def net_on(g: nx.Graph, **kw) -> tuple[simpy.Environment, Network]:
    env = simpy.Environment()
    return env, Network(env, g, **kw)


def later(env: simpy.Environment, delay: float, start) -> simpy.Event:
    """Start an operation (``start()`` returns an event) after ``delay``; value = its value."""

    def proc():
        yield env.timeout(delay)
        return (yield start())

    return env.process(proc())


def test_single_transfer_is_latency_plus_size_over_bandwidth():
    g = topologies.star(3, bandwidth=B, latency=L)
    assert transfer_time(g, 0, 1, 1e6) == pytest.approx(2 * L + 1e6 / B, rel=1e-12)
    assert transfer_time(g, 0, 1, 0) == pytest.approx(2 * L, rel=1e-12)
    assert transfer_time(g, 2, 2, 1e6) == 0.0
    assert transfer_time(g, 0, 1, 1e6, model="analytic") == pytest.approx(2 * L + 1e6 / B)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_incast_finishes_together(n):
    env, net = net_on(topologies.star(n + 1, bandwidth=B, latency=L))
    done = [net.send(i, n, 1e6) for i in range(n)]
    env.run()
    for ev in done:
        assert ev.value == pytest.approx(2 * L + n * 1e6 / B, rel=1e-9)


def test_incast_without_contention_in_the_analytic_model():
    env, net = net_on(topologies.star(5, bandwidth=B, latency=L), model="analytic")
    done = [net.send(i, 4, 1e6) for i in range(4)]
    env.run()
    assert [ev.value for ev in done] == pytest.approx([2 * L + 1e6 / B] * 4, rel=1e-12)


def bottleneck_star() -> nx.Graph:
    """Star with link (1, s) of 4 B/s, (3, s) of 10 B/s, the rest 100 B/s; tiny latency."""
    g = topologies.star(4, bandwidth=100.0, latency=1e-9)
    g.edges[1, "s0"]["bandwidth"] = 4.0
    g.edges[3, "s0"]["bandwidth"] = 10.0
    return g


def test_three_flows_with_unequal_bottlenecks_by_hand():
    # f1: 0->3 (20 B), f2: 1->3 (6 B), f3: 1->2 (2 B). Uplink of 1 (4 B/s) holds f2, f3 at 2
    # each; downlink of 3 (10 B/s) gives f1 the other 8. f3 ends at 1 s; then f2 gets 4 and f1
    # 6 until f2 ends at 2 s with f1 12 - 6 = 6 B short; f1 alone at 10 B/s ends at 2.6 s.
    env, net = net_on(bottleneck_star())
    f1, f2, f3 = net.send(0, 3, 20), net.send(1, 3, 6), net.send(1, 2, 2)
    env.run()
    lat = 2e-9
    assert f3.value == pytest.approx(lat + 1.0, rel=1e-9)
    assert f2.value == pytest.approx(lat + 2.0, rel=1e-9)
    assert f1.value == pytest.approx(lat + 2.6, rel=1e-9)


def test_flows_starting_at_different_times():
    # Star of 1 B/s, route latency 1 s. A: 0->2, 4 B at t=0 (transfers from t=1); B: 1->2, 1 B
    # at t=2 (from t=3). A alone moves 2 B by t=3; then both get 0.5 B/s: B ends at t=5 with A
    # at 1 B left, which it moves alone by t=6.
    env, net = net_on(topologies.star(3, bandwidth=1.0, latency=0.5))
    a = net.send(0, 2, 4)
    b = later(env, 2.0, lambda: net.send(1, 2, 1))
    env.run()
    assert (a.value, b.value) == (pytest.approx(6.0), pytest.approx(5.0))


def test_small_messages_are_latency_dominated():
    env, net = net_on(topologies.star(4, bandwidth=B, latency=L))
    done = [net.send(i, (i + 1) % 4, 8) for i in range(4)]
    env.run()
    assert [ev.value for ev in done] == pytest.approx([2 * L + 8 / B] * 4, rel=1e-12)


def test_rtt_sharing_weights_by_inverse_route_latency():
    # SimGrid's example: routes of 0.2 ms and 0.6 ms share a 1 MB/s downlink -> 0.75 / 0.25.
    g = topologies.star(3, bandwidth=1e6, latency=1e-4)
    g.edges[1, "s0"]["latency"] = 5e-4
    for sharing, expect in (("rtt", [0.75e6, 0.25e6]), ("maxmin", [0.5e6, 0.5e6])):
        _, net = net_on(g, sharing=sharing)
        routes = net.router.routes(np.array([0, 1]), np.array([2, 2]))
        rates, _ = net.solver.solve(routes)
        np.testing.assert_allclose(rates, expect)


def test_counters_and_link_statistics():
    env, net = net_on(topologies.star(3, bandwidth=B, latency=L))
    net.send(0, 2, 1e6)
    net.send(1, 2, 3e6)
    net.send(1, 1, 5e6)  # to itself: delivered at once, never on the network
    env.run()
    assert net.bytes_sent == 4e6 and net.flows_simulated == 2
    assert net.bytes_sent_by(1) == 3e6 and net.bytes_sent_per_rank.tolist() == [1e6, 3e6, 0.0]
    stats = net.link_stats()
    assert stats.loc[(1, "s0"), "bytes"] == pytest.approx(3e6)
    assert stats.loc[("s0", 2), "bytes"] == pytest.approx(4e6)
    assert stats.loc[("s0", 2), "busy_time"] == pytest.approx(4e6 / B)
    assert stats.loc[(2, "s0"), "bytes"] == 0.0
    busy = net.utilisation(2 * L, 2 * L + 4e6 / B)
    assert busy[("s0", 2)] == pytest.approx(1.0)
    assert busy[(0, "s0")] == pytest.approx(0.25)


def test_a_collective_shares_links_with_other_traffic():
    g = topologies.star(4, bandwidth=B, latency=L)
    env, net = net_on(g)
    alone = net.collective("all_reduce", 4e6, algorithm="ring")
    env.run()
    env, net = net_on(g)
    net.send(0, 1, 1e7)
    shared = net.collective("all_reduce", 4e6, algorithm="ring")
    env.run()
    assert max(shared.value.values()) > max(alone.value.values()) * 1.2


def test_event_timer_survives_preemption_by_new_traffic():
    # A big flow is scheduled to end at t~10; a later flow slows it; the stale timer is ignored.
    env, net = net_on(topologies.star(3, bandwidth=1.0, latency=1e-9))
    big = net.send(0, 2, 10)
    small = later(env, 5.0, lambda: net.send(1, 2, 1))
    env.run()
    assert small.value == pytest.approx(7.0, rel=1e-6)
    assert big.value == pytest.approx(11.0, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"model": "packet"}, "model"),
        ({"sharing": "fifo"}, "sharing"),
        (
            {"routing": "adaptive"},
            "routing must be one of ecmp, spray, single, dmodk, got 'adaptive'",
        ),
    ],
)
def test_bad_constructor_arguments(kwargs, needle):
    with pytest.raises(NetworkError, match=needle) as err:
        Network(simpy.Environment(), topologies.star(2), **kwargs)
    assert "\n" not in str(err.value)


def test_invalid_topology_is_one_line_error():
    g = topologies.star(2)
    del g.edges[0, "s0"]["bandwidth"]
    with pytest.raises(NetworkError, match="topology") as err:
        Network(simpy.Environment(), g)
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    "src, dst, nbytes, needle",
    [
        (0, 9, 1, "dst"),
        (-1, 1, 1, "src"),
        (True, 1, 1, "src"),
        (0.5, 1, 1, "src"),
        (0, 1, -1, "nbytes"),
        (0, 1, math.nan, "nbytes"),
        (0, 1, math.inf, "nbytes"),
        (0, 1, "1MB", "nbytes"),
    ],
)
def test_bad_send_arguments(src, dst, nbytes, needle):
    _, net = net_on(topologies.star(3))
    with pytest.raises(NetworkError, match=needle) as err:
        net.send(src, dst, nbytes)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("connection", [-1, 0.5, True, "a"])
def test_a_bad_connection_is_one_line_naming_it(connection):
    _, net = net_on(topologies.star(3))
    with pytest.raises(NetworkError, match="connection must be an int >= 0") as err:
        net.send(0, 1, 1.0, connection=connection)
    assert "\n" not in str(err.value)


def test_bad_utilisation_window():
    _, net = net_on(topologies.star(2))
    with pytest.raises(NetworkError, match="start < end"):
        net.utilisation(1.0, 1.0)


def reference_finish_times(net: Network, flows: list[tuple[float, int, int, float]]) -> list[float]:
    """A plain event loop over the same max-min solver: one solve per event, no batching,
    no caching, no timers -- what the engine must reproduce."""
    from sim.maxmin import maxmin_rates

    r = net.router
    links = [r.route_links[r.route(s, d)] for _, s, d, _ in flows]
    # A split flow's share of its rate on each link (spray), else all of it.
    shares = [r.route_share[r.route(s, d)] for _, s, d, _ in flows]
    shares = [np.ones(len(ls)) if sh is None else sh for ls, sh in zip(links, shares, strict=True)]
    ready = [t0 + float(r.route_latency[r.route(s, d)]) for t0, s, d, _ in flows]
    left = [float(size) for *_, size in flows]
    finish = [math.inf] * len(flows)
    t = 0.0
    while math.inf in finish:
        for f, size in enumerate(left):
            if finish[f] == math.inf and ready[f] <= t and (size <= 1e-9 or not links[f].size):
                finish[f] = t
        if math.inf not in finish:
            break
        live = [f for f in range(len(flows)) if finish[f] == math.inf and ready[f] <= t]
        rates = (
            maxmin_rates(
                np.concatenate(([0], np.cumsum([links[f].size for f in live]))),
                np.concatenate([links[f] for f in live] or [np.empty(0, int)]),
                r.capacity,
                usage=np.concatenate([shares[f] for f in live] or [np.empty(0)]),
            )
            if live
            else []
        )
        waiting = [ready[f] for f in range(len(flows)) if finish[f] == math.inf and ready[f] > t]
        nxt = min(waiting + [t + left[f] / x for f, x in zip(live, rates, strict=True)])
        for f, x in zip(live, rates, strict=True):
            left[f] = max(left[f] - x * (nxt - t), 0.0)
        t = nxt
    return finish


@pytest.mark.parametrize("routing", ["ecmp", "spray", "single"])
@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 3),
            st.integers(0, 15),
            st.integers(0, 15),
            st.one_of(st.just(0.0), st.floats(1.0, 1e3)),
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.floats(0.5, 20.0), min_size=48, max_size=48),
)
def test_engine_matches_a_plain_event_loop(routing, flows, speeds):
    g = topologies.fat_tree(4, bandwidth=100.0, latency=0.01)
    for (u, v), speed in zip(g.edges, speeds, strict=False):
        g.edges[u, v]["bandwidth"] = 100.0 * speed
    flows = [(t0, s, d, size) for t0, s, d, size in flows if s != d]
    if not flows:
        return
    env, net = net_on(g, routing=routing)
    done = [
        later(env, t0, lambda s=s, d=d, size=size: net.send(s, d, size)) for t0, s, d, size in flows
    ]
    env.run()
    expect = reference_finish_times(net, flows)
    assert [ev.value for ev in done] == pytest.approx(expect, rel=1e-9, abs=1e-12)


# -- protocol efficiency ---------------------------------------------------------------------


def test_efficiency_leaves_that_fraction_of_a_links_bandwidth_to_payload():
    # One message, one bottleneck: latency + bytes / (bandwidth x efficiency).
    for efficiency, attribute in [(0.95, None), (1.0, 0.8)]:
        g = topologies.star(2, bandwidth=1e9, latency=1e-6)
        if attribute is not None:  # a link's own value wins over the network's
            for _, _, data in g.edges(data=True):
                data["efficiency"] = attribute
        env = simpy.Environment()
        net = Network(env, g, efficiency=efficiency)
        done = net.send(0, 1, 1e6)
        env.run()
        expected = attribute if attribute is not None else efficiency
        assert done.value == pytest.approx(2e-6 + 1e6 / (1e9 * expected), rel=1e-12)


@pytest.mark.parametrize("bad", [0, 1.5, "high", math.nan])
def test_a_bad_efficiency_is_one_line_naming_it(bad):
    g = topologies.star(2)
    with pytest.raises(NetworkError, match="efficiency must be in"):
        Network(simpy.Environment(), g, efficiency=bad)
    next(iter(g.edges.values()))["efficiency"] = bad
    with pytest.raises(topologies.TopologyError, match="efficiency"):
        topologies.validate(g)


def test_collectives_fix_what_auto_stands_for_as_calibration_finds_it():
    import sim

    g = "hierarchical:nodes=2,gpus_per_node=2,inter_bandwidth=100Mbps"
    fixed = sim.run(
        "allreduce", "quadratic", g, steps=3, network={"collectives": {"all_reduce": "ring"}}
    )
    ring = sim.run(sim_strategy("allreduce", algorithm="ring"), "quadratic", g, steps=3)
    rule = sim.run("allreduce", "quadratic", g, steps=3)
    assert fixed.summary["time"] == ring.summary["time"] != rule.summary["time"]
    assert fixed.config["auto"]["collectives"] == {"all_reduce": ["ring"]}


@pytest.mark.parametrize(
    "network, needle",
    [
        ({"collectives": {"all_reduce": "butterfly"}}, "all_reduce has no algorithm 'butterfly'"),
        ({"collectives": {"allreduce": "ring"}}, "'allreduce' is not a collective"),
        ({"collectives": "ring"}, "must map collectives to algorithms"),
        *(({"unfairness": bad}, "network.unfairness: unfairness=") for bad in UNFAIR_BAD),
        (
            {"routing": "adaptive"},
            "network.routing: routing='adaptive' is unknown; use one of ecmp, spray, single, dmodk",
        ),
        ({"routing": None}, "network.routing: routing=None must be one of 'ecmp', 'spray'"),
        ({"routng": "spray"}, "network.routng: network has no argument 'routng'; did you mean"),
        ({"efficiency": 0}, "network.efficiency: efficiency=0 must be a finite number in (0, 1]"),
        (
            {"routing": "dmodk"},
            "routing 'dmodk' needs a fat tree made by topologies.fat_tree, got family 'star'; "
            "use ecmp, spray or single",
        ),
    ],
)
def test_bad_network_options_are_one_line_errors_before_the_run(tmp_path, network, needle):
    import sim

    with pytest.raises(ValueError, match=re.escape(needle)) as error:
        sim.run(
            "allreduce",
            "quadratic",
            "star:n=2",
            steps=1,
            network=network,
            out=tmp_path / "run",
        )
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def sim_strategy(name, **options):
    import strategies

    return strategies.get(name, **options)


# -- unfair sharing (TCP's concurrent flows finish apart) --------------------------------------


def weighted_finish_times(weights, size, capacity):
    """Plain progressive filling of equal-size flows on one bottleneck, by hand."""
    left = {i: size for i in range(len(weights))}
    t, done = 0.0, {}
    while left:
        total = sum(weights[i] for i in left)
        rate = {i: capacity * weights[i] / total for i in left}
        dt = min(left[i] / rate[i] for i in left)
        t += dt
        for i in list(left):
            left[i] -= rate[i] * dt
            if left[i] <= size * 1e-12:
                done[i] = t
                del left[i]
    return [done[i] for i in range(len(weights))]


def fan_out(unfairness, seed, n=4, size=1e6):
    env = simpy.Environment()
    net = Network(
        env, topologies.star(n, bandwidth=1e6, latency=1e-9), unfairness=unfairness, seed=seed
    )
    sends = [net.send(0, dst, size) for dst in range(1, n)]
    env.run()
    return net, [s.value - 2e-9 for s in sends]


def test_unfair_flows_share_by_their_drawn_weights():
    from sim.network import _WEIGHT_STREAM

    net, finish = fan_out(0.5, seed=3)
    weights = np.exp(0.5 * np.random.default_rng([3, _WEIGHT_STREAM]).standard_normal(3))
    assert finish == pytest.approx(weighted_finish_times(weights, 1e6, 1e6), rel=1e-9)
    assert max(finish) == pytest.approx(3.0)  # the link never idles: the last ends as if fair
    assert min(finish) < 2.5  # and the first well before it
    assert fan_out(0.5, seed=3)[1] == finish  # the seed decides the weights
    assert fan_out(0.5, seed=4)[1] != finish
    assert fan_out(0.0, seed=3)[1] == pytest.approx([3.0] * 3)  # 0: max-min, together


def test_unfairness_cannot_change_flows_that_share_no_link():
    # A ring all-reduce on a star puts one flow on each directed link: weights cannot change
    # a rate, so the cached solves answer and the times are the fair ones, exactly.
    def ring(unfairness):
        env = simpy.Environment()
        net = Network(
            env, topologies.star(4, bandwidth=1e9, latency=1e-6), unfairness=unfairness, seed=1
        )
        done = net.collective("all_reduce", 4e6, algorithm="ring")
        env.run()
        return done.value, (net.solver.misses, net.solver.hits, len(net.solver.patterns))

    assert ring(0.5) == ring(0.0)
    # Shared links are solved with the weights every time: a fan-out's three solves.
    net, _ = fan_out(0.5, seed=3)
    assert net.solver.misses == 3 and len(net.solver.patterns) == 3


@pytest.mark.parametrize("bad", UNFAIR_BAD)
def test_a_bad_unfairness_is_one_line_naming_it(bad):
    # sim.run's side: test_bad_network_options_are_one_line_errors_before_the_run.
    with pytest.raises(NetworkError, match="unfairness must be a finite number >= 0"):
        Network(simpy.Environment(), topologies.star(2), unfairness=bad)


# -- routing modes on a multipath fabric -------------------------------------------------------

#: A message big enough that latencies are far below 1% of its transfer.
BIG = 1e8


def fat_tree_and_star() -> tuple[nx.Graph, nx.Graph]:
    """fat_tree(4) (full bisection: 16 hosts) and a 16-host star of the same links."""
    return (
        topologies.fat_tree(4, bandwidth=B, latency=L),
        topologies.star(16, bandwidth=B, latency=L),
    )


def permutation_time(g: nx.Graph, perm: list[int], **kw) -> float:
    """Every rank ``i`` sends BIG bytes to ``perm[i]``, all at once; when the last arrives."""
    env, net = net_on(g, **kw)
    for i, j in enumerate(perm):
        net.send(i, j, BIG)
    env.run()
    return env.now


def cross_pod_permutation(rng: np.random.Generator) -> list[int]:
    """A random permutation of fat_tree(4)'s hosts that sends every host out of its pod (all
    routes then have one latency: 6 links)."""
    while True:
        perm = rng.permutation(16).tolist()
        if all(i // 4 != j // 4 for i, j in enumerate(perm)):
            return perm


def test_spray_gives_a_full_bisection_fat_tree_the_stars_time():
    # The reference: a star of the same links, where no two flows of a permutation or of an
    # all-to-all's round share a link (a star is non-blocking).
    tree, star = fat_tree_and_star()
    rng = np.random.default_rng(0)
    for perm in (rng.permutation(16).tolist(), cross_pod_permutation(rng)):
        t_star = permutation_time(star, perm, routing="spray")
        assert t_star == pytest.approx(2 * L + BIG / B, rel=1e-9)
        assert permutation_time(tree, perm, routing="spray") == pytest.approx(t_star, rel=0.01)
    a2a = {
        g: collective_time(g, "all_to_all", BIG, algorithm="direct", routing="spray")
        for g in (tree, star)
    }
    assert a2a[tree] == pytest.approx(a2a[star], rel=0.01)
    # ... which single-path routing, through one core switch, is far from.
    assert collective_time(tree, "all_to_all", BIG, algorithm="direct", routing="single") > (
        2 * a2a[star]
    )


def test_dmodk_gives_shift_permutations_and_an_all_to_all_the_stars_time():
    # d-mod-k spreads destinations over the cores: a shift between pods meets no contention,
    # and an all-to-all's one round loads no link more than a star's host links.
    tree, star = fat_tree_and_star()
    for shift in (1, 4, 8, 12):
        perm = [(i + shift) % 16 for i in range(16)]
        t_star = permutation_time(star, perm)
        assert permutation_time(tree, perm, routing="dmodk") == pytest.approx(t_star, rel=0.01)
        if shift % 4 == 0:  # between pods: single sends them all through one core
            assert permutation_time(tree, perm, routing="single") > 1.5 * t_star
    a2a = {
        g: collective_time(g, "all_to_all", BIG, algorithm="direct", routing=routing)
        for g, routing in ((tree, "dmodk"), (star, "single"))
    }
    assert a2a[tree] == pytest.approx(a2a[star], rel=0.01)


def hashed_max_load(g: nx.Graph, perm: list[int], seed: int) -> int:
    """The most flows any directed link carries when flow ``i -> perm[i]`` takes equal-cost
    path ``flow_hash(seed, i, perm[i]) % n`` (paths in node-index order), all in plain Python:
    networkx enumerates the paths, a Counter counts the flows per link."""
    from collections import Counter

    from sim.routing import flow_hash

    index = {v: i for i, v in enumerate(g.nodes)}
    load: Counter = Counter()
    for i, j in enumerate(perm):
        paths = sorted(
            nx.all_shortest_paths(g, i, j, weight="latency"), key=lambda p: [index[v] for v in p]
        )
        chosen = paths[flow_hash(seed, i, j) % len(paths)]
        load.update(zip(chosen, chosen[1:], strict=False))
    return max(load.values())


def test_ecmp_slows_a_permutation_by_its_most_loaded_link():
    # Equal sizes, one start, one route latency: the flows of the most loaded link (m of them)
    # get a 1/m share until they all finish, and every other flow gets at least that, so the
    # permutation takes 6 L + m BIG / B: m is counted in a plain model of the hashed paths.
    tree, _ = fat_tree_and_star()
    rng = np.random.default_rng(1)
    seen = set()
    for seed in range(12):
        perm = cross_pod_permutation(rng)
        m = hashed_max_load(tree, perm, seed)
        seen.add(m)
        t = permutation_time(tree, perm, routing="ecmp", seed=seed)
        assert t == pytest.approx(6 * L + m * BIG / B, rel=1e-9), (seed, m)
    assert seen - {1}  # hash collisions did happen
    # single routing sends each pod's four flows up through one aggregation switch and core0.
    assert permutation_time(tree, perm, routing="single") == pytest.approx(
        6 * L + 4 * BIG / B, rel=1e-9
    )


def test_ecmp_collisions_match_the_expected_maximum_load():
    # Statistically: over many seeds the mean slowdown is the expected largest link load of
    # flows that each pick a uniformly random equal-cost path (Monte Carlo, Python's random).
    import random

    tree, _ = fat_tree_and_star()
    perm = cross_pod_permutation(np.random.default_rng(2))
    seeds = range(40)
    mean = np.mean(
        [(permutation_time(tree, perm, routing="ecmp", seed=s) - 6 * L) * B / BIG for s in seeds]
    )
    paths = {i: list(nx.all_shortest_paths(tree, i, j)) for i, j in enumerate(perm)}
    draw = random.Random(0)
    loads = []
    for _ in range(4000):
        links: dict = {}
        for p in paths.values():
            chosen = draw.choice(p)
            for uv in zip(chosen, chosen[1:], strict=False):
                links[uv] = links.get(uv, 0) + 1
        loads.append(max(links.values()))
    expected, spread = np.mean(loads), np.std(loads) / np.sqrt(len(seeds))
    assert abs(mean - expected) < 4 * spread, (mean, expected, spread)


def test_ecmp_runs_are_bit_identical_for_a_seed():
    tree, _ = fat_tree_and_star()
    perm = cross_pod_permutation(np.random.default_rng(3))
    times = {s: permutation_time(tree, perm, routing="ecmp", seed=s) for s in (0, 0, 1, 2, 3)}
    assert permutation_time(tree, perm, routing="ecmp", seed=0) == times[0]
    assert len(set(times.values())) > 1  # the seed picks the paths


@pytest.mark.parametrize("routing", ["ecmp", "spray"])
def test_on_a_star_every_routing_mode_gives_singles_numbers(routing):
    g = topologies.star(6, bandwidth=B, latency=L)
    for op, algorithm in (("all_reduce", "halving_doubling"), ("all_to_all", "direct")):
        single = collective_time(g, op, 3e6, algorithm=algorithm, routing="single")
        assert collective_time(g, op, 3e6, algorithm=algorithm, routing=routing) == single


@pytest.mark.parametrize("routing, busy", [("single", 1), ("ecmp", 4), ("spray", 4)])
def test_cores_carry_traffic_as_the_routing_spreads_it(routing, busy):
    # An all-to-all on fat_tree(4): single routing crosses core0 only; ecmp and spray use all
    # four cores, spray evenly (each core a quarter of the traffic between pods).
    tree, _ = fat_tree_and_star()
    env, net = net_on(tree, routing=routing)
    net.collective("all_to_all", 16e6, algorithm="direct")
    env.run()
    table = net.link_stats()
    into = table[
        [isinstance(v, str) and v.startswith("core") for v in table.index.get_level_values("v")]
    ]
    per_core = into.groupby(level="v")["bytes"].sum()
    assert (per_core > 0).sum() == busy
    # Between pods: each of 16 ranks sends 12 chunks of 1 MB to the other pods.
    assert per_core.sum() == pytest.approx(16 * 12 * 1e6, rel=1e-9)
    if routing == "spray":
        assert per_core.tolist() == pytest.approx([48e6] * 4, rel=1e-9)


def test_collective_channels_are_connections_ecmp_hashes_apart():
    # A double binary tree runs two channels; under ecmp their messages between the same two
    # ranks are hashed as two connections, so a route of channel 1 is one ecmp gives label 1.
    tree, _ = fat_tree_and_star()
    env, net = net_on(tree, routing="ecmp")
    channels, members = net.planner.plan("all_reduce", 1e6, None, "tree", None)
    assert len(channels) == 2
    step = channels[1].step(0)
    batch = step.flows(members, net.router, 1)
    expect = [net.router.route(s, d, 1) for s, d in zip(members[step.src], members[step.dst])]
    assert batch.routes.tolist() == expect
    net.collective("all_reduce", 1e6, algorithm="tree")
    env.run()
    assert net.router.routes(members[step.src], members[step.dst], 1).tolist() == expect


def test_a_runs_routing_is_its_network_option_and_its_seeds():
    import sim
    import workloads

    workload = workloads.get("quadratic", batch_size=4)

    def time(**network):
        kw = {"steps": 2, "eval_every": 2, "seed": network.pop("seed", 0)}
        return sim.run("allreduce", workload, "fat_tree:k=4", network=network, **kw).summary["time"]

    default, ecmp, single, spray = (
        time(),
        time(routing="ecmp"),
        time(routing="single"),
        time(routing="spray"),
    )
    assert default == ecmp  # ecmp is the default
    assert spray < single  # halving-doubling partners in other pods share core0 under single
    assert time(routing="ecmp", seed=0) == ecmp


def test_a_runs_record_names_its_routing_even_by_default():
    import sim

    result = sim.run("allreduce", "quadratic", "star:n=2", steps=1)
    assert result.config["network"]["routing"] == "ecmp"
    result = sim.run("allreduce", "quadratic", "star:n=2", steps=1, network={"routing": "spray"})
    assert result.config["network"]["routing"] == "spray"


@pytest.mark.parametrize("pace", ["step", "rank"])
@pytest.mark.parametrize(
    "op, algorithm, before",
    [
        # Measured on the commit before routing modes (9d45903), whose only routing was this.
        ("all_reduce", "halving_doubling", 0.5300360000000001),
        ("all_to_all", "direct", 0.240006),
        ("all_reduce", "tree", {"step": 0.27343533333333336, "rank": 0.2734363333333334}),
    ],
)
def test_single_routing_keeps_the_fat_tree_numbers_of_before(op, algorithm, before, pace):
    g = topologies.fat_tree(4, bandwidth="10Gbps", latency="1us")
    expect = before[pace] if isinstance(before, dict) else before
    got = collective_time(g, op, 100e6, algorithm=algorithm, pace=pace, routing="single")
    assert got == expect  # bit for bit
