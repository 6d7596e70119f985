"""The modules of ``runs`` import one another in one direction: no circle, not even one
closed only for type checkers or inside a function."""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "runs"


def imports_within(path):
    """The ``runs`` modules a source file imports anywhere (top level, functions,
    ``if TYPE_CHECKING``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("runs."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("runs.")}
    return found


def test_the_modules_of_runs_import_one_another_without_a_circle():
    graph = nx.DiGraph()
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        module = f"runs.{path.stem}"
        graph.add_node(module)
        graph.add_edges_from((module, imported) for imported in imports_within(path))
    assert ("runs.run", "runs.writer") in graph.edges  # the result is saved by the writer
    assert list(nx.simple_cycles(graph)) == []
