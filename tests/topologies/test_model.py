import math

import networkx as nx
import pytest

from topologies import TopologyError, hosts, rank_to_node, star, switches, validate
from topologies.model import new_topology, require_int

LINK = {"bandwidth": 1.0, "latency": 1e-6}


def two_hosts(directed: bool = False) -> nx.Graph:
    g = nx.DiGraph() if directed else nx.Graph()
    g.add_node("a", kind="host", rank=1)
    g.add_node("b", kind="host", rank=0)
    g.add_edge("a", "b", **LINK)
    if directed:
        g.add_edge("b", "a", **LINK)
    return g


def test_hosts_in_rank_order_and_switches():
    g = two_hosts()
    g.add_node("s", kind="switch")
    g.add_edge("a", "s", **LINK)
    assert hosts(g) == ["b", "a"]
    assert switches(g) == ["s"]
    assert rank_to_node(g) == {0: "b", 1: "a"}
    assert validate(g) is g


def test_hosts_needs_ranks():
    g = nx.Graph()
    g.add_node(0, kind="host")
    with pytest.raises(TopologyError, match="host 0 has no integer 'rank'"):
        hosts(g)


def test_topology_error_is_value_error():
    assert issubclass(TopologyError, ValueError)


def test_valid_digraph_and_single_host():
    assert validate(two_hosts(directed=True))
    g = nx.Graph()
    g.add_node(0, kind="host", rank=0)
    assert validate(g) is g


def _modified(change) -> nx.Graph:
    g = two_hosts()
    g.add_node("s", kind="switch")
    g.add_edge("b", "s", **LINK)
    change(g)
    return g


def _set_node(v, **attrs):
    return lambda g: g.nodes[v].update(attrs)


def _set_edge(u, v, **attrs):
    return lambda g: g.edges[u, v].update(attrs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_node("a", kind="gpu"), "node 'a' has kind 'gpu'; set g.nodes['a']['kind'] to"),
        (lambda g: g.nodes["s"].pop("kind"), "node 's' has kind None"),
        (_set_node("s", rank=2), "switch 's' has rank 2; ranks live on hosts only"),
        (_set_node("a", rank=None), "host 'a' has rank None, not an int"),
        (_set_node("a", rank="1"), "host 'a' has rank '1', not an int"),
        (_set_node("a", rank=1.0), "host 'a' has rank 1.0, not an int"),
        (_set_node("a", rank=True), "host 'a' has rank True, not an int"),
        (_set_node("a", rank=0), "hosts 'a' and 'b' share rank 0"),
        (_set_node("a", rank=2), "host 'a' has rank 2, outside 0..1"),
        (_set_node("b", rank=-1), "host 'b' has rank -1, outside 0..1"),
        (lambda g: g.add_edge("s", "s", **LINK), "edge ('s', 's') is a self loop"),
        (lambda g: g.edges["a", "b"].pop("bandwidth"), "edge ('a', 'b') has no 'bandwidth'"),
        (lambda g: g.edges["a", "b"].pop("latency"), "edge ('a', 'b') has no 'latency'"),
        (_set_edge("a", "b", bandwidth=0.0), "edge ('a', 'b') has bandwidth 0.0; it must be"),
        (_set_edge("a", "b", bandwidth=-5), "has bandwidth -5"),
        (_set_edge("a", "b", bandwidth=math.inf), "has bandwidth inf"),
        (_set_edge("a", "b", bandwidth=math.nan), "has bandwidth nan"),
        (_set_edge("a", "b", bandwidth="100Gbps"), "has bandwidth '100Gbps'"),
        (_set_edge("a", "b", bandwidth=True), "has bandwidth True"),
        (_set_edge("b", "s", latency=0), "edge ('b', 's') has latency 0; it must be"),
        (_set_edge("b", "s", latency=-1e-6), "has latency -1e-06"),
        # Values no link has (a run reported 1e302 simulated seconds for 1e-300 bytes/s).
        (_set_edge("a", "b", bandwidth=1e-300), "has bandwidth 1e-300, outside 1 bit/s..8 Pbit/s"),
        (_set_edge("a", "b", bandwidth=1e16), "has bandwidth 1e+16, outside 1 bit/s..8 Pbit/s"),
        (_set_edge("b", "s", latency=1e6), "has latency 1000000.0, over a day"),
        (lambda g: g.add_node("t", kind="switch"), "node 't' is not connected to host 'b'"),
        (lambda g: g.add_node("c", kind="host", rank=2), "node 'c' is not connected to host"),
    ],
)
def test_validate_errors(change, message):
    g = _modified(change)
    with pytest.raises(TopologyError) as info:
        validate(g)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_validate_refuses_non_graphs_and_multigraphs():
    with pytest.raises(TopologyError, match="not MultiGraph"):
        validate(nx.MultiGraph())
    with pytest.raises(TopologyError, match="not dict"):
        validate({})  # type: ignore[arg-type]


def test_validate_needs_a_host():
    with pytest.raises(TopologyError, match="no hosts"):
        validate(nx.Graph())
    g = nx.Graph()
    g.add_node("s", kind="switch")
    with pytest.raises(TopologyError, match="no hosts"):
        validate(g)


def test_validate_directed_reachability():
    g = two_hosts(directed=True)
    g.remove_edge("b", "a")  # only a -> b remains: b (rank 0) cannot reach a
    with pytest.raises(TopologyError, match="host 'b' cannot reach host 'a' along directed"):
        validate(g)
    g = two_hosts(directed=True)
    g.remove_edge("a", "b")
    with pytest.raises(TopologyError, match="host 'a' cannot reach host 'b' along directed"):
        validate(g)
    g = two_hosts(directed=True)
    g.add_node("s", kind="switch")
    with pytest.raises(TopologyError, match="node 's' is not connected to host 'b'"):
        validate(g)


def test_directed_reachability_through_switches():
    g = nx.DiGraph()
    for i in range(3):
        g.add_node(i, kind="host", rank=i)
        g.add_edge(i, "up", **LINK)
        g.add_edge("down", i, **LINK)
    g.add_node("up", kind="switch")
    g.add_node("down", kind="switch")
    g.add_edge("up", "down", **LINK)
    assert validate(g) is g
    g.remove_edge("down", 2)  # host 2 can send but never receive
    with pytest.raises(TopologyError, match="host 0 cannot reach host 2"):
        validate(g)


def test_new_topology_parses_units_and_names_parameters():
    g = new_topology("x", directed=True, n=2, inter_bandwidth="8bps", intra_latency="2us")
    assert g.is_directed()
    assert g.graph == {"family": "x", "n": 2, "inter_bandwidth": 1.0, "intra_latency": 2e-6}
    with pytest.raises(ValueError, match="^intra_bandwidth: bad bandwidth '1G'"):
        new_topology("x", intra_bandwidth="1G")
    with pytest.raises(TopologyError, match="latency must be positive, got '0s'"):
        new_topology("x", latency="0s")


def test_require_int():
    assert require_int("k", 4, 2) == 4
    for bad in (1, 2.0, "4", True, None):
        with pytest.raises(TopologyError, match="^k must be an int >= 2"):
            require_int("k", bad, 2)


def test_builders_default_links():
    g = star(2)
    assert g.edges[0, "s0"] == {"bandwidth": 12.5e9, "latency": 1e-6}


@pytest.mark.parametrize("bad", [True, float("nan"), [1.0], -1.0])
def test_an_edge_whose_attributes_equal_a_checked_ones_is_still_checked_by_type(bad):
    # Links with equal attributes are checked once; True == 1 and [1.0] is unhashable, so
    # neither may ride on an earlier link's pass.
    g = nx.Graph()
    for r in range(3):
        g.add_node(r, kind="host", rank=r)
    g.add_edge(0, 1, bandwidth=1, latency=1e-6)
    g.add_edge(1, 2, bandwidth=bad, latency=1e-6)
    with pytest.raises(TopologyError, match="bandwidth"):
        validate(g)
