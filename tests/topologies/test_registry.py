import inspect

import networkx as nx
import pytest

from topologies import BUILDERS, TopologyError
from topologies.registry import builder


def test_registry_names_match_functions_and_families():
    assert list(BUILDERS) == [
        "ring",
        "star",
        "fully_connected",
        "torus2d",
        "fat_tree",
        "hierarchical",
        "random_regular",
    ]
    for name, build in BUILDERS.items():
        assert build.__name__ == name
        assert {"bandwidth", "latency"} <= set(inspect.signature(build).parameters)
        required = [
            p
            for p in inspect.signature(build).parameters.values()
            if p.default is inspect.Parameter.empty
        ]
        g = build(*([4, 2] if name == "random_regular" else [2] * len(required)))
        assert g.graph["family"] == name


def test_unknown_builder():
    with pytest.raises(TopologyError, match="unknown topology kind 'tree'; valid kinds: ring"):
        builder("tree")


def test_is_as_built():
    from topologies import fat_tree, from_graph
    from topologies.registry import is_as_built

    g = fat_tree(4)
    assert is_as_built(g)
    assert is_as_built(from_graph(g))
    h = g.copy()
    h.remove_edge("agg0_0", "core0")
    h.add_edge("agg0_0", "core2", bandwidth=12.5e9, latency=1e-6)
    assert not is_as_built(h)
    h = g.copy()
    h.graph["k"] = 6
    assert not is_as_built(h)
    h = g.copy()
    h.graph["colour"] = "red"
    assert not is_as_built(h)
    assert not is_as_built(from_graph(g.to_directed()))
    assert not is_as_built(from_graph(nx.path_graph(3)))
