"""The notebooks run top to bottom (executed, not just parsed), at their small size, and are
kept in git without outputs."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# A cell that calls one of these shows a figure: studies.plot's kinds, topologies.draw.
PLOTS = re.compile(
    r"\b(loss_vs_time|loss_vs_bytes|time_to_target|speedup|breakdown|staleness|utilisation|"
    r"pareto|comparison|faults|draw)\("
)
NAMES = [
    "01_quickstart",
    "02_cost_vs_convergence",
    "03_stragglers_and_staleness",
    "04_sim_vs_real",
    "05_faults",
    "06_scale",
    "07_rl_agents",
]


def test_the_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    """Outputs in git are megabytes of images and noise in every diff."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    # As papermill does: the cell tagged "parameters" holds the study's size; a cell after it
    # sets the small one, so a reader sees the real sizes and the suite runs in seconds.
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged 'parameters' (small = False)"
    assert notebook.cells[tagged[0]].source.strip() == "small = False"
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell("small = True"))
    # execute() raises CellExecutionError, naming the cell, on the first cell that fails. The
    # notebooks write results/ under their working directory: here, a temporary one.
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)  # every cell ran
    for cell in code:
        if PLOTS.search(cell.source):
            shown = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert shown, f"this cell draws but shows no figure:\n{cell.source}"
