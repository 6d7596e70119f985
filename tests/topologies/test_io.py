import json

import networkx as nx
import pytest

import topologies
from topologies import TopologyError, from_spec, load, save
from topologies.io import parse_spec


def assert_same(a: nx.Graph, b: nx.Graph) -> None:
    assert type(a) is type(b)
    assert nx.utils.graphs_equal(a, b)
    assert list(a.nodes) == list(b.nodes)
    for v in a:
        assert a.nodes[v] == b.nodes[v]
        assert all(
            type(x) is type(y)
            for x, y in zip(a.nodes[v].values(), b.nodes[v].values(), strict=True)
        )
    for u, v, d in a.edges(data=True):
        assert b.edges[u, v] == d
    assert a.graph == b.graph
    assert [type(v) for v in a] == [type(v) for v in b]


def directed_example() -> nx.DiGraph:
    g = nx.DiGraph(family="custom", note="asymmetric uplink", factor=2)
    g.add_node(0, kind="host", rank=0, weight=1.5, fast=True)
    g.add_node("1", kind="host", rank=1)
    g.add_node((2, "a"), kind="switch")
    g.add_edge(0, (2, "a"), bandwidth=1.0, latency=1e-6)
    g.add_edge((2, "a"), 0, bandwidth=3.0, latency=2e-6)
    g.add_edge("1", (2, "a"), bandwidth=2, latency=1e-6)  # an int bandwidth stays an int
    g.add_edge((2, "a"), "1", bandwidth=2.5, latency=1e-6)
    return topologies.validate(g)


EXAMPLES = {
    "fat_tree": lambda: topologies.fat_tree(4),
    "hierarchical": lambda: topologies.hierarchical(2, 3, oversubscription=1.5),
    "torus": lambda: topologies.torus2d(2, 3),
    "random_regular": lambda: topologies.random_regular(6, 3, seed=2),
    "star": lambda: topologies.star(3),
    "grid": lambda: topologies.from_graph(nx.grid_2d_graph(2, 3)),
    "directed": directed_example,
}


@pytest.mark.parametrize("suffix", [".graphml", ".json"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_round_trip(tmp_path, name, suffix):
    g = EXAMPLES[name]()
    path = save(g, tmp_path / f"topo{suffix}")
    assert path.exists()
    assert_same(load(path), g)
    assert_same(from_spec(str(path)), g)
    assert_same(from_spec(path), g)


def test_json_is_networkx_node_link(tmp_path):
    path = save(topologies.ring(3), tmp_path / "ring.json")
    data = json.loads(path.read_text())
    assert data["directed"] is False
    assert [n["id"] for n in data["nodes"]] == [0, 1, 2]


def test_graphml_refuses_ids_that_print_alike(tmp_path):
    g = topologies.from_graph(nx.Graph([("0", 0)]))
    with pytest.raises(TopologyError, match="nodes '0' and 0 both print as '0'"):
        save(g, tmp_path / "x.graphml")
    assert_same(load(save(g, tmp_path / "x.json")), g)


def test_graphml_refuses_unwritable_attributes(tmp_path):
    g = topologies.ring(3)
    g.nodes[0]["coords"] = [1, 2]
    with pytest.raises(TopologyError, match="cannot write .* as GraphML"):
        save(g, tmp_path / "x.graphml")


def test_file_errors(tmp_path):
    with pytest.raises(TopologyError, match="unknown topology file type '.txt'"):
        save(topologies.ring(3), tmp_path / "x.txt")
    with pytest.raises(TopologyError, match="no topology file"):
        load(tmp_path / "missing.json")
    with pytest.raises(TopologyError, match="no topology file"):
        from_spec(str(tmp_path / "missing.graphml"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(nx.node_link_data(nx.path_graph(2), edges="edges")))
    with pytest.raises(TopologyError, match="node 0 has kind None"):
        load(bad)


_NS = '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
_ID_TYPE = '<key id="t" for="node" attr.name="id_type" attr.type="string"/>'


def _node_link(**change):
    """A valid ring(2) file's JSON, with ``change`` applied (None deletes a key)."""
    data = nx.node_link_data(topologies.ring(2), edges="edges")
    data.update(change)
    return json.dumps({k: v for k, v in data.items() if v is not None})


#: Files that raised from deep inside the parsers (ParseError, KeyError, RecursionError ...).
MALFORMED = [
    ("garbage.graphml", "not xml", "not a readable GraphML topology (syntax error"),
    ("empty.graphml", "", "not a readable GraphML topology (no element found"),
    ("cut.graphml", "<graphml><graph><node id='a'/></graph>", "no element found"),
    ("binary.graphml", b"\xff\xfe\x00garbage", "not a readable GraphML topology"),
    ("nograph.graphml", _NS + "</graphml>", "file not successfully read as graphml"),
    (
        "badtype.graphml",
        _NS + '<key id="r" for="node" attr.name="rank" attr.type="int"/><graph '
        'edgedefault="undirected"><node id="a"><data key="r">x</data></node></graph></graphml>',
        "invalid literal for int()",
    ),
    (
        "nokey.graphml",
        _NS + '<graph edgedefault="undirected"><node id="a"><data key="zz">1</data></node>'
        "</graph></graphml>",
        "no key zz",
    ),
    (
        "badid.graphml",
        _NS + _ID_TYPE + '<graph edgedefault="undirected"><node id="{bad"><data key="t">json'
        "</data></node></graph></graphml>",
        "not a readable GraphML topology (Expecting property name",
    ),
    (
        "dictid.graphml",
        _NS + _ID_TYPE + '<graph edgedefault="undirected"><node id="{}"><data key="t">json'
        "</data></node></graph></graphml>",
        "node id {} is not a number, a string or a list of them",
    ),
    ("list.json", "[1, 2]", "a topology is a JSON object with 'nodes' and 'edges', not list"),
    ("null.json", "null", "not NoneType"),
    ("invalid.json", "{nope", "not a readable JSON node-link topology (Expecting property"),
    ("binary.json", b"\xff\xfe\x00", "not a readable JSON node-link topology ('utf-8' codec"),
    ("nodes_str.json", _node_link(nodes="abc"), "'nodes' must be a list of objects, got str"),
    ("nodes_dict.json", _node_link(nodes={"a": 1}), "'nodes' must be a list of objects, got dict"),
    ("node_int.json", _node_link(nodes=[1]), "nodes[0] has no 'id'"),
    ("no_id.json", _node_link(nodes=[{"kind": "host", "rank": 0}]), "nodes[0] has no 'id'"),
    ("no_edges.json", _node_link(edges=None), "no 'edges' list"),
    ("edges_str.json", _node_link(edges="x"), "'edges' must be a list of objects, got str"),
    ("no_source.json", _node_link(edges=[{"target": 0}]), "edges[0] has no 'source'"),
    ("dict_id.json", _node_link(nodes=[{"id": {"a": 1}}]), "node id {'a': 1} is not a number"),
    (
        "deep.json",
        '{"nodes": [{"id": ' + "[" * 100_000 + "]" * 100_000 + "}]}",
        "not a readable JSON node-link topology (nested too deeply)",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_file_is_one_line_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(TopologyError) as caught:
        load(path)
    text = str(caught.value)
    assert text.startswith(repr(str(path))) and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fat_tree:k=4,bandwidth=100Gbps,latency=1us", lambda: topologies.fat_tree(4)),
        ("ring:n=5", lambda: topologies.ring(5)),
        (" torus2d : rows=2 , cols=3 ", lambda: topologies.torus2d(2, 3)),
        (
            "hierarchical:nodes=2,gpus_per_node=4,oversubscription=2.5",
            lambda: topologies.hierarchical(2, 4, oversubscription=2.5),
        ),
        ("random_regular:n=8,degree=3,seed=4", lambda: topologies.random_regular(8, 3, 4)),
        ("star:n=3,bandwidth=1e9,latency=0.5", lambda: topologies.star(3, 1e9, 0.5)),
        (
            {"kind": "fully_connected", "n": 4, "bandwidth": "25GB/s"},
            lambda: topologies.fully_connected(4, bandwidth=25e9),
        ),
    ],
)
def test_from_spec(spec, expected):
    assert_same(from_spec(spec), expected())


def test_from_spec_passes_graphs_through():
    g = topologies.ring(3)
    assert from_spec(g) is g


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mesh:n=4", "^unknown topology kind 'mesh'; valid kinds: ring, star, fully_connected"),
        ("ring:m=4", "^unknown parameter 'm' for ring; valid: n, bandwidth, latency$"),
        ("ring", "^ring needs parameter 'n'; valid: n, bandwidth, latency$"),
        ("ring:n", "^topology: bad item 'n' in 'ring:n'; write name:key=value"),
        ("ring:=3", "^topology: bad item '=3'"),
        (
            "star:n=4,bandwith=1Gbps",
            "^unknown parameter 'bandwith' for star; did you mean 'bandwidth'",
        ),
        ("fat_tree:k=5", "^k must be even"),
        ("fat_tree:k=four", "^k must be an int >= 2, got 'four'"),
        ({"n": 3}, "^topology spec .* has no 'kind'; valid kinds: ring"),
        ({"kind": "ring", "n": 3, "size": 1}, "^unknown parameter 'size' for ring"),
        (42, "^a topology spec is a dict, a string or a path, not int"),
    ],
)
def test_from_spec_errors(spec, message):
    with pytest.raises(TopologyError, match=message):
        from_spec(spec)


def test_a_topology_spec_reads_as_a_strategy_spec_does():
    """One grammar for every ``name:key=value`` string: a topology's is a strategy's."""
    from strategies.specs import parse_spec as strategy_spec

    text = "star:n=4, bandwidth=1Gbps,latency=none"
    name, params = strategy_spec(text, "topology")
    assert (
        parse_spec(text)
        == {"kind": name, **params}
        == {
            "kind": "star",
            "n": 4,
            "bandwidth": "1Gbps",
            "latency": None,
        }
    )


def test_from_spec_unit_errors_name_the_parameter():
    with pytest.raises(ValueError, match="^latency: bad time '1 usec'"):
        from_spec("ring:n=3,latency=1 usec")
