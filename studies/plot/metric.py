"""Which evaluation metric a figure of runs draws: the one their workload reports.

A run records its metric in its summary when it is not the loss (``summary.metric`` and
``summary.maximize``: a reinforcement-learning workload's mean ``return``, higher is better;
:mod:`runs.metric`). A run without a summary yet (running, or failed) is read from its
evaluation rows: ``return`` values and no ``loss`` make a return run. Runs recorded before
metrics had a name are loss runs. One figure draws one metric: runs of different metrics
are refused in one line, as their values cannot share an axis or a target.
"""

from __future__ import annotations

import pandas as pd

from runs.metric import LOSS, Metric
from studies.plot.series import runs_of

__all__ = ["metric_label", "plotted_metric", "reach_label", "run_metrics"]


def _numbers(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows:
        return pd.Series(False, index=rows.index)
    return pd.to_numeric(rows[column], errors="coerce").notna()


def run_metrics(df: pd.DataFrame) -> pd.Series:
    """Each run's :class:`~runs.metric.Metric`, indexed by ``run``.

    Examples
    --------
    >>> df = pd.DataFrame({"run": ["a", "b", "c"], "kind": "eval", "loss": [1.0, None, None],
    ...                    "return": [None, None, 9.0],
    ...                    "summary.metric": [None, "return", None],
    ...                    "summary.maximize": [None, True, None]})
    >>> [m.name for m in run_metrics(df)]
    ['loss', 'return', 'return']
    """
    runs = runs_of(df)
    names = runs.get("summary.metric", pd.Series(None, index=runs.index, dtype=object))
    maximize = runs.get("summary.maximize", pd.Series(None, index=runs.index, dtype=object))
    unnamed = names.isna()
    guessed: dict[object, bool] = {}
    if unnamed.any() and "return" in df and "kind" in df:
        # No summary yet: evaluation rows with returns and no losses are a return run's.
        evals = df[(df["kind"] == "eval") & df["run"].isin(runs.index[unnamed])]
        returns = _numbers(evals, "return").groupby(evals["run"]).any()
        losses = _numbers(evals, "loss").groupby(evals["run"]).any()
        guessed = {run: bool(returns[run] and not losses[run]) for run in returns.index}
    metrics = []
    for run in runs.index:
        name, up = names[run], maximize[run]
        if pd.isna(name):
            metrics.append(Metric("return", True) if guessed.get(run) else LOSS)
        else:
            metrics.append(Metric(str(name), bool(up) if not pd.isna(up) else name == "return"))
    return pd.Series(metrics, index=runs.index, dtype=object)


def plotted_metric(df: pd.DataFrame) -> Metric:
    """The one metric the runs of ``df`` report; a one-line ``ValueError`` when they mix.

    Examples
    --------
    >>> df = pd.DataFrame({"run": ["a", "b"], "kind": "eval", "loss": [1.0, None],
    ...                    "summary.metric": [None, "return"], "summary.maximize": [None, True]})
    >>> plotted_metric(df.iloc[:1])
    Metric(name='loss', maximize=False)
    >>> plotted_metric(df)
    Traceback (most recent call last):
    ...
    ValueError: the runs mix evaluation metrics (1 run: loss, 1 run: return); a figure draws one: plot the runs of each metric apart (e.g. df[df['summary.metric'] == 'return'])
    """
    if "run" not in df or df.empty:
        return LOSS
    metrics = run_metrics(df)
    found = list(dict.fromkeys(metrics))
    if len(found) == 1:
        return found[0]
    counts = metrics.map(lambda m: m.name).value_counts(sort=False)
    said = ", ".join(f"{n} run{'s' if n > 1 else ''}: {name}" for name, n in counts.items())
    other = next(m.name for m in found if m != LOSS) if LOSS in found else found[-1].name
    raise ValueError(
        f"the runs mix evaluation metrics ({said}); a figure draws one: plot the runs of each "
        f"metric apart (e.g. df[df['summary.metric'] == {other!r}])"
    )


def metric_label(metric: Metric) -> str:
    """The value axis of a curve of ``metric``.

    Examples
    --------
    >>> metric_label(LOSS), metric_label(Metric("return", True))
    ('held-out loss', 'mean return (higher is better)')
    """
    if metric.name == "return":
        return metric.described
    better = " (higher is better)" if metric.maximize else ""
    return f"held-out {metric.name}{better}"


def reach_label(metric: Metric, level: float) -> str:
    """What reaching the target means, as a time-to-target axis says it.

    Examples
    --------
    >>> reach_label(LOSS, 0.5), reach_label(Metric("return", True), 195)
    ('loss ≤ 0.5', 'return ≥ 195')
    """
    return f"{metric.name} {metric.comparison} {level:g}"
