"""Routes: shortest by latency, deterministic tie-break, directed links, caching."""

from __future__ import annotations

import itertools
import tracemalloc

import networkx as nx
import numpy as np
import pytest

import topologies
from sim.routing import NetworkError, Router, flow_hash


def host(g: nx.Graph, v, rank: int) -> None:
    g.add_node(v, kind="host", rank=rank)


def path(r: Router, rid: int) -> list:
    links = [r.links[i] for i in r.route_links[rid]]
    return [links[0][0]] + [v for _, v in links]


def diamond(lat_a: float = 1.0, lat_b: float = 1.0) -> nx.Graph:
    """Host h0 reaches h1 through switch "a" or switch "b"."""
    g = nx.Graph()
    host(g, "h0", 0)
    host(g, "h1", 1)
    g.add_node("b", kind="switch")  # added before "a": node order decides ties, not names
    g.add_node("a", kind="switch")
    for s, lat in (("a", lat_a), ("b", lat_b)):
        g.add_edge("h0", s, bandwidth=1.0, latency=lat)
        g.add_edge(s, "h1", bandwidth=1.0, latency=lat)
    return g


def test_star_route_and_its_numbers():
    r = Router(topologies.star(4, bandwidth=5.0, latency=0.25))
    rid = r.route(1, 3)
    assert path(r, rid) == [1, "s0", 3]
    assert r.route_latency[rid] == 0.5 and r.route_bottleneck[rid] == 5.0
    assert r.route_hops[rid] == 2


def test_lower_latency_wins():
    r = Router(diamond(lat_a=1.0, lat_b=2.0))
    assert path(r, r.route(0, 1)) == ["h0", "a", "h1"]


def test_tie_goes_to_the_smaller_node_index_sequence():
    # Equal latency and hops: "b" was added to the graph before "a", so it has the smaller index.
    r = Router(diamond())
    assert path(r, r.route(0, 1)) == ["h0", "b", "h1"]


def test_tie_on_latency_goes_to_fewer_hops():
    g = diamond(lat_a=1.0, lat_b=1.0)
    g.add_edge("h0", "h1", bandwidth=1.0, latency=2.0)  # same latency as via a switch, 1 hop
    r = Router(g)
    assert path(r, r.route(0, 1)) == ["h0", "h1"]


def test_rounding_noise_does_not_break_ties():
    # 0.1 + 0.2 != 0.3 in floats; per-link femtosecond rounding keeps the two routes tied.
    g = nx.Graph()
    host(g, "h0", 0)
    host(g, "h1", 1)
    g.add_node("x", kind="switch")
    g.add_node("y", kind="switch")
    g.add_node("z", kind="switch")
    g.add_edge("h0", "x", bandwidth=1.0, latency=0.1)
    g.add_edge("x", "y", bandwidth=1.0, latency=0.2)
    g.add_edge("y", "h1", bandwidth=1.0, latency=1.0)
    g.add_edge("h0", "z", bandwidth=1.0, latency=0.3)
    g.add_edge("z", "h1", bandwidth=1.0, latency=1.0)
    r = Router(g)
    assert path(r, r.route(0, 1)) == ["h0", "z", "h1"]  # tied latency, fewer hops


def test_ring_routes_through_hosts_and_both_directions_are_links():
    r = Router(topologies.ring(6, bandwidth=1.0, latency=1.0))
    assert path(r, r.route(0, 2)) == [0, 1, 2]
    assert path(r, r.route(0, 4)) == [0, 5, 4]
    assert path(r, r.route(0, 3)) == [0, 1, 2, 3]  # tie: index sequence 0,1,2,3 < 0,5,4,3
    assert len(r.links) == 12


def test_directed_graph_follows_edge_directions():
    g = nx.DiGraph()
    for i in range(3):
        host(g, i, i)
    for i in range(3):
        g.add_edge(i, (i + 1) % 3, bandwidth=2.0, latency=1.0)
    r = Router(g)
    assert path(r, r.route(1, 0)) == [1, 2, 0]
    assert len(r.links) == 3


def test_fat_tree_routes_stay_low_when_they_can():
    g = topologies.fat_tree(4)
    r = Router(g)
    assert len(path(r, r.route(0, 1))) == 3  # same edge switch
    assert len(path(r, r.route(0, 2))) == 5  # same pod, via an aggregation switch
    assert len(path(r, r.route(0, 15))) == 7  # other pod, via a core switch
    again = Router(g)
    assert path(again, again.route(0, 15)) == path(r, r.route(0, 15))


def test_routes_are_cached_and_vectorised():
    r = Router(topologies.star(5))
    ids = r.routes(np.array([0, 1, 0]), np.array([1, 2, 1]))
    assert ids[0] == ids[2] != ids[1]
    assert r.route(0, 1) == ids[0]
    assert r.routes(np.array([1]), np.array([2])).tolist() == [ids[1]]
    assert len(r.route_links) == 2


def test_self_route_is_empty():
    r = Router(topologies.star(2))
    rid = r.route(1, 1)
    assert r.route_hops[rid] == 0 and r.route_latency[rid] == 0.0
    assert r.route_bottleneck[rid] == np.inf


@pytest.mark.parametrize("routing", ["single", "ecmp", "spray"])
def test_unreachable_host_is_a_one_line_error(routing):
    # Each mode's search (sim.paths, sim.equal_cost) finds no route; the Router raises it as
    # its NetworkError, so callers catching that (or ValueError) see every mode's failure.
    g = nx.DiGraph()
    host(g, 0, 0)
    host(g, 1, 1)
    g.add_edge(0, 1, bandwidth=1.0, latency=1.0)
    with pytest.raises(NetworkError, match="^no route from 1 to 0; connect them") as err:
        Router(g, routing=routing).route(1, 0)
    assert "\n" not in str(err.value)


def test_a_search_keeps_one_link_per_node_not_a_route_per_node():
    # A search from host 0 to the far side of a ring settles every node. It kept each node's
    # whole route (a list of ~n/4 links: ~8.7 bytes per node and hop here); it keeps the
    # link in and the node before, and what remains is the tie-break's node sequences
    # (~4.6). The routes themselves are the same (the tests above).
    n = 800
    router = Router(topologies.ring(n))
    tracemalloc.start()
    try:
        router.route(0, n // 2)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept < 6 * n * (n // 2), kept


# -- routing modes: ecmp, spray, single, dmodk -----------------------------------------------------


def equal_cost_paths(g: nx.Graph, a: int, b: int) -> list[tuple]:
    """Every path of least latency, then fewest hops, between ranks ``a`` and ``b``, in the
    order of their node-index sequences: networkx's enumeration, not the router's search."""
    index = {v: i for i, v in enumerate(g.nodes)}
    src = next(v for v in g if g.nodes[v].get("rank") == a)
    dst = next(v for v in g if g.nodes[v].get("rank") == b)
    paths = list(nx.all_shortest_paths(g, src, dst, weight="latency"))
    least = min(len(p) for p in paths)
    return sorted((tuple(p) for p in paths if len(p) == least), key=lambda p: [index[v] for v in p])


MULTIPATH = {
    "fat_tree(4)": lambda: topologies.fat_tree(4),
    "torus2d(4, 4)": lambda: topologies.torus2d(4, 4),
    "ring(6)": lambda: topologies.ring(6),
    "random_regular(10, 3)": lambda: topologies.random_regular(10, 3, seed=2),
}


@pytest.mark.parametrize("name", MULTIPATH)
def test_ecmp_takes_the_flow_hashs_equal_cost_path_in_node_order(name):
    g = MULTIPATH[name]()
    r = Router(g, routing="ecmp", seed=7)
    single = Router(g)
    n = r.n_hosts
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            paths = equal_cost_paths(g, a, b)
            assert path(single, single.route(a, b)) == list(paths[0])  # single: the first
            for label in (0, 1, 2):
                expect = paths[flow_hash(7, a, b, label) % len(paths)]
                assert path(r, r.route(a, b, label)) == list(expect), (a, b, label)


def test_ecmp_spreads_flows_uniformly_and_connections_may_differ():
    # Rank 0 to rank 15 of fat_tree(4) has four paths, one per core switch; 2000 connections
    # between them are hashed over the four about evenly (chi-square, 3 degrees of freedom:
    # above 16.3 one time in a thousand).
    r = Router(topologies.fat_tree(4), routing="ecmp")
    cores = [path(r, r.route(0, 15, label))[3] for label in range(2000)]
    counts = [cores.count(f"core{c}") for c in range(4)]
    assert sum((c - 500) ** 2 / 500 for c in counts) < 16.3, counts
    assert len(set(cores[:8])) > 1  # connections between the same ranks take other paths


def test_ecmp_is_deterministic_for_a_seed_and_changes_with_it():
    g = topologies.fat_tree(4)
    ranks = np.arange(16)

    def routes(seed):
        r = Router(g, routing="ecmp", seed=seed)
        return [path(r, rid) for rid in r.routes(ranks, (ranks + 5) % 16)]

    assert routes(3) == routes(3)
    assert routes(3) != routes(4)


@pytest.mark.parametrize("name", MULTIPATH)
def test_spray_puts_on_each_link_the_share_of_equal_cost_paths_through_it(name):
    g = MULTIPATH[name]()
    r = Router(g, routing="spray")
    single = Router(g)
    for a, b in [(0, r.n_hosts - 1), (1, r.n_hosts // 2), (r.n_hosts - 2, 0)]:
        paths = equal_cost_paths(g, a, b)
        through: dict[tuple, int] = {}
        for p in paths:
            for uv in zip(p, p[1:], strict=False):
                through[uv] = through.get(uv, 0) + 1
        rid = r.route(a, b)
        share = r.route_share[rid]
        got = dict(
            zip(
                [r.links[i] for i in r.route_links[rid]],
                [1.0] * len(r.route_links[rid]) if share is None else share.tolist(),
                strict=True,
            )
        )
        assert got == pytest.approx({uv: k / len(paths) for uv, k in through.items()}, rel=1e-12)
        assert (share is None) == (len(paths) == 1)
        s = single.route(a, b)  # the latency and hops of every equal-cost path: single's
        assert r.route_latency[rid] == single.route_latency[s]
        assert r.route_hops[rid] == single.route_hops[s]


def test_spray_bottleneck_is_where_the_split_flow_first_fills_a_link():
    g = diamond()
    g.edges["h0", "a"]["bandwidth"] = 0.25  # half the flow crosses it: the flow gets 0.5
    r = Router(g, routing="spray")
    rid = r.route(0, 1)
    assert r.route_bottleneck[rid] == 0.5


@pytest.mark.parametrize("routing", ["ecmp", "spray"])
def test_on_single_path_topologies_every_mode_is_single(routing):
    for g in (topologies.star(5), topologies.from_spec("hierarchical:nodes=2,gpus_per_node=3")):
        r, single = Router(g, routing=routing), Router(g)
        n = r.n_hosts
        src, dst = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
        ids, ref = r.routes(src, dst, 3), single.routes(src, dst)
        for a, b in zip(ids.tolist(), ref.tolist(), strict=True):
            assert r.route_links[a].tolist() == single.route_links[b].tolist()
            assert r.route_share[a] is None
        assert r.route_latency.tolist() == single.route_latency.tolist()
        assert r.route_bottleneck.tolist() == single.route_bottleneck.tolist()


def test_only_ecmp_routes_connections_apart():
    g = topologies.fat_tree(4)
    for routing, apart in (("single", False), ("spray", False), ("ecmp", True)):
        r = Router(g, routing=routing)
        assert (r.route(0, 15, 0) != r.route(0, 15, 1)) is apart
        assert r.routes(np.array([0]), np.array([15]), 1).tolist() == [r.route(0, 15, 1)]


def test_an_unknown_routing_mode_is_one_line_naming_the_choices():
    with pytest.raises(NetworkError) as err:
        Router(topologies.star(2), routing="adaptive")
    assert str(err.value) == "routing must be one of ecmp, spray, single, dmodk, got 'adaptive'"


# -- dmodk: SimGrid's fat-tree zone routing ---------------------------------------------------


def simgrid_fat_tree(k: int):
    """SimGrid's fat tree ``"3;k/2,k/2,k;1,k/2,k/2;1,1,1"`` as ``FatTreeZone`` labels it, and
    its routing, ported from ``FatTreeZone.cpp`` (SimGrid 4.1) with no commsim names.

    A node is ``(level, label)``; a label has one digit per level, digit ``i`` counting
    ``up[i]`` below the node's level and ``down[i]`` from it up. A parent differs from its
    child in digit ``child level`` only; a host's label is its position in base ``down``.
    """
    h = k // 2
    down, up = (h, h, k), (1, h, h)

    def host(r: int) -> tuple:
        return (0, (r % h, r // h % h, r // h // h))

    def parent(node: tuple, d: int) -> tuple:
        level, label = node
        return (level + 1, label[:level] + (d,) + label[level + 1 :])

    def route(src: int, dst: int) -> list[tuple]:
        target = host(dst)[1]
        node, nodes = host(src), [host(src)]
        # Up while the destination is not below (``is_in_sub_tree``), by d-mod-k.
        while node[0] == 0 or node[1][node[0] :] != target[node[0] :]:
            level = node[0]
            node = parent(node, dst // int(np.prod(up[:level])) % up[level])
            nodes.append(node)
        while node[0] > 0:  # down: the one child whose digit is the destination's
            level, label = node
            node = (level - 1, label[: level - 1] + (target[level - 1],) + label[level:])
            nodes.append(node)
        return nodes

    links = [
        ((level, label), parent((level, label), d))
        for level in range(3)
        for label in itertools.product(*[range((up if i < level else down)[i]) for i in range(3)])
        for d in range(up[level])
    ]
    return route, links


def commsim_name(node: tuple, k: int):
    """A SimGrid fat-tree node's name in :func:`topologies.fat_tree`."""
    h = k // 2
    level, (a, b, c) = node
    return [a + h * b + h * h * c, f"edge{c}_{b}", f"agg{c}_{b}", f"core{b * h + c}"][level]


@pytest.mark.parametrize("k", [2, 4, 6])
def test_simgrid_fat_tree_labels_name_the_same_fat_tree(k):
    _, links = simgrid_fat_tree(k)
    named = {frozenset((commsim_name(a, k), commsim_name(b, k))) for a, b in links}
    assert len(named) == len(links)
    assert named == {frozenset(e) for e in topologies.fat_tree(k).edges}


@pytest.mark.parametrize("k", [2, 4, 6])
def test_dmodk_routes_as_simgrids_fat_tree_zone(k):
    route, _ = simgrid_fat_tree(k)
    r = Router(topologies.fat_tree(k), routing="dmodk")
    n = k**3 // 4
    for a in range(n):
        for b in range(n):
            want = [commsim_name(v, k) for v in route(a, b)] if a != b else []
            got = path(r, r.route(a, b)) if a != b else []
            assert got == want, (a, b)
    assert r.route_links[r.route(n - 1, n - 1)].size == 0


def test_dmodk_spreads_a_pod_shift_over_every_core_without_contention():
    g = topologies.fat_tree(4)
    for routing, busiest in (("dmodk", 1), ("single", 4)):
        r = Router(g, routing=routing)
        src = np.arange(16)
        load = np.bincount(
            np.concatenate([r.route_links[i] for i in r.routes(src, (src + 4) % 16)]),
            minlength=len(r.links),
        )
        assert load.max() == busiest, routing
    cores = {v for i in r.routes(src, (src + 4) % 16) for v in path(r, i) if "core" in str(v)}
    assert cores == {"core0"}  # single: every flow through one core


def test_dmodk_on_anything_but_a_fat_tree_is_one_line():
    with pytest.raises(NetworkError) as err:
        Router(topologies.torus2d(4, 4), routing="dmodk")
    assert str(err.value) == (
        "routing 'dmodk' needs a fat tree made by topologies.fat_tree, got family 'torus2d'; "
        "use ecmp, spray or single"
    )
    g = topologies.fat_tree(4)
    g.remove_edge("agg0_1", "core2")
    with pytest.raises(
        NetworkError, match=r"^routing 'dmodk' found no fat-tree link \('agg0_1', 'core2'\)"
    ):
        Router(g, routing="dmodk").route(0, 5)
