"""The ``commsim`` command line as a whole: one way to each job."""

import re
from pathlib import Path

from typer.testing import CliRunner

from studies.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_start_is_the_sweep_make_demo_runs_and_commsim_demo_is_gone():
    """`commsim demo` was a second, file-free quick start beside `make demo`'s sweep."""
    assert CliRunner().invoke(app, ["demo", "--help"]).exit_code == 2
    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"\bsweep\b", listed) and not re.search(r"\bdemo\b", listed)
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].splitlines()[1].strip()
    assert recipe.startswith("$(BIN)/commsim sweep examples/sweep_bandwidth.toml ")
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "commsim demo" not in readme
