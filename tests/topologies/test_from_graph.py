import networkx as nx
import pytest

from topologies import TopologyError, UnitError, from_graph, hosts, ring, switches


def test_fills_defaults_and_arguments():
    g = nx.path_graph(4)
    g.add_edge(3, 4, bandwidth="1GB/s", latency=2e-6)
    t = from_graph(g, latency="5us")
    assert t.graph == {"family": "custom"}
    assert t.edges[0, 1] == {"bandwidth": 12.5e9, "latency": 5e-6}
    assert t.edges[3, 4] == {"bandwidth": 1e9, "latency": 2e-6}  # kept, strings parsed
    assert hosts(t) == [0, 1, 2, 3, 4]
    assert all(d == {"kind": "host", "rank": v} for v, d in t.nodes(data=True))


def test_returns_a_copy():
    g = nx.cycle_graph(3)
    t = from_graph(g)
    assert t is not g
    assert dict(g.nodes[0]) == {}
    assert g.edges[0, 1] == {}
    built = ring(3)
    assert from_graph(built).graph == built.graph


def test_keeps_kinds_and_ranks_and_fills_missing_ranks_in_sorted_order():
    g = nx.Graph()
    g.add_edges_from([("c", "sw"), ("a", "sw"), ("b", "sw"), ("d", "sw")])
    g.nodes["sw"]["kind"] = "switch"
    g.nodes["d"]["rank"] = 1
    t = from_graph(g)
    assert switches(t) == ["sw"]
    assert [t.nodes[v]["rank"] for v in "abcd"] == [0, 2, 3, 1]
    assert hosts(t) == ["a", "d", "b", "c"]


def test_mixed_and_tuple_node_ids():
    mixed = nx.Graph([(2, "x"), ("x", 10), (10, "a")])
    assert hosts(from_graph(mixed)) == [2, 10, "a", "x"]
    grid = from_graph(nx.grid_2d_graph(2, 2))
    assert hosts(grid) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_digraph_stays_directed():
    t = from_graph(nx.DiGraph([(0, 1), (1, 0)]))
    assert t.is_directed()
    with pytest.raises(TopologyError, match="host 0 cannot reach host 2"):
        from_graph(nx.DiGraph([(0, 1), (1, 0), (2, 0)]))


def test_errors():
    with pytest.raises(TopologyError, match="not MultiGraph"):
        from_graph(nx.MultiGraph([(0, 1)]))
    with pytest.raises(TopologyError, match=r"^edge \(0, 1\): bad bandwidth '1G'"):
        from_graph(nx.Graph([(0, 1, {"bandwidth": "1G"})]))
    with pytest.raises(UnitError, match="bad time 'soon'"):
        from_graph(nx.path_graph(2), latency="soon")
    with pytest.raises(TopologyError, match="not connected"):
        from_graph(nx.empty_graph(2))
    with pytest.raises(TopologyError, match="has bandwidth 0"):
        from_graph(nx.Graph([(0, 1, {"bandwidth": 0})]))
