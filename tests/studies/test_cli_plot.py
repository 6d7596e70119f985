import matplotlib

matplotlib.use("Agg")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from studies.cli.plot import _ALIASES, _KINDS, plot  # noqa: E402
from studies.plot import ALIASES, KINDS  # noqa: E402

app = typer.Typer()
app.command()(plot)


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_kind_names_in_the_cli_match_the_plot_package():
    assert list(_KINDS) + list(_ALIASES) == list(KINDS)
    assert set(_ALIASES) == set(ALIASES)


def test_the_curves_old_names_draw_the_same_figure_as_the_metric_neutral_ones(runs_root, tmp_path):
    run = runs_root / "sim" / "allreduce" / "bw=1Gbps" / "seed=0"
    for old, new in ALIASES.items():
        drawn = {}
        for kind in (old, new):
            out = tmp_path / f"{kind}.svg"
            result = _invoke(run, "--kind", kind, "--out", out)
            assert result.exit_code == 0, result.output
            drawn[kind] = len(out.read_text().splitlines())
        assert drawn[old] == drawn[new]
    assert "metric-vs-time" in _invoke("--help").output


def test_help_lists_kinds_and_options():
    result = _invoke("--help")
    assert result.exit_code == 0
    for word in ("DIRS_OR_GLOBS", "--kind", "--x", "--target", "--out", "time-to-target"):
        assert word in result.output


def test_plot_writes_a_figure_of_globbed_runs(runs_root, tmp_path):
    out = tmp_path / "ttt.svg"
    result = _invoke(
        f"{runs_root}/sim/allreduce/*/*",
        "--kind",
        "time-to-target",
        "--x",
        "topology.bandwidth",
        "--target",
        "2.2",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out} (time-to-target, 4 runs)"
    assert out.read_text().lstrip().startswith("<?xml") and "2.2" in out.read_text()


def test_every_kind_renders_from_the_command_line(runs_root, tmp_path):
    for kind in KINDS:
        if kind == "faults":  # needs runs with random crashes: tests/studies/test_faults.py
            continue
        if kind in ALIASES:  # the same figure as its new name's (above)
            continue
        paths = [runs_root / "sim" / "allreduce" / "bw=1Gbps" / "seed=0"]
        if kind in ("time-to-target", "pareto"):
            paths = [runs_root / "sim"]
        if kind == "speedup":
            paths = [f"{runs_root}/sim/allreduce/bw=1Gbps", runs_root / "scaling" / "allreduce"]
        out = tmp_path / f"{kind}.png"
        result = _invoke(*paths, "--kind", kind, "--out", out)
        assert result.exit_code == 0, (kind, result.output)
        assert out.stat().st_size > 5_000


def test_errors_are_one_line_with_suggestions(runs_root, tmp_path):
    out = tmp_path / "f.png"
    cases = [
        (["--kind", "los-vs-time"], "--kind 'los-vs-time' is unknown; did you mean 'loss-vs-time'"),
        (["--kind", "speedup", "--x", "world_sise"], "did you mean 'world_size'"),
        (["--out", tmp_path / "f.jpg"], "unsupported suffix '.jpg'; use one of .png, .pdf, .svg"),
        (["--kind", "breakdown", "--x", "seed"], "--x does not apply to --kind breakdown"),
    ]
    for args, message in cases:
        result = _invoke(runs_root / "scaling", *args, *([] if "--out" in args else ["--out", out]))
        assert result.exit_code == 2, args
        assert message in result.output and len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    result = _invoke(f"{tmp_path}/none-*", "--out", out)
    assert result.exit_code == 2 and f"nothing matched '{tmp_path}/none-*'" in result.output
    result = _invoke(runs_root / "real", "--kind", "utilisation", "--out", out)
    assert result.exit_code == 2 and "is a real run" in result.output
    assert not out.exists()


def test_comparison_is_a_kind_of_the_command_line(runs_root, tmp_path):
    out = tmp_path / "comparison.png"
    result = _invoke(
        runs_root / "sim" / "allreduce" / "bw=1Gbps",
        "--kind",
        "comparison",
        "--title",
        "study",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out} (comparison, 2 runs)"
    assert out.stat().st_size > 5_000
