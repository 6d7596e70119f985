"""Every plot kind on runs evaluated by a return (higher is better): the axis says so, the
target is reached at or above it, and runs of different metrics are refused in one line.

The return runs are ``return_quadratic`` (``tests.return_workloads``: ``quadratic`` with
``return = -loss``), each beside the ``quadratic`` run of the same configuration and seed
with ``target_loss = -target_return``: every time, byte and point of a return figure must be
the loss twin's, an independent reference.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from studies.cli import app  # noqa: E402
from studies.load import load  # noqa: E402
from studies.plot import (  # noqa: E402
    comparison,
    faults,
    loss_vs_bytes,
    loss_vs_time,
    pareto,
    speedup,
    time_to_target,
)
from studies.plot.study import study_figures  # noqa: E402
from studies.plot.targets import resolve_target, to_target  # noqa: E402
from tests import return_workloads  # noqa: E402, F401  (registers return_quadratic)

TARGET = -0.3  # the return runs' target_return; their loss twins' target_loss is 0.3
RETURN_LABEL = "mean return (higher is better)"
STRATEGIES = {"allreduce": "allreduce", "local_sgd": "local_sgd:period=4"}


def _sim(out, workload, strategy, bandwidth, workers=4):
    import sim

    target = {"target_return": TARGET} if workload == "return_quadratic" else {}
    sim.run(
        strategy,
        workload,
        f"star:n={workers},bandwidth={bandwidth}",
        steps=40,
        eval_every=4,
        target_loss=-TARGET if not target else None,
        out=out,
        **target,
    )


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """``return/`` and ``loss/``: the same runs, by return and by loss (two strategies, two
    bandwidths on four workers, and two workers at 1 Gbps for a speed-up)."""
    root = tmp_path_factory.mktemp("metrics")
    for kind, workload in (("return", "return_quadratic"), ("loss", "quadratic")):
        for key, strategy in STRATEGIES.items():
            for bandwidth in ("100Mbps", "1Gbps"):
                _sim(root / kind / key / bandwidth, workload, strategy, bandwidth)
            _sim(root / kind / key / "n=2", workload, strategy, "1Gbps", workers=2)
    return root


@pytest.fixture(scope="module")
def returns(roots):
    return load(roots / "return")


@pytest.fixture(scope="module")
def losses(roots):
    return load(roots / "loss")


def _four_workers(df):
    return df[df["world_size"] == 4]


def test_curves_draw_the_return_with_its_direction_on_the_axis(returns, losses):
    for draw in (loss_vs_time, loss_vs_bytes):
        ax = draw(_four_workers(returns)).axes[0]
        twin = draw(_four_workers(losses)).axes[0]
        assert ax.get_ylabel() == RETURN_LABEL and twin.get_ylabel() == "held-out loss"
        assert [line.get_label() for line in ax.lines] == [line.get_label() for line in twin.lines]
        for mine, theirs in zip(ax.lines, twin.lines, strict=True):
            assert np.array_equal(mine.get_ydata(), -np.asarray(theirs.get_ydata()))


def test_a_return_target_is_reached_at_or_above_it():
    # Rising returns: the loss rule (value <= target) would take the first evaluation.
    df = pd.DataFrame(
        {
            "run": "a",
            "kind": "eval",
            "time": [0.0, 1.0, 2.0],
            "bytes": [0.0, 10.0, 20.0],
            "samples": 0,
            "step": [0, 1, 2],
            "return": [1.0, 5.0, 9.0],
            "loss": np.nan,
            "summary.metric": "return",
            "summary.maximize": True,
            "summary.target_return": 4.0,
        }
    )
    reached = to_target(df)
    assert reached.loc["a", "time_to_target"] == 1.0 and reached.loc["a", "target"] == 4.0
    assert not to_target(df, target=10.0).loc["a", "reached"]
    with pytest.raises(ValueError, match="^no target return: pass target= .*target_return$"):
        resolve_target(df.drop(columns=["summary.target_return"]))


def test_time_to_target_of_return_runs_is_their_loss_twins(returns, losses):
    ax = time_to_target(_four_workers(returns)).axes[0]
    twin = time_to_target(_four_workers(losses)).axes[0]
    assert ax.get_ylabel() == "simulated time to return ≥ -0.3 (s)"
    assert twin.get_ylabel() == "simulated time to loss ≤ 0.3 (s)"
    drawn = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax.lines]
    assert drawn and drawn == [
        (tuple(line.get_xdata()), tuple(line.get_ydata())) for line in twin.lines
    ]
    # And each run's time is its first evaluation with a return at or above the target.
    evals = returns[returns["kind"] == "eval"]
    first = evals[evals["return"] >= TARGET].groupby("run")["time"].first()
    assert dict(to_target(returns)["time_to_target"]) == pytest.approx(dict(first))


def test_speedup_and_pareto_of_return_runs_name_the_return_target(returns, losses):
    ax = speedup(returns, metric="time_to_target").axes[0]
    assert "time to return ≥ -0.3" in ax.get_ylabel()
    twin = speedup(losses, metric="time_to_target").axes[0]
    for mine, theirs in zip(ax.lines, twin.lines, strict=True):
        assert np.allclose(mine.get_ydata(), theirs.get_ydata())
    ax = pareto(returns).axes[0]
    twin = pareto(losses).axes[0]
    assert ax.get_ylabel() == "simulated time to return ≥ -0.3 (s)"
    # The front minimises the time and the bytes to the target, whichever way the metric goes.
    front, theirs = ax.lines[-1], twin.lines[-1]
    assert front.get_label() == "Pareto front"
    assert np.array_equal(front.get_xydata(), theirs.get_xydata())


def test_comparison_and_the_study_figures_of_return_runs(returns, tmp_path, recwarn):
    fig = comparison(_four_workers(returns))
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == [RETURN_LABEL, RETURN_LABEL]
    written = study_figures(_four_workers(returns), tmp_path, swept=["topology.bandwidth"])
    assert sorted(path.name for path in written) == [
        "breakdown.png",
        "loss-vs-bytes.png",
        "loss-vs-time.png",
        "pareto.png",
        "time-to-target-bandwidth.png",
    ]
    assert not [w for w in recwarn if "skipped" in str(w.message)]


def test_faults_draws_the_time_to_a_return_against_the_mtbf():
    rows = pd.DataFrame(
        {
            "run": ["a", "a", "b", "b"],
            "kind": "eval",
            "backend": "sim",
            "strategy.name": "allreduce",
            "status": "finished",
            "faults.events[0].kind": "crash",
            "faults.events[0].mtbf": [10.0] * 2 + [1.0] * 2,
            "time": [0, 2.0, 0, 1.0],
            "step": [0, 4, 0, 2],
            "samples": 0,
            "bytes": 0,
            "loss": np.nan,
            "return": [1.0, 5.0, 1.0, 3.0],
            "summary.metric": "return",
            "summary.maximize": True,
            "summary.goodput": 50.0,
        }
    )
    left, _ = faults(rows, target=4.0).axes
    assert left.get_ylabel() == "simulated time to return ≥ 4 (s)"
    assert left.lines[0].get_xdata().tolist() == [10.0]  # b never reached 4
    assert left.lines[0].get_ydata().tolist() == [2.0]


@pytest.mark.parametrize(
    "draw",
    [loss_vs_time, loss_vs_bytes, time_to_target, speedup, pareto, comparison],
    ids=lambda f: f.__name__,
)
def test_runs_of_different_metrics_in_one_figure_are_one_line(returns, losses, draw):
    mixed = pd.concat([returns, losses], ignore_index=True)
    with pytest.raises(ValueError, match=r"^the runs mix evaluation metrics \(") as caught:
        draw(mixed)
    assert "\n" not in str(caught.value)


def test_commsim_plot_draws_return_runs_and_refuses_a_mix(roots, tmp_path):
    out = tmp_path / "ttt.png"
    args = ["plot", str(roots / "return"), "--kind", "time-to-target"]
    done = CliRunner().invoke(app, [*args, "--x", "topology.bandwidth", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.stat().st_size > 0
    both = CliRunner().invoke(app, ["plot", str(roots), "--out", str(tmp_path / "mix.png")])
    assert both.exit_code == 2
    assert both.output.startswith("error: the runs mix evaluation metrics (")
    assert len(both.output.strip().splitlines()) == 1
