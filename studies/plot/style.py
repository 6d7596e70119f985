"""The one look of every figure: rcParams, a colour per strategy, a line style per backend.

A strategy keeps its colour in every figure: each registered strategy has a fixed hue (an
unknown one gets a hue from a hash of its name, stable across processes), and variants of one
strategy (``parameter_server(mode=async)`` and ``(mode=ssp)``) are shades of that hue.
Simulated runs are drawn solid, real ones dashed.
"""

from __future__ import annotations

import colorsys
import functools
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

if TYPE_CHECKING:  # matplotlib's names for rcParams keys, for its stubs only
    from matplotlib.typing import RcKeyType

__all__ = [
    "RC",
    "PHASE_COLOURS",
    "colour",
    "is_real",
    "linestyle",
    "new_axes",
    "styled",
]

#: rcParams every figure is drawn with (see :func:`styled`).
RC: dict[RcKeyType, Any] = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "legend.fontsize": "small",
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
}

# Fixed hues for the catalogue (tab10), in a fixed order so that adding a strategy to the
# registry never repaints the others.
_HUES = {
    "allreduce": "#1f77b4",
    "parameter_server": "#d62728",
    "local_sgd": "#2ca02c",
    "diloco": "#9467bd",
    "streaming_diloco": "#8c564b",
    "gossip": "#e377c2",
    "easgd": "#ff7f0e",
    "hierarchical": "#17becf",
    "broadcast": "#bcbd22",
}
_SPARE = ("#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")

#: Colours of the time-breakdown phases (not strategies: they must never look like one).
PHASE_COLOURS = {"compute": "#4c9a2a", "communication": "#3b75af", "idle": "#b0b0b0"}

P = ParamSpec("P")
R = TypeVar("R")


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a plotting function so that it draws with :data:`RC`.

    The settings are restored afterwards, except interactive mode: Jupyter's inline backend
    switches it on when the first figure is made, which may be inside this context, and
    restoring it would stop every later figure of the notebook from being shown.
    """

    @functools.wraps(fn)
    def draw(*args: P.args, **kwargs: P.kwargs) -> R:
        interactive = mpl.is_interactive()
        try:
            with mpl.rc_context(RC):
                try:
                    return fn(*args, **kwargs)
                finally:
                    interactive = mpl.is_interactive()  # as the drawing left it
        finally:
            mpl.interactive(interactive)  # after rc_context has restored the rest

    return draw


def colour(strategy: str, variant: int = 0, variants: int = 1) -> tuple[float, float, float]:
    """The RGB colour of ``strategy``'s ``variant``-th of ``variants`` variants.

    Examples
    --------
    >>> colour("allreduce") == to_rgb("#1f77b4")
    True
    >>> colour("my_strategy") == colour("my_strategy")  # stable, from the name
    True
    >>> dark, light = colour("parameter_server", 0, 2), colour("parameter_server", 1, 2)
    >>> sum(dark) < sum(light)
    True
    """
    base = _HUES.get(strategy) or _SPARE[zlib.crc32(strategy.encode()) % len(_SPARE)]
    if variants <= 1:
        return to_rgb(base)
    h, _, s = colorsys.rgb_to_hls(*to_rgb(base))
    # Shades from dark to light keep the hue, so a family reads as one.
    lightness = 0.3 + 0.45 * variant / (variants - 1)
    return colorsys.hls_to_rgb(h, lightness, s)


def is_real(backend: object) -> bool:
    """Whether a ``backend`` value names a real run (``"real-gloo"``, ``"real-nccl"`` ...).

    Examples
    --------
    >>> is_real("real-gloo"), is_real("sim")
    (True, False)
    """
    return str(backend).startswith("real")


def linestyle(backend: object) -> str:
    """Solid for simulated runs, dashed for real ones."""
    return "--" if is_real(backend) else "-"


def new_axes(ax: Axes | None, size: tuple[float, float] = (6.4, 4.2)) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure with one axes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        return fig, ax
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    return figure, ax
