import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from studies.load import load  # noqa: E402
from studies.plot import (  # noqa: E402
    KINDS,
    breakdown,
    comparison,
    loss_vs_bytes,
    loss_vs_time,
    pareto,
    speedup,
    staleness,
    time_to_target,
    utilisation,
)
from studies.plot.pareto import pareto_front  # noqa: E402
from studies.plot.style import colour  # noqa: E402

TARGET = 2.1  # the study's target_loss (conftest)
UTILISATION_RUN = "sim/allreduce/bw=1Gbps/seed=0"
#: A hand-made links table: (src, dst) -> utilisation of that direction.
LINK_UTILISATION = {
    ("0", "s0"): 0.8,
    ("s0", "0"): 0.2,
    ("1", "s0"): 0.1,
    ("s0", "1"): 0.4,
    ("2", "s0"): 0.3,
    ("s0", "2"): 0.3,
    ("3", "s0"): 0.0,
    ("s0", "3"): 0.6,
}


def _evals(run):
    metrics = pd.read_parquet(f"{run}/metrics.parquet")
    return metrics[metrics["kind"] == "eval"]


def _first_hit(run, column="time", target=TARGET):
    evals = _evals(run)
    hit = evals[evals["loss"] <= target]
    return float(hit[column].iloc[0]) if len(hit) else np.nan


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_kinds_name_every_figure():
    assert list(KINDS) == [
        "metric-vs-time",
        "metric-vs-bytes",
        "time-to-target",
        "speedup",
        "breakdown",
        "staleness",
        "utilisation",
        "pareto",
        "comparison",
        "faults",
        "loss-vs-time",  # the older names, kept
        "loss-vs-bytes",
    ]


def test_loss_vs_time_overlays_sim_solid_averaged_and_real_dashed(runs_root):
    df = load([f"{runs_root}/sim/allreduce/bw=1Gbps/*", runs_root / "real"])
    ax = loss_vs_time(df).axes[0]
    assert ax.get_xlabel() == "time (s): simulated (solid) / wall (dashed)"
    assert ax.get_ylabel() == "held-out loss"
    sim_line, real_line = ax.lines
    assert _legend(ax) == ["allreduce", "allreduce (real)"]
    assert sim_line.get_linestyle() == "-" and real_line.get_linestyle() == "--"
    assert to_rgb(sim_line.get_color()) == to_rgb(real_line.get_color()) == colour("allreduce")
    # Two seeds: the mean line over the union of their times, and one min-max band.
    runs = sorted((runs_root / "sim" / "allreduce" / "bw=1Gbps").iterdir())
    curves = [(_evals(r)["time"].to_numpy(), _evals(r)["loss"].to_numpy()) for r in runs]
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    mean = np.mean([np.interp(grid, x, y) for x, y in curves], axis=0)
    assert sim_line.get_xdata() == pytest.approx(grid)
    assert sim_line.get_ydata() == pytest.approx(mean)
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1
    assert ax.get_legend().get_title().get_text() == "mean over seeds, band min–max"
    real = _evals(runs_root / "real" / "allreduce")
    assert list(real_line.get_ydata()) == pytest.approx(list(real["loss"]))
    assert (
        ax.get_title()
        == "sim: star, 1 Gbit/s links, 1 µs latency, all-reduce auto (halving_doubling); real: gloo"
    )


def test_loss_vs_bytes_shows_megabytes_and_names_variants(runs_root):
    df = load([f"{runs_root}/sim/ps_*/bw=100Mbps/seed=0", f"{runs_root}/sim/local_sgd/*/seed=0"])
    ax = loss_vs_bytes(df).axes[0]
    assert ax.get_xlabel() in ("MB sent (all ranks)", "MB sent (all ranks), log scale")
    assert ax.get_ylabel() == "held-out loss"
    # Variants of one strategy are named by the argument that varies, in shades of its hue;
    # Local SGD's traffic and loss do not depend on the bandwidth: one line names both.
    assert _legend(ax) == [
        "local_sgd(period=4), 100 Mbit/s = 1 Gbit/s",
        "parameter_server(mode=async)",
        "parameter_server(mode=ssp, staleness=1)",
    ]
    assert all(line.get_linestyle() == "-" for line in ax.lines)
    ps = runs_root / "sim" / "ps_async" / "bw=100Mbps" / "seed=0"
    assert list(ax.lines[1].get_xdata()) == pytest.approx(list(_evals(ps)["bytes"] / 1e6))
    shades = [to_rgb(line.get_color()) for line in ax.lines[1:]]
    assert shades == [colour("parameter_server", 0, 2), colour("parameter_server", 1, 2)]
    assert to_rgb(ax.lines[0].get_color()) == colour("local_sgd")


def test_time_to_target_points_are_first_evaluations_below_target(runs_root):
    df = load([runs_root / "sim", runs_root / "short"])
    ax = time_to_target(df, x="topology.bandwidth").axes[0]
    assert ax.get_xlabel() == "link bandwidth (Gbit/s)"
    assert ax.get_ylabel() == f"simulated time to loss ≤ {TARGET:g} (s)"
    assert ax.get_xscale() == "log"
    labels = _legend(ax)
    assert labels[:4] == [
        "allreduce",
        "local_sgd(period=4), steps=40",
        "local_sgd(period=4), steps=8 (never reached)",
        "parameter_server(mode=async)",
    ]
    assert labels[-1] == "not reached (seeds missed/total, drawn at the top)"
    line = ax.lines[0]  # allreduce: mean over seeds at 0.1 and 1 Gbit/s
    for x, bandwidth in ((0.1, "100Mbps"), (1.0, "1Gbps")):
        runs = sorted((runs_root / "sim" / "allreduce" / f"bw={bandwidth}").iterdir())
        times = [_first_hit(r) for r in runs]
        i = list(line.get_xdata()).index(pytest.approx(x))
        assert line.get_ydata()[i] == pytest.approx(np.mean(times))
    # The run that stopped after 8 steps is a hollow marker at the top, annotated 1/1.
    hollow = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(hollow) == 1 and len(hollow[0].get_facecolors()) == 0  # hollow
    assert hollow[0].get_offsets()[0][0] == pytest.approx(1.0)
    assert hollow[0].get_offsets()[0][1] == pytest.approx(ax.get_ylim()[1] / 1.1)
    assert [t.get_text() for t in ax.texts] == ["1/1"]


def test_time_to_target_error_bars_span_the_seeds(runs_root):
    df = load(f"{runs_root}/sim/ps_async/*/*")
    ax = time_to_target(df, target=2.2).axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    segments = sorted(bars.get_segments(), key=lambda s: s[0][0])
    for segment, bandwidth in zip(segments, ("100Mbps", "1Gbps")):
        runs = sorted((runs_root / "sim" / "ps_async" / f"bw={bandwidth}").iterdir())
        times = [_first_hit(r, target=2.2) for r in runs]
        assert sorted([segment[0][1], segment[1][1]]) == pytest.approx([min(times), max(times)])
    assert ax.get_ylabel() == "simulated time to loss ≤ 2.2 (s)"


def test_time_to_target_rejects_unknown_fields_and_missing_targets(runs_root):
    df = load(runs_root / "real")
    with pytest.raises(ValueError, match="did you mean 'world_size'"):
        time_to_target(df, x="world_sise")
    with pytest.raises(ValueError, match="no target loss"):
        time_to_target(df, x="world_size")


def test_speedup_compares_with_the_smallest_world_and_draws_the_ideal(runs_root):
    df = load([f"{runs_root}/sim/*/bw=1Gbps/*", runs_root / "scaling"])
    df = df[df["strategy.name"].isin(["allreduce", "local_sgd"])]
    ax = speedup(df).axes[0]
    assert ax.get_xlabel() == "ranks (count)"
    assert ax.get_ylabel() == f"speed-up over 2 ranks in time to loss ≤ {TARGET:g} (×)"
    assert _legend(ax) == ["allreduce", "local_sgd(period=4)", "ideal (linear)"]
    ideal = ax.lines[-1]
    assert list(ideal.get_xdata()) == [2, 4] and list(ideal.get_ydata()) == [1, 2]
    assert ideal.get_linestyle() == ":"
    small = np.mean(
        [_first_hit(r) for r in (runs_root / "scaling" / "allreduce" / "n=2").iterdir()]
    )
    big = np.mean([_first_hit(r) for r in (runs_root / "sim" / "allreduce" / "bw=1Gbps").iterdir()])
    assert list(ax.lines[0].get_ydata()) == pytest.approx([1.0, small / big])


def test_speedup_falls_back_to_throughput_without_a_target(runs_root):
    df = load([runs_root / "real", runs_root / "scaling" / "allreduce"])
    df = df.drop(columns=["summary.target_loss"])
    ax = speedup(df).axes[0]
    assert ax.get_ylabel() == "speed-up over 2 ranks in samples per second (×)"
    # One point each (real ran with 2 ranks only), then the ideal line.
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", ":"]
    assert _legend(ax) == ["allreduce", "allreduce (real)", "ideal (linear)"]


def test_breakdown_shows_servers_apart_from_workers(runs_root, study):
    df = load(f"{runs_root}/sim/ps_async/bw=1Gbps/*")
    ax = breakdown(df).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "parameter_server(mode=async) · workers",
        "parameter_server(mode=async) · servers",
    ]
    assert _legend(ax) == ["compute", "communication", "idle"]
    assert ax.get_xlabel() == "share of rank time (mean over ranks, seeds)"
    ranks = df[df["kind"] == "rank"].copy()
    if "role" not in ranks:  # backends that do not record roles yet: the server is rank 0
        ranks["role"] = np.where(ranks["rank"] == 0, "server", "worker")
    parts = ranks[["compute_time", "comm_time", "idle_time"]].fillna(0)
    shares = parts.div(parts.sum(axis=1), axis=0).groupby(ranks["role"]).mean()
    compute_bars = ax.containers[0]
    assert [p.get_width() for p in compute_bars] == pytest.approx(
        [shares.loc["worker", "compute_time"], shares.loc["server", "compute_time"]]
    )
    without_roles = breakdown(df.drop(columns="role", errors="ignore")).axes[0]
    assert [t.get_text() for t in without_roles.get_yticklabels()] == [
        "parameter_server(mode=async)"
    ]
    assert len(without_roles.patches) == 3


def test_staleness_bars_are_shares_of_steps_per_strategy(runs_root):
    df = load(
        [f"{runs_root}/sim/ps_ssp/bw=1Gbps/seed=0", f"{runs_root}/sim/allreduce/bw=1Gbps/seed=0"]
    )
    df.loc[df["strategy.name"] == "allreduce", "backend"] = "real-gloo"  # drawn dashed
    ax = staleness(df).axes[0]
    assert ax.get_xlabel() == "staleness of each global step's update (versions behind)"
    assert ax.get_ylabel() == "share of global steps"
    allreduce, ps = ax.containers  # one group of bars per series, by strategy name
    assert {p.get_linestyle() for p in ps} == {"-"}
    assert {p.get_linestyle() for p in allreduce} == {"--"}
    steps = df[(df["kind"] == "step") & (df["strategy.name"] == "parameter_server")]
    expected = steps["staleness"].value_counts(normalize=True).sort_index()
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in ps}
    assert heights == pytest.approx({int(k): v for k, v in expected.items()})
    assert [p.get_height() for p in allreduce] == [1.0]  # every step at 0
    mean = steps["staleness"].mean()
    assert _legend(ax)[1] == f"parameter_server(mode=ssp, staleness=1) (mean {mean:.2g})"


def test_synchronous_staleness_shows_every_series_and_a_legend_off_the_bars(runs_root):
    runs = [runs_root / "sim" / key / "bw=1Gbps" / "seed=0" for key in ("allreduce", "local_sgd")]
    fig = staleness(load(runs))
    ax = fig.axes[0]
    fig.canvas.draw()
    bars = [(p, c.get_label()) for c in ax.containers for p in c]
    assert [label for _, label in bars] == ["allreduce (mean 0)", "local_sgd(period=4) (mean 0)"]
    # Side by side at 0, each its own bar; the legend covers neither.
    (first, _), (second, _) = bars
    assert first.get_x() + first.get_width() <= second.get_x() + 1e-9
    assert first.get_x() <= 0 <= second.get_x() + second.get_width()
    legend = ax.get_legend().get_window_extent()
    assert not any(legend.overlaps(p.get_window_extent()) for p, _ in bars)
    assert ax.get_title().endswith("every global step at staleness 0: synchronous updates")


def test_utilisation_colours_and_widens_links_by_their_busier_direction(runs_root, tmp_path):
    run = shutil.copytree(runs_root / UTILISATION_RUN, tmp_path / "run")
    rows = [{"src": s, "dst": d, "utilisation": u} for (s, d), u in LINK_UTILISATION.items()]
    pd.DataFrame(rows).to_parquet(run / "links.parquet", index=False)
    fig = utilisation(load(run))
    ax, bar = fig.axes
    assert bar.get_ylabel() == "link utilisation (busier direction)"
    assert bar.get_ylim() == pytest.approx((0.0, 0.8))
    edges = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    busier = [0.8, 0.4, 0.3, 0.6]  # hosts 0..3 to the switch, max of both directions
    assert list(edges.get_linewidths()) == pytest.approx([1 + 5 * u / 0.8 for u in busier])
    assert (
        fig.get_suptitle()
        == "sim: star, 1 Gbit/s links, 1 µs latency, all-reduce auto (halving_doubling)"
    )


def test_utilisation_draws_the_simulator_s_own_files_and_refuses_others(runs_root, tmp_path):
    fig = utilisation(load(runs_root / UTILISATION_RUN))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="is a real run"):
        utilisation(load(runs_root / "real"))
    bare = shutil.copytree(runs_root / UTILISATION_RUN, tmp_path / "bare")
    (bare / "links.parquet").unlink()
    with pytest.raises(
        ValueError, match=r"^utilisation needs a simulated run directory with links.parquet"
    ):
        utilisation(load(bare))


def test_pareto_has_a_point_per_reaching_run_and_the_front(runs_root):
    df = load([runs_root / "sim", runs_root / "short"])
    ax = pareto(df).axes[0]
    runs = df.drop_duplicates("run")["run"]
    hits = [(r, _first_hit(r, "bytes") / 1e6, _first_hit(r)) for r in runs]
    reached = [(b, t) for _, b, t in hits if np.isfinite(t)]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert np.allclose(sorted(map(tuple, points)), sorted(reached))
    cost, time = np.array(reached).T
    front = pareto_front(cost, time)
    assert list(ax.lines[0].get_xdata()) == pytest.approx(list(cost[front]))
    assert ax.get_xlabel() == "MB sent (all ranks) until the target"
    assert ax.get_ylabel() == f"simulated time to loss ≤ {TARGET:g} (s)"
    assert "1 of 17 runs did not reach the target" in ax.get_title()
    labels = _legend(ax)
    assert "Pareto front" in labels and {"100 Mbit/s", "1 Gbit/s"} <= set(labels)
    markers = {c.get_paths()[0].vertices.shape for c in ax.collections}
    assert len(markers) == 2  # one shape per bandwidth


def test_comparison_has_three_panels_with_the_network_in_the_title(runs_root):
    fig = comparison(load(f"{runs_root}/sim/*/bw=1Gbps/seed=0"), title="study")
    assert [ax.get_title() for ax in fig.axes] == [
        "convergence against time",
        "convergence against traffic",
        "where the time goes",
    ]
    assert (
        fig.get_suptitle()
        == "study\nsim: star, 1 Gbit/s links, 1 µs latency, all-reduce auto (halving_doubling)"
    )


def test_study_figures_draw_what_the_runs_support_and_name_what_they_skip(runs_root, tmp_path):
    from studies.plot.study import study_figures

    df = load(runs_root / "sim")
    swept = ["topology.bandwidth", "strategy", "run.seed"]
    written = study_figures(df, tmp_path, swept)
    assert [p.name for p in written] == [
        "loss-vs-time.png",
        "loss-vs-bytes.png",
        "time-to-target-bandwidth.png",
        "pareto.png",
        "breakdown.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in written)
    # Runs without rank rows: the breakdown is skipped, saying why; the others are written.
    with pytest.warns(UserWarning, match=r"breakdown: skipped: "):
        fewer = study_figures(df[df["kind"] != "rank"], tmp_path / "fewer", swept)
    assert [p.name for p in fewer] == [p.name for p in written[:-1]]
    # No target given or recorded: no figure that needs one.
    untargeted = df.drop(columns=[c for c in df if "target_loss" in c])
    names = [p.name for p in study_figures(untargeted, tmp_path / "none", swept)]
    assert names == ["loss-vs-time.png", "loss-vs-bytes.png", "breakdown.png"]


def test_pareto_draws_runs_that_vary_in_nothing_but_their_strategy(runs_root):
    # All-reduce and Local SGD on the same four-worker 1 Gbps star, one seed: no field picks
    # markers, so every run is one circle.
    runs = [runs_root / "sim" / key / "bw=1Gbps" / "seed=0" for key in ("allreduce", "local_sgd")]
    ax = pareto(load(runs)).axes[0]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == sum(np.isfinite(_first_hit(run)) for run in runs) > 0
    for run, collection in zip(runs, points, strict=True):
        assert collection.get_offsets()[0][1] == pytest.approx(_first_hit(run))


def test_a_field_zipped_with_the_strategy_is_not_an_axis(runs_root, tmp_path):
    from studies.plot.study import study_figures

    # The parameter servers' runs have five hosts, the others four: n names lines, not an axis.
    written = study_figures(load(runs_root / "sim"), tmp_path, ["topology.n"])
    assert not any(p.name.startswith("time-to-target") for p in written)


def test_drawing_keeps_the_interactive_mode_the_drawing_left():
    """Jupyter's inline backend turns interactive mode on with the first figure; the style's
    context must not turn it off again, or no later figure of the notebook is shown."""
    import matplotlib as mpl

    from studies.plot.style import styled

    @styled
    def draw_like_the_first_figure_of_a_notebook():
        mpl.interactive(True)
        return "drawn"

    mpl.interactive(False)
    try:
        assert draw_like_the_first_figure_of_a_notebook() == "drawn"
        assert mpl.is_interactive()
    finally:
        mpl.interactive(False)


def _table(runs):
    """A hand-made loaded table: one evaluation row per (run, step) of each run's columns."""
    rows = [
        {
            "run": run,
            "kind": "eval",
            "backend": "sim",
            "step": step,
            "time": step,
            "bytes": 1e6 * step,
            "loss": 2.0 - 0.1 * step,
            **columns,
        }
        for run, columns in runs.items()
        for step in range(3)
    ]
    return pd.DataFrame(rows)


def _lightness(rgb):
    import colorsys

    return colorsys.rgb_to_hls(*rgb)[1]


def test_shades_and_legend_follow_the_varied_value_not_its_text():
    # Periods 4, 16, 8 and bandwidths 1 Gbit/s, 100 Mbit/s: as text, "16" < "4" and
    # "1 Gbit/s" < "100 Mbit/s"; by value, the other way round.
    periods = _table(
        {f"p{p}": {"strategy.name": "local_sgd", "strategy.period": p} for p in (4, 16, 8)}
    )
    ax = loss_vs_time(periods).axes[0]
    assert _legend(ax) == ["local_sgd(period=4)", "local_sgd(period=8)", "local_sgd(period=16)"]
    shades = [_lightness(to_rgb(line.get_color())) for line in ax.lines]
    assert shades == sorted(shades) and len(set(shades)) == 3  # dark to light, by period
    bandwidths = _table(
        {f"b{b}": {"strategy.name": "allreduce", "topology.bandwidth": b} for b in (1.25e8, 1.25e7)}
    )
    ax = loss_vs_time(bandwidths).axes[0]
    assert _legend(ax) == ["allreduce, 100 Mbit/s", "allreduce, 1 Gbit/s"]
    slow, fast = (_lightness(to_rgb(line.get_color())) for line in ax.lines)
    assert slow < fast


def test_legends_name_arguments_that_are_not_the_strategy_s_defaults(runs_root):
    from strategies.local_sgd import LocalSGD

    period = LocalSGD().period  # the default, as a run records it
    assert period != 4  # what makes the fixture's period worth naming
    ax = loss_vs_time(load(f"{runs_root}/sim/local_sgd/bw=1Gbps/seed=0")).axes[0]
    assert _legend(ax) == ["local_sgd(period=4)"]
    # At the default, an argument is left out; a strategy the registry does not know shows
    # only the arguments that vary.
    default = _table({"r": {"strategy.name": "local_sgd", "strategy.period": period}})
    assert _legend(loss_vs_time(default).axes[0]) == ["local_sgd"]
    mine = _table({"r": {"strategy.name": "my_strategy", "strategy.period": 3}})
    assert _legend(loss_vs_time(mine).axes[0]) == ["my_strategy"]


def test_titles_name_the_all_reduce_algorithm_of_every_strategy_that_takes_one():
    from studies.plot.labels import network_title

    runs = pd.DataFrame(
        {
            "backend": "sim",
            "topology.family": "star",
            "strategy.name": ["allreduce", "local_sgd", "parameter_server"],
            "strategy.algorithm": ["ring", "tree", None],  # the server takes none
        }
    )
    # Local SGD all-reduces too: its tree is not the all-reduce's ring, so no single name.
    assert network_title(runs) == "sim: star"
    assert network_title(runs.assign(**{"strategy.algorithm": ["ring", "ring", None]})) == (
        "sim: star, all-reduce ring"
    )
    assert network_title(runs.iloc[1:]) == "sim: star, all-reduce tree"


def test_loss_vs_bytes_names_identical_curves_once_and_keeps_the_start_on_a_log_axis(runs_root):
    # All-reduce sends the same bytes for the same losses at either bandwidth (its two seeds
    # differ): two legend entries of one curve said nothing the first did not.
    df = load([f"{runs_root}/sim/allreduce/*/*", f"{runs_root}/sim/local_sgd/bw=1Gbps/*"])
    ax = loss_vs_bytes(df).axes[0]
    assert _legend(ax) == ["allreduce, 100 Mbit/s = 1 Gbit/s", "local_sgd(period=4)"]
    # Local SGD sends once every 4 steps: far less, so a log axis, and step 0 (no bytes yet)
    # is still on it, where a log axis would mask it.
    assert ax.get_xscale() == "symlog"
    left, right = ax.get_xlim()
    for line in ax.lines:
        x = np.asarray(line.get_xdata(), dtype=float)
        assert x.min() == 0 and left <= 0 and x.max() <= right
        shown = ax.transData.transform(np.column_stack([x, line.get_ydata()]))
        assert np.isfinite(shown).all()
    assert ax.get_xlabel().startswith("MB sent (all ranks), log scale")


def test_speedup_fits_the_axes_to_the_data_when_the_ideal_is_far_above(runs_root):
    # Tenfold bandwidth: the linear ideal reaches ×10, all-reduce gains far less.
    df = load(f"{runs_root}/sim/allreduce/*/*").drop(columns=["summary.target_loss"])
    ax = speedup(df, x="topology.bandwidth").axes[0]
    data = np.concatenate([line.get_ydata() for line in ax.lines[:-1]])
    bottom, top = ax.get_ylim()
    assert bottom <= data.min() and data.max() <= top
    assert data.max() - bottom > (top - bottom) / 2  # the series fill the axes, not a sliver
    ideal = ax.lines[-1]
    assert max(ideal.get_ydata()) == pytest.approx(10) and top < 10
    assert _legend(ax) == ["allreduce", "ideal (linear, up to ×10: leaves the axes)"]
    # The baseline is said in the units the runs were made with, not as an axis number.
    assert ax.get_ylabel() == "speed-up over 100 Mbit/s in samples per second (×)"
    assert "(from 0.1)" not in " ".join(_legend(ax))


def test_utilisation_panels_are_titled_by_what_the_runs_are_not_their_directories(
    runs_root, tmp_path
):
    # A sweep names run directories by a hash of their configuration.
    for seed, key in ((1, "0a610622d768"), (0, "1762dd6811d0")):
        source = runs_root / "sim" / "allreduce" / "bw=1Gbps" / f"seed={seed}"
        shutil.copytree(source, tmp_path / "runs" / key)
    shutil.copytree(
        runs_root / UTILISATION_RUN.replace("allreduce", "local_sgd"), tmp_path / "runs" / "b7e0"
    )
    fig = utilisation(load(tmp_path / "runs"))
    titles = [ax.get_title() for ax in fig.axes[:-1]]  # the last axes is the colour bar
    assert titles == ["allreduce, seed=0", "allreduce, seed=1", "local_sgd(period=4)"]


def test_timing_only_runs_load_draw_their_breakdown_and_say_a_curve_has_nothing(tmp_path):
    import sim

    for strategy in ("allreduce", "diloco:period=2"):
        sim.run(
            strategy,
            "mlp_digits",
            "star:n=4",
            steps=4,
            eval_every=2,
            timing_only=True,
            out=tmp_path / strategy.split(":")[0],
        )
    df = load(tmp_path)
    assert {run.rsplit("/", 1)[-1] for run in df["run"]} == {"allreduce", "diloco"}
    assert "loss" not in df
    assert df["timing_only"].eq(True).all() and df["summary.step_time"].gt(0).all()
    assert len(breakdown(df).axes[0].patches) > 0
    staleness(df)
    for draw in (loss_vs_time, loss_vs_bytes, comparison, time_to_target, pareto):
        with pytest.raises(ValueError, match=r"^the runs are timing-only \(run.timing_only\): "):
            draw(df)
