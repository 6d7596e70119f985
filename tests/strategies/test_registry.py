"""The strategy registry: the docs' options tables are made from the declarations."""

from pathlib import Path

from strategies.registry import options_markdown

DOCS = Path(__file__).parents[2] / "docs" / "strategies.md"


def test_the_options_tables_in_the_docs_are_the_declarations():
    text = DOCS.read_text()
    begin, end = "<!-- options:begin -->\n", "\n<!-- options:end -->"
    written = text[text.index(begin) + len(begin) : text.index(end)]
    assert written == options_markdown(), (
        "docs/strategies.md's options tables are out of date; paste "
        "strategies.registry.options_markdown() between its options markers"
    )


def test_every_shipped_strategy_declares_its_options():
    tables = options_markdown()
    assert "(no declared options)" not in tables
    assert "| `period` | `8` | an integer >= 1 or 'adaptive'" in tables  # LocalSGD's
