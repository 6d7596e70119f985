"""Words on figures: a configuration field's axis label and units, and a network's title.

Run directories record SI base units (bandwidth in bytes/s, latency in seconds); figures
show the units people quote (Gbit/s, µs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from studies.plot.style import is_real

__all__ = [
    "axis_values",
    "clock",
    "field_axis",
    "field_value",
    "network_title",
    "time_label",
]

_NAMES = {
    "world_size": "ranks",
    "topology.n": "hosts",
    "topology.hosts": "hosts",
    "topology.bandwidth": "link bandwidth",
    "topology.latency": "link latency",
}


def _bandwidth_unit(bytes_per_s: float) -> tuple[float, str]:
    return (1e9 / 8, "Gbit/s") if bytes_per_s >= 1e9 / 8 else (1e6 / 8, "Mbit/s")


def _latency_unit(seconds: float) -> tuple[float, str]:
    return (1e-3, "ms") if seconds >= 1e-3 else (1e-6, "µs")


def _units(field: str, largest: float) -> tuple[float, str] | None:
    if field.endswith("bandwidth"):
        return _bandwidth_unit(largest)
    if field.endswith("latency"):
        return _latency_unit(largest)
    return None


def field_value(field: str, value: object) -> str:
    """One value of ``field`` as a legend or title shows it.

    Examples
    --------
    >>> field_value("topology.bandwidth", 12.5e6), field_value("topology.latency", 5e-6)
    ('100 Mbit/s', '5 µs')
    >>> field_value("world_size", 4), field_value("strategy.period", 8.0)
    ('4 ranks', 'period=8')
    """
    if isinstance(value, int | float | np.number) and not pd.isna(value):
        number = float(value)
        units = _units(field, number)
        if units:
            return f"{number / units[0]:.3g} {units[1]}"
        if field in _NAMES and field.startswith(("world", "topology.")):
            return f"{number:g} {_NAMES[field]}"
        text = f"{number:g}"
    else:
        text = str(value)
    return f"{field.rsplit('.', 1)[-1]}={text}"


def axis_values(field: str, values: Sequence[object] | pd.Series) -> tuple[np.ndarray, str, bool]:
    """Numbers to plot ``field``'s ``values`` at, the axis label, and whether it is numeric.

    Non-numeric fields (a workload's name) are placed at 0, 1, 2 ... in order of appearance;
    the caller labels the ticks.

    Examples
    --------
    >>> axis_values("topology.bandwidth", [12.5e6, 1.25e8])
    (array([0.1, 1. ]), 'link bandwidth (Gbit/s)', True)
    >>> axis_values("world_size", [2, 4])
    (array([2., 4.]), 'ranks (count)', True)
    >>> axis_values("workload.name", ["quadratic", "mlp_digits"])
    (array([0., 1.]), 'workload.name', False)
    """
    series = pd.Series(list(values))
    numbers = pd.to_numeric(series, errors="coerce")
    if numbers.notna().all() and not series.map(lambda v: isinstance(v, bool)).any():
        array = numbers.to_numpy(dtype=float)
        units = _units(field, float(np.nanmax(array)) if len(array) else 0.0)
        if units:
            return array / units[0], f"{_NAMES.get(field, field)} ({units[1]})", True
        if field in ("world_size", "topology.n", "topology.hosts"):
            return array, f"{_NAMES[field]} (count)", True
        return array, field, True
    order = list(dict.fromkeys(series.map(str)))
    return series.map(str).map(order.index).to_numpy(dtype=float), field, False


def field_axis(ax: Axes, field: str, values: Sequence[object] | pd.Series) -> np.ndarray:
    """Set ``ax``'s x axis for ``field`` (label with units, log scale when the values span ten
    times or more, tick labels for names) and return where each value goes."""
    positions, label, numeric = axis_values(field, values)
    ax.set_xlabel(label)
    if numeric:
        finite = positions[np.isfinite(positions)]
        if len(finite) and finite.min() > 0 and finite.max() >= 10 * finite.min():
            ax.set_xscale("log")
        if len(finite) and len(np.unique(finite)) <= 8:
            ax.set_xticks(np.unique(finite), [f"{v:g}" for v in np.unique(finite)])
            ax.minorticks_off()
    else:
        names = list(dict.fromkeys(pd.Series(list(values)).map(str)))
        ax.set_xticks(range(len(names)), names)
    return positions


def clock(backends: Iterable[object]) -> str:
    """Which clock times are on: ``simulated``, ``wall``, or both (solid / dashed).

    Examples
    --------
    >>> clock(["sim", "real-gloo"]), clock(["sim"])
    ('simulated (solid) / wall (dashed)', 'simulated')
    """
    real = {is_real(b) for b in backends}
    if real == {True}:
        return "wall"
    if real == {False}:
        return "simulated"
    return "simulated (solid) / wall (dashed)"


def time_label(backends: Iterable[object]) -> str:
    """The time axis label: simulated, wall, or both (solid and dashed).

    Examples
    --------
    >>> time_label(["sim", "real-gloo"]), time_label(["real-nccl"])
    ('time (s): simulated (solid) / wall (dashed)', 'wall time (s)')
    """
    which = clock(backends)
    return f"{which} time (s)" if which in ("simulated", "wall") else f"time (s): {which}"


def _one(runs: pd.DataFrame, column: str) -> object | None:
    if column not in runs:
        return None
    values = runs[column].dropna().unique()
    return values[0] if len(values) == 1 else None


def _allreduce(sim: pd.DataFrame) -> str | None:
    """The all-reduce algorithm of every simulated run whose strategy takes one (all-reduce,
    Local SGD, DiLoCo ...), with what ``auto`` chose; None when they differ (the legend names
    an algorithm that is not the default) or no run takes one.

    Examples
    --------
    >>> runs = pd.DataFrame({"strategy.algorithm": ["auto", "auto", None],
    ...                      "auto.collectives.all_reduce": [("ring",), None, None]})
    >>> _allreduce(runs)
    'auto (ring)'
    >>> _allreduce(runs.assign(**{"strategy.algorithm": ["ring", "auto", None]})) is None
    True

    A rule other than the simulator's own is named (what ``auto`` imitated):

    >>> _allreduce(runs.assign(**{"auto.rule": ["gloo", "gloo", None]}))
    'auto=gloo (ring)'
    """
    if "strategy.algorithm" not in sim:
        return None
    named = sim[sim["strategy.algorithm"].notna()]
    algorithm = _one(named, "strategy.algorithm")
    if algorithm != "auto" or "auto.collectives.all_reduce" not in named:
        return None if algorithm is None else str(algorithm)
    # What `auto` resolved to, as the runs recorded it (a run that never all-reduced has none).
    chosen = sorted(
        {
            str(name)
            for names in named["auto.collectives.all_reduce"]
            if isinstance(names, tuple | list | np.ndarray)
            for name in names
        }
    )
    rule = _one(named, "auto.rule") if "auto.rule" in named else None
    auto = "auto" if rule in (None, "commsim") else f"auto={rule}"
    return f"{auto} ({' or '.join(chosen)})" if chosen else auto


def network_title(runs: pd.DataFrame) -> str:
    """The network the runs share: family, bandwidth, latency, all-reduce algorithm (when
    every run that takes one used the same), and the real backend; fields that vary are
    left to the axes and the legend.

    Examples
    --------
    >>> runs = pd.DataFrame({"backend": ["sim", "real-gloo"], "topology.family": ["star", None],
    ...                      "topology.bandwidth": [1.25e8, None], "topology.latency": [1e-6, None],
    ...                      "strategy.name": ["allreduce"] * 2,
    ...                      "strategy.algorithm": ["ring", "auto"]})
    >>> network_title(runs)
    'sim: star, 1 Gbit/s links, 1 µs latency, all-reduce ring; real: gloo'
    >>> chose = runs.assign(**{"strategy.algorithm": "auto",
    ...                        "auto.collectives.all_reduce": [("ring",), None]})
    >>> network_title(chose)
    'sim: star, 1 Gbit/s links, 1 µs latency, all-reduce auto (ring); real: gloo'
    """
    sim = runs[[not is_real(b) for b in runs["backend"]]] if "backend" in runs else runs
    real = runs[[is_real(b) for b in runs["backend"]]] if "backend" in runs else runs.iloc[:0]
    parts = []
    if len(sim):
        network = []
        family = _one(sim, "topology.family")
        if family is not None:
            network.append(str(family))
        bandwidth = _one(sim, "topology.bandwidth")
        if bandwidth is not None:
            network.append(field_value("topology.bandwidth", bandwidth) + " links")
        latency = _one(sim, "topology.latency")
        if latency is not None:
            network.append(field_value("topology.latency", latency) + " latency")
        algorithm = _allreduce(sim)
        if algorithm is not None:
            network.append(f"all-reduce {algorithm}")
        parts.append("sim: " + (", ".join(network) or "varied networks"))
    if len(real):
        backends = sorted({str(b).removeprefix("real-") for b in real["backend"]})
        parts.append("real: " + "/".join(backends))
    return "; ".join(parts)
