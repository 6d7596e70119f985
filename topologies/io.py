"""Save and load topologies (GraphML and JSON node-link), and build them from specs.

Both formats round-trip exactly: node ids (ints, strs, tuples of those), attribute types,
graph attributes, and ``Graph`` versus ``DiGraph``. GraphML stores every node id as text, so
:func:`save` adds a node attribute ``id_type`` (``"str"``, or ``"json"`` for an id written as
JSON text) that :func:`load` reads and removes.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import networkx as nx

import options.spec
from topologies.model import TopologyError, validate
from topologies.registry import BUILDERS, builder

__all__ = ["from_spec", "load", "parse_spec", "save"]

_SUFFIXES = (".graphml", ".json")


def _suffix(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise TopologyError(
            f"unknown topology file type {suffix or path!r} in {str(path)!r}; "
            f"use one of {', '.join(_SUFFIXES)}"
        )
    return suffix


def _to_json(x: Any) -> Any:
    return [_to_json(y) for y in x] if isinstance(x, tuple) else x


def _from_json(x: Any) -> Any:
    return tuple(_from_json(y) for y in x) if isinstance(x, list) else x


def save(g: nx.Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``g`` to ``path`` as GraphML (``.graphml``) or JSON node-link (``.json``).

    Returns the path written. Attribute values must be str, int, float or bool for GraphML.

    Examples
    --------
    >>> import tempfile, topologies
    >>> g = topologies.star(3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     nx.utils.graphs_equal(load(save(g, Path(tmp) / "star.graphml")), g)
    True
    """
    path = Path(path)
    if _suffix(path) == ".json":
        data = nx.node_link_data(g, edges="edges")
        for node in data["nodes"]:
            node["id"] = _to_json(node["id"])
        for edge in data["edges"]:
            edge["source"], edge["target"] = _to_json(edge["source"]), _to_json(edge["target"])
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path
    names: dict[str, Any] = {}
    for v in g:
        name = v if isinstance(v, str) else json.dumps(_to_json(v))
        if name in names:
            raise TopologyError(
                f"nodes {names[name]!r} and {v!r} both print as {name!r}; "
                "rename one (GraphML stores node ids as text) or save as .json"
            )
        names[name] = v
    out = nx.relabel_nodes(g, {v: k for k, v in names.items()}, copy=True)
    for name, v in names.items():
        out.nodes[name]["id_type"] = "str" if isinstance(v, str) else "json"
    try:
        nx.write_graphml(out, path)
    except (nx.NetworkXError, TypeError, KeyError) as error:
        raise TopologyError(
            f"cannot write {str(path)!r} as GraphML ({error}); "
            "use str/int/float/bool attributes or save as .json"
        ) from None
    return path


def load(path: str | os.PathLike[str]) -> nx.Graph:
    """Read a topology written by :func:`save` (or any node-link JSON / GraphML) and validate it.

    Examples
    --------
    >>> import tempfile, topologies
    >>> g = topologies.torus2d(2, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     h = load(save(g, Path(tmp) / "torus.json"))
    >>> nx.utils.graphs_equal(h, g), h.graph == g.graph
    (True, True)
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise TopologyError(f"no topology file {str(path)!r}")
    try:
        g = _read_json(path) if suffix == ".json" else _read_graphml(path)
    except TopologyError as error:
        raise TopologyError(f"{str(path)!r}: {error}") from None
    # A file someone wrote by hand, or a broken one: whatever the parser says, in one line.
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        RecursionError,
        nx.NetworkXError,
        ElementTree.ParseError,
        UnicodeDecodeError,
    ) as error:
        what = "JSON node-link" if suffix == ".json" else "GraphML"
        reason = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, RecursionError):
            reason = "nested too deeply"
        raise TopologyError(
            f"{str(path)!r} is not a readable {what} topology ({reason}); write it with "
            "topologies.save"
        ) from None
    return validate(g)


def _read_json(path: Path) -> nx.Graph:
    data = json.loads(path.read_text())
    _check_node_link(data)
    for node in data["nodes"]:
        node["id"] = _node_id(node["id"])
    for edge in data["edges"]:
        edge["source"], edge["target"] = _node_id(edge["source"]), _node_id(edge["target"])
    return nx.node_link_graph(data, edges="edges")


def _check_node_link(data: Any) -> None:
    """The shape :func:`save` writes: ``nodes`` with an ``id`` each, ``edges`` with a
    ``source`` and a ``target`` each."""
    if not isinstance(data, dict):
        raise TopologyError(
            f"a topology is a JSON object with 'nodes' and 'edges', not {type(data).__name__}"
        )
    for key, needs in (("nodes", ("id",)), ("edges", ("source", "target"))):
        if key not in data:
            raise TopologyError(f"no '{key}' list")
        items = data[key]
        if not isinstance(items, list):
            raise TopologyError(f"'{key}' must be a list of objects, got {type(items).__name__}")
        for i, item in enumerate(items):
            missing = [k for k in needs if not isinstance(item, dict) or k not in item]
            if missing:
                raise TopologyError(f"{key}[{i}] has no {' or '.join(map(repr, missing))}")


def _node_id(value: Any) -> Any:
    """A node id as written (lists were tuples), which must be hashable."""
    node = _from_json(value)
    try:
        hash(node)
    except TypeError:
        raise TopologyError(
            f"node id {value!r} is not a number, a string or a list of them"
        ) from None
    return node


def _read_graphml(path: Path) -> nx.Graph:
    g = nx.read_graphml(path)
    ids = {v: json.loads(v) if d.get("id_type") == "json" else v for v, d in g.nodes(data=True)}
    g = nx.relabel_nodes(g, {v: _node_id(i) for v, i in ids.items()}, copy=True)
    for _, d in g.nodes(data=True):
        d.pop("id_type", None)
    for key in ("node_default", "edge_default"):  # added by networkx's GraphML reader
        g.graph.pop(key, None)
    return g


def parse_spec(spec: str) -> dict[str, Any]:
    """Split a ``"kind:name=value,..."`` spec string into a builder dict (not yet checked),
    with the one grammar of spec strings (:func:`options.spec.parse_spec`).

    Examples
    --------
    >>> parse_spec("star:n=4,bandwidth=1Gbps,latency=1e-5")
    {'kind': 'star', 'n': 4, 'bandwidth': '1Gbps', 'latency': 1e-05}
    >>> parse_spec("ring:n")
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: topology: bad item 'n' in 'ring:n'; write name:key=value,..., e.g. 'fat_tree:k=4,bandwidth=100Gbps'
    """
    try:
        kind, params = options.spec.parse_spec(spec, "topology", "fat_tree:k=4,bandwidth=100Gbps")
    except options.spec.SpecError as error:
        raise TopologyError(str(error)) from None
    return {"kind": kind, **params}


def from_spec(spec: str | os.PathLike[str] | dict[str, Any] | nx.Graph) -> nx.Graph:
    """Build a topology from a spec: a dict, a ``"kind:name=value,..."`` string, or a file.

    Parameters
    ----------
    spec : dict, str, path or nx.Graph
        ``{"kind": "fat_tree", "k": 4, "bandwidth": "100Gbps"}``, the same as
        ``"fat_tree:k=4,bandwidth=100Gbps"``, a path to a ``.graphml``/``.json`` file written by
        :func:`save`, or a graph (validated and returned as is).

    Raises
    ------
    TopologyError
        Naming the unknown kind or parameter, and listing the valid ones.

    Examples
    --------
    >>> g = from_spec("fat_tree:k=4,bandwidth=100Gbps,latency=1us")
    >>> g.graph["family"], g.number_of_nodes()
    ('fat_tree', 36)
    >>> from_spec({"kind": "ring", "n": 4, "size": 2})
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: unknown parameter 'size' for ring; valid: n, bandwidth, latency
    """
    if isinstance(spec, nx.Graph):
        return validate(spec)
    if isinstance(spec, os.PathLike) or (
        isinstance(spec, str) and (Path(spec).suffix.lower() in _SUFFIXES or os.path.isfile(spec))
    ):
        return load(spec)
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if not isinstance(spec, dict):
        raise TopologyError(
            f"a topology spec is a dict, a string or a path, not {type(spec).__name__}"
        )
    params = dict(spec)
    if "kind" not in params:
        raise TopologyError(
            f"topology spec {spec!r} has no 'kind'; valid kinds: {', '.join(BUILDERS)}"
        )
    name = params.pop("kind")
    build = builder(name)
    signature = inspect.signature(build)
    valid = ", ".join(signature.parameters)
    for key in params:
        if key not in signature.parameters:
            hint = options.spec.did_you_mean(key, signature.parameters)
            raise TopologyError(
                f"unknown parameter {key!r} for {name}{hint or ';'} valid: {valid}", key
            )
    for key, parameter in signature.parameters.items():
        if parameter.default is inspect.Parameter.empty and key not in params:
            raise TopologyError(f"{name} needs parameter {key!r}; valid: {valid}", key)
    return build(**params)
