import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import topologies  # noqa: E402
from studies.cli.topo import app  # noqa: E402

runner = CliRunner()


def test_describe_spec():
    result = runner.invoke(
        app, ["describe", "fat_tree:k=4,bandwidth=100Gbps,latency=1us"], terminal_width=120
    )
    assert result.exit_code == 0, result.output
    for text in [
        "hosts",
        "16",
        "switches",
        "20",
        "48 full-duplex",
        "diameter (hops)",
        "6us",
        "800Gbps",
    ]:
        assert text in result.stdout


def test_describe_file(tmp_path):
    path = topologies.save(topologies.hierarchical(2, 4), tmp_path / "h.graphml")
    result = runner.invoke(app, ["describe", str(path)], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "hierarchical" in result.stdout and "10 full-duplex" in result.stdout


def test_draw_writes_png(tmp_path):
    out = tmp_path / "torus.png"
    result = runner.invoke(app, ["draw", "torus2d:rows=3,cols=4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "mesh:n=4"], "error: unknown topology kind 'mesh'; valid kinds: ring"),
        (["describe", "ring:m=4"], "error: unknown parameter 'm' for ring; valid: n, bandwidth"),
        (["describe", "ring:n=4,bandwidth=100G"], "error: bandwidth: bad bandwidth '100G'"),
        (["describe", "missing.json"], "error: no topology file 'missing.json'"),
        (["draw", "fat_tree:k=3"], "error: k must be even"),
    ],
)
def test_bad_spec_is_one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_draw_unwritable_output(tmp_path):
    result = runner.invoke(app, ["draw", "ring:n=3", "--out", str(tmp_path / "x.unknownfmt")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write")


def test_commsim_entry_point():
    from studies.cli import app as commsim

    result = runner.invoke(commsim, ["topo", "describe", "ring:n=8"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "bisection bandwidth" in result.stdout
