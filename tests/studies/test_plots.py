import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from runs import RunResult  # noqa: E402
from studies.plots import comparison, loss_curves, time_breakdown  # noqa: E402


def _result(scale):
    rows = [
        {"kind": "eval", "time": t, "bytes": 1e6 * t, "step": t, "loss": scale / (1 + t)}
        for t in range(5)
    ]
    rows += [
        {"kind": "rank", "rank": r, "compute_time": 3.0, "comm_time": 1.0, "idle_time": float(r)}
        for r in range(2)
    ]
    return RunResult({}, {}, pd.DataFrame(rows))


def test_loss_curves_plot_each_run_against_the_chosen_axis():
    fig = loss_curves({"a": _result(1), "b": _result(2)}, x="bytes")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert list(ax.lines[1].get_xdata()) == [0, 1, 2, 3, 4]  # bytes shown in MB
    assert list(ax.lines[1].get_ydata()) == pytest.approx([2 / (1 + t) for t in range(5)])


def test_loss_curves_reject_an_unknown_axis():
    with pytest.raises(ValueError, match="x='epoch'"):
        loss_curves({"a": _result(1)}, x="epoch")


def test_time_breakdown_shares_are_mean_fractions_of_each_rank():
    fig = time_breakdown({"a": _result(1)})
    widths = [patch.get_width() for patch in fig.axes[0].patches]
    # rank 0: 3/4, 1/4, 0; rank 1: 3/5, 1/5, 1/5 -> means 0.675, 0.225, 0.1
    assert widths == pytest.approx([0.675, 0.225, 0.1])


def test_comparison_has_three_panels():
    assert len(comparison({"a": _result(1)}, title="t").axes) == 3
