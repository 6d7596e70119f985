"""Equal-cost paths: the search from both ends finds what the search from the source finds."""

from __future__ import annotations

import heapq
import itertools
import random

import numpy as np
import pytest

import sim.equal_cost
import topologies
from sim.equal_cost import EqualCostPaths
from sim.paths import NoRouteError, ShortestPaths


def random_paths(seed: int, directed: bool) -> ShortestPaths:
    """A random graph of 14 nodes whose latencies tie often (1 or 2 units): equal-cost
    paths, and (directed) pairs with no path."""
    rng = random.Random(seed)
    n = 14
    links, latency = [], []
    for u, v in itertools.combinations(range(n), 2):
        if rng.random() < 0.3:
            lat = rng.choice([1.0, 1.0, 1.0, 2.0])
            links.append((u, v))
            latency.append(lat)
            if not directed:
                links.append((v, u))
                latency.append(lat)
            elif rng.random() < 0.5:
                links.append((v, u))
                latency.append(rng.choice([1.0, 2.0]))
    return ShortestPaths(list(range(n)), links, np.array(latency) * 1e-6, directed)


def middles(paths: ShortestPaths, spray: bool, resumed: bool, nodes=None) -> dict:
    """Every pair's equal-cost paths, each pair from a fresh object (so the search from both
    ends runs) or from one object asked for every source before (so its search from the
    source runs, resumed from pair to pair)."""
    out: dict = {}
    shared = EqualCostPaths(paths, spray=spray)
    nodes = range(len(paths.nodes)) if nodes is None else nodes
    for s, t in itertools.permutations(nodes, 2):
        ecp = shared if resumed else EqualCostPaths(paths, spray=spray)
        if resumed:
            ecp._sources.add(s)
        try:
            successors, sigma_t, n, ids, shares = ecp._middle(s, t)
        except NoRouteError as err:
            out[s, t] = str(err)
            continue
        out[s, t] = (
            successors,
            sigma_t,
            n,
            ids.tolist(),
            None if shares is None else shares.tolist(),
            [ecp.unrank(s, t, pick) for pick in range(n)],
        )
    return out


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_search_from_both_ends_gives_the_source_searchs_paths_counts_and_shares(seed, directed):
    paths = random_paths(seed, directed)
    both = middles(paths, spray=True, resumed=False)
    source = middles(paths, spray=True, resumed=True)
    assert both == source
    assert any(isinstance(v, tuple) and v[2] > 1 for v in both.values())  # not vacuous


@pytest.mark.parametrize(
    "build", [lambda: topologies.fat_tree(4), lambda: topologies.torus2d(4, 4)], ids=["ft4", "t44"]
)
def test_search_from_both_ends_on_multipath_topologies(build):
    g = build()
    paths = ShortestPaths(list(g.nodes), *_links(g), directed=False)
    inner = [i for i in range(len(g)) if not paths._stub[i]]  # hosts are peeled off
    both = middles(paths, spray=True, resumed=False, nodes=inner)
    assert both == middles(paths, spray=True, resumed=True, nodes=inner)
    assert max(v[2] for v in both.values()) >= 4


def test_a_source_asked_again_resumes_its_search_and_gets_the_same_paths():
    g = topologies.torus2d(4, 4)
    paths = ShortestPaths(list(g.nodes), *_links(g), directed=False)
    ecp = EqualCostPaths(paths, spray=False)
    first = [ecp.unrank(0, t, 5) for t in range(1, 16)]  # 0 -> 1 from both ends, the rest
    assert 0 in ecp._dags  # resumed from the source's kept search
    fresh = [EqualCostPaths(paths, spray=False).unrank(0, t, 5) for t in range(1, 16)]
    assert first == fresh


def test_a_pair_on_a_fat_tree_settles_the_levels_up_to_its_middle_not_the_fabric(monkeypatch):
    # Edge switch to edge switch of another pod: four hops up and down through the cores. A
    # search from the source alone settles every switch nearer than the destination (every
    # pod's aggregation switches: 63 heap pops on the 80 switches of fat_tree(8) before this
    # change); from both ends, the source's pod up to the cores and the destination's edge
    # and aggregation switches (33).
    g = topologies.fat_tree(8)
    nodes = list(g.nodes)
    pops = 0
    heappop = heapq.heappop

    def counting_pop(heap):
        nonlocal pops
        pops += 1
        return heappop(heap)

    paths = ShortestPaths(nodes, *_links(g), directed=False)
    ecp = EqualCostPaths(paths, spray=False)
    monkeypatch.setattr(sim.equal_cost.heapq, "heappop", counting_pop, raising=True)
    s, t = nodes.index("edge0_0"), nodes.index("edge3_2")
    successors, _, n, _, _ = ecp._middle(s, t)
    assert n == 16  # one path per core switch
    switches = sum(1 for v in nodes if g.nodes[v]["kind"] == "switch")
    assert pops <= switches // 2, (pops, switches)


def _links(g) -> tuple[list, np.ndarray]:
    edges = list(g.edges(data="latency"))
    links = [(u, v) for u, v, _ in edges] + [(v, u) for u, v, _ in edges]
    latency = np.array([lat for *_, lat in edges] * 2, dtype=float)
    return links, latency
