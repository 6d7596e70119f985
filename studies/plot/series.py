"""Which runs are drawn together, and how each group is named and coloured.

A *series* is the runs of one strategy configuration on one backend kind (``sim`` or
``real``) that differ only in their seed: a line (mean over seeds) in a curve, a point in a
sweep. It is named by the strategy and its arguments that are not at their defaults or that
vary among the runs plotted (``local_sgd(period=4)``, ``parameter_server(mode=async)``),
then by the other configuration fields that tell its runs apart from those of the same
strategy (``allreduce, 100 Mbit/s``), and ``(real)`` for real runs.

Series come in the order of their values (strategy, then its arguments and the fields that
name it, numbers by size: period 4 before 16, 100 Mbit/s before 1 Gbit/s), and the variants
of one strategy are shades of its colour in that order, dark to light.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from runs.schema import COLUMNS
from studies.plot.labels import field_value
from studies.plot.style import colour, is_real, linestyle

__all__ = [
    "Series",
    "config_fields",
    "require_field",
    "runs_of",
    "series",
    "strategy_labels",
    "timing_only_reason",
]

# (With a reinforcement-learning workload's evaluation values, which can be constant in a
# short run: never a configuration field that names a series.)
_METRIC_COLUMNS = frozenset(c for columns in COLUMNS.values() for c in columns) | {
    "role",
    "return",
    "episode_length",
}
_NOT_CONFIG = frozenset({"run", "name", "status", "error", "seed", "backend", "compute.seconds"})
# Fields to name a series by first, when several co-vary (a star's n, hosts and the world
# size): the one people sweep.
_PREFERRED = ("topology.bandwidth", "topology.latency", "world_size", "workload.name")


@dataclass
class Series:
    """One group of runs drawn as one line (or one point per x value)."""

    label: str
    strategy: str
    real: bool
    rows: pd.DataFrame
    colour: tuple[float, float, float]
    #: The strategy with its arguments, as the label starts (``local_sgd(period=4)``).
    name: str = ""
    #: The other fields that name the series, as the label shows them (``100 Mbit/s``).
    details: tuple[str, ...] = ()

    @property
    def linestyle(self) -> str:
        return linestyle("real" if self.real else "sim")

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(self.rows["run"]))


def runs_of(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its run-level columns (the first row of each run)."""
    if "run" not in df:
        raise ValueError("the table has no 'run' column; make it with studies.load.load")
    return df.drop_duplicates("run").set_index("run", drop=False)


def timing_only_reason(df: pd.DataFrame) -> str | None:
    """The one line saying why a loss plot has nothing to draw when every run of ``df`` is
    timing-only (``run.timing_only``: no losses); None otherwise.

    Examples
    --------
    >>> timing_only_reason(pd.DataFrame({"run": ["a", "b"], "timing_only": [True, None]}))
    >>> timing_only_reason(pd.DataFrame({"run": ["a"], "timing_only": [True]}))  # doctest: +ELLIPSIS
    'the runs are timing-only (run.timing_only): they have no losses, so ... utilisation or staleness'
    """
    if "timing_only" not in df or "run" not in df or df.empty:
        return None
    flags = runs_of(df)["timing_only"]
    if not flags.map(lambda v: v is True or v == 1).all():
        return None
    return (
        "the runs are timing-only (run.timing_only): they have no losses, so this plot has "
        "nothing to draw; plot breakdown, utilisation or staleness"
    )


def config_fields(df: pd.DataFrame) -> list[str]:
    """The configuration columns of a loaded table: not metrics, summary, strategy arguments
    (the strategy label has those) or bookkeeping, and constant within each run (which
    leaves out the columns a workload or a strategy adds to its rows, like ``accuracy``).
    """
    candidates = [
        c
        for c in df.columns
        if c not in _METRIC_COLUMNS
        and c not in _NOT_CONFIG
        # What ``auto`` resolved to follows from the rest (and a failed run has none); the
        # recovery policy is part of the strategy's label (see series).
        and not c.startswith(("summary.", "experiment.", "strategy.", "auto."))
        and c != "faults.recovery"
    ]
    if not candidates or "run" not in df:
        return candidates
    per_run = df[candidates].map(str).groupby(df["run"]).nunique()
    return [c for c in candidates if per_run[c].max() <= 1]


def _order(value: object) -> tuple[int, float, str]:
    # Numbers in numeric order, before names; NaN (a field a run lacks) last.
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(number):
        return (2 if pd.isna(value) else 1, 0.0, str(value))
    return (0, float(number), "")


def _key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    # NaN (a field a run does not have) is a value of its own, not a wildcard.
    if not columns:
        return pd.Series("", index=frame.index)
    return frame[columns].map(str).agg("|".join, axis=1)


def _varying(frame: pd.DataFrame, columns: list[str], given: Sequence[str] = ()) -> list[str]:
    """The columns that tell ``frame``'s rows apart, skipping ones implied by earlier ones or
    by the ``given`` columns."""
    chosen: list[str] = []
    groups = _key(frame, list(given)).nunique()
    for column in columns:
        if column in given:
            continue
        n = _key(frame, [*given, *chosen, column]).nunique()
        if n > groups:
            chosen.append(column)
            groups = n
    return chosen


def require_field(df: pd.DataFrame, field: str, option: str = "x") -> str:
    """The column of ``field``: the resolved config's (``compute.options.sigma``), or the
    experiment file's path to it (``compute.sigma``, as a sweep names it); else a one-line
    ``ValueError`` naming close columns.

    Examples
    --------
    >>> df = pd.DataFrame(columns=["topology.bandwidth", "experiment.compute.sigma"])
    >>> require_field(df, "compute.sigma")
    'experiment.compute.sigma'
    >>> require_field(df, "topology.bandwith")
    Traceback (most recent call last):
    ...
    ValueError: x='topology.bandwith' is not a column of the runs; did you mean 'topology.bandwidth'?
    """
    for column in (field, f"experiment.{field}"):
        if column in df.columns:
            return column
    close = difflib.get_close_matches(field, [str(c) for c in df.columns], n=3, cutoff=0.5)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else "use a config column such as topology.bandwidth or world_size"
    )
    raise ValueError(f"{option}={field!r} is not a column of the runs; {hint}")


def _format(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _arguments(runs: pd.DataFrame) -> dict[str, list[str]]:
    """``strategy.*`` columns by argument: a nested argument (``compression``) has many."""
    found: dict[str, list[str]] = {}
    for column in sorted(c for c in runs.columns if c.startswith("strategy.")):
        argument = column.removeprefix("strategy.").split(".", 1)[0]
        if argument != "name":
            found.setdefault(argument, []).append(column)
    return found


def _shown(row: pd.Series, argument: str, columns: list[str]) -> object:
    # A nested argument is shown by its name (compression=powersgd), a plain one by value.
    for column in (f"strategy.{argument}.name", f"strategy.{argument}"):
        if column in columns and not _is_missing(row[column]):
            return row[column]
    return None


@functools.cache
def _defaults(strategy: str) -> dict[str, str] | None:
    """The registered ``strategy``'s option defaults (its declaration, ``options.declare``),
    as labels show values; None for a strategy the registry does not know or one that
    declares nothing (a user's own: only its varying arguments are shown)."""
    from options.declare import option_fields
    from strategies import registry

    try:
        fields = option_fields(registry.strategy_class(strategy))
    except (ValueError, TypeError):
        return None
    if not fields:
        return None
    return {
        name: _format(info.get_default(call_default_factory=True))
        for name, info in fields.items()
        if not info.is_required()
    }


def _at_default(strategy: str, argument: str, value: object) -> bool:
    defaults = _defaults(strategy)
    if defaults is None:
        return True
    return argument in defaults and _format(value) == defaults[argument]


def strategy_labels(runs: pd.DataFrame) -> pd.Series:
    """``strategy.name`` with its ``strategy.*`` arguments that are not at the registered
    strategy's default, or that vary among runs of it.

    A nested argument (a compression codec's options) is named by its ``name``, with any of
    its options that differ between runs of the same name; ``None`` arguments are left out.

    Examples
    --------
    >>> runs = pd.DataFrame({"strategy.name": ["parameter_server"] * 2 + ["allreduce"] * 3,
    ...                      "strategy.mode": ["async", "ssp", None, None, None],
    ...                      "strategy.compression": [None] * 3 + [float("nan")] * 2,
    ...                      "strategy.compression.name": [None] * 3 + ["powersgd"] * 2,
    ...                      "strategy.compression.rank": [None] * 3 + [2, 4]})
    >>> list(strategy_labels(runs))  # doctest: +NORMALIZE_WHITESPACE
    ['parameter_server(mode=async)', 'parameter_server(mode=ssp)', 'allreduce',
     'allreduce(compression=powersgd, compression.rank=2)',
     'allreduce(compression=powersgd, compression.rank=4)']
    >>> one = pd.DataFrame({"strategy.name": ["local_sgd"], "strategy.period": [4.0],
    ...                     "strategy.warmup": [0], "strategy.algorithm": ["auto"]})
    >>> list(strategy_labels(one))  # period 4 is not the default (8); warmup, algorithm are
    ['local_sgd(period=4)']
    """
    labels = runs["strategy.name"].map(str).copy()
    arguments = _arguments(runs)
    for name, group in runs.groupby("strategy.name", sort=False):
        parts: dict[object, list[str]] = {index: [] for index in group.index}
        for argument, columns in arguments.items():
            shown = group.apply(lambda row, a=argument, c=columns: _shown(row, a, c), axis=1)
            varies = shown.map(str).nunique() > 1
            for index, value in shown.items():
                if _is_missing(value) or (not varies and _at_default(str(name), argument, value)):
                    continue
                parts[index].append(f"{argument}={_format(value)}")
            # Options of a nested argument that differ between runs showing the same name.
            for column in columns:
                if column.count(".") < 2 or column.endswith(".name"):
                    continue
                for _, same in group.groupby(shown.map(str), sort=False):
                    if same[column].map(str).nunique() > 1:
                        for index, value in same[column].items():
                            if not _is_missing(value):
                                option = column.removeprefix("strategy.")
                                parts[index].append(f"{option}={_format(value)}")
        for index in group.index:
            found = parts[index]
            labels[index] = f"{name}({', '.join(found)})" if found else str(name)
    return labels


def series(df: pd.DataFrame, across: Sequence[str] = ()) -> list[Series]:
    """The series of ``df`` (a table from :func:`studies.load.load`), in a stable order.

    Runs that differ only in their seed, or in the ``across`` fields (a sweep's x) and fields
    that vary with them, belong to one series.
    """
    runs = runs_of(df).copy()
    if "strategy.name" not in runs:
        runs["strategy.name"] = "run"
    runs["_strategy"] = strategy_labels(runs)
    if "faults.recovery" in runs:  # a run-level recovery policy is how the strategy ran
        recovery = runs["faults.recovery"]
        runs["_strategy"] = [
            label if _is_missing(policy) else f"{label} + recovery={policy}"
            for label, policy in zip(runs["_strategy"], recovery)
        ]
    runs["_real"] = [is_real(b) for b in runs.get("backend", pd.Series("sim", index=runs.index))]
    fields = config_fields(df)
    fields = [f for f in _PREFERRED if f in fields] + sorted(
        f for f in fields if f not in _PREFERRED
    )
    runs["_series"] = ""
    runs["_details"] = [()] * len(runs)
    for _, group in runs.groupby(["_strategy", "_real"], sort=False):
        extra = _varying(group, fields, given=across)
        for index, row in group.iterrows():
            details = tuple(field_value(f, row[f]) for f in extra)
            runs.at[index, "_details"] = details
            runs.loc[index, "_series"] = ", ".join([row["_strategy"], *details])
    # By value, not by label text: period 4 before 16, 100 Mbit/s before 1 Gbit/s.
    arguments = sorted(
        c for c in runs.columns if c.startswith("strategy.") and c != "strategy.name"
    )
    runs["_values"] = [
        (tuple(_order(row[c]) for c in arguments), tuple(_order(row[f]) for f in fields))
        for _, row in runs.iterrows()
    ]
    runs["_order"] = [
        (str(row["strategy.name"]), row["_values"][0], row["_real"], row["_values"][1])
        for _, row in runs.iterrows()
    ]
    # Variants of one strategy (by label, whatever the backend) are shades of its colour, dark
    # to light in the order of their values.
    variants: dict[str, list[str]] = {}
    first = runs.groupby([runs["strategy.name"].map(str), "_series"], sort=False)["_values"].min()
    for name, label in first.sort_values().index:
        variants.setdefault(str(name), []).append(str(label))
    found = []
    order = runs.sort_values("_order", kind="stable")
    for (label, real), group in order.groupby(["_series", "_real"], sort=False):
        name = str(group["strategy.name"].iloc[0])
        shades = variants[name]
        found.append(
            Series(
                label=f"{label} (real)" if real else str(label),
                strategy=name,
                real=bool(real),
                rows=df[df["run"].isin(group.index)],
                colour=colour(name, shades.index(label), len(shades)),
                name=str(group["_strategy"].iloc[0]),
                details=tuple(group["_details"].iloc[0]),
            )
        )
    return found
