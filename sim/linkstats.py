"""Link statistics: bytes carried and busy time per directed link, from a history of rate patterns.

The network does not count bytes per link as it goes. Between two of its events the
transferring flows keep constant rates, which the rate solver has already summed per link (a
*pattern*: link ids and the load on each). :class:`LinkStats` records only which pattern ran
over which interval, merging contiguous intervals of the same pattern, and turns that history
into per-link figures when asked.

Examples
--------
A star of three hosts; one pattern puts 0.5 GB/s on the two links of route 0 -> 2 for 2 ms:

>>> import numpy as np, topologies
>>> from sim.routing import Router
>>> router = Router(topologies.star(3, bandwidth=1e9, latency=1e-6))
>>> links = router.route_links[router.route(0, 2)]
>>> stats = LinkStats(router, [(links, np.array([5e8, 5e8]))])
>>> stats.log(0.0, 1e-3, 0); stats.log(1e-3, 2e-3, 0)
>>> len(stats.history)
1
>>> stats.table(0.0, 2e-3).loc[(0, "s0"), ["bytes", "busy_time", "utilisation"]].tolist()
[1000000.0, 0.002, 0.5]
>>> float(stats.utilisation(0.0, 4e-3).loc[("s0", 2)])
0.25
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim.routing import NetworkError, Router

__all__ = ["LinkStats"]


class LinkStats:
    """The history of rate patterns of one network and the per-link figures it implies.

    Parameters
    ----------
    router : sim.routing.Router
        Numbers the directed links and holds their capacity and latency.
    patterns : sequence of (np.ndarray, np.ndarray)
        Per pattern id: the link ids it uses and the summed rate on each (the rate solver's
        ``patterns``, read when figures are asked for, so it may keep growing).
    """

    def __init__(self, router: Router, patterns: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.router = router
        self.patterns = patterns
        #: ``[t0, t1, pattern id]`` rows, merged when one pattern runs on contiguously.
        self.history: list[list[float]] = []

    def log(self, t0: float, t1: float, pattern: int) -> None:
        """Pattern ``pattern`` ran from ``t0`` to ``t1``; a negative id means nothing moved."""
        if pattern < 0:
            return
        history = self.history
        if history:
            last = history[-1]
            if last[2] == pattern and last[1] == t0:
                last[1] = t1
                return
        history.append([t0, t1, pattern])

    def carried(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Bytes carried and busy time per link within ``[start, end]``."""
        n = self.router.capacity.size
        carried, busy = np.zeros(n), np.zeros(n)
        if not self.history:
            return carried, busy
        h = np.asarray(self.history)
        overlap = np.clip(np.minimum(h[:, 1], end) - np.maximum(h[:, 0], start), 0.0, None)
        per_pattern = np.bincount(h[:, 2].astype(np.int64), weights=overlap)
        for pid in np.flatnonzero(per_pattern).tolist():
            links, load = self.patterns[pid]
            carried[links] += load * per_pattern[pid]
            busy[links] += per_pattern[pid]
        return carried, busy

    def table(self, start: float, end: float) -> pd.DataFrame:
        """Per directed link ``(u, v)``: capacity, latency, bytes, busy time, mean utilisation.

        Utilisation is bytes carried / (bandwidth x (``end - start``)), 0 for an empty span.
        """
        elapsed = end - start
        carried, busy = self.carried(start, end)
        r = self.router
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.where(elapsed > 0, carried / (r.capacity * elapsed), 0.0)
        return pd.DataFrame(
            {
                "bandwidth": r.capacity,
                "latency": r.latency,
                "bytes": carried,
                "busy_time": busy,
                "utilisation": util,
            },
            index=self._index(),
        )

    def utilisation(self, start: float, end: float) -> pd.Series:
        """Mean utilisation of each directed link over ``[start, end]`` (finite, start < end)."""
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise NetworkError(f"utilisation needs finite start < end, got {start!r}, {end!r}")
        carried, _ = self.carried(start, end)
        r = self.router
        return pd.Series(
            carried / (r.capacity * (end - start)), index=self._index(), name="utilisation"
        )

    def timeline(self, start: float, end: float, windows: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean utilisation of each link in each of ``windows`` equal windows of ``[start,
        end]``: the window edges (``windows + 1``) and a ``(windows, links)`` array.

        >>> import topologies
        >>> from sim.routing import Router
        >>> router = Router(topologies.star(2, bandwidth=1e9, latency=1e-6))
        >>> stats = LinkStats(router, [(np.array([0]), np.array([1e9]))])
        >>> stats.log(0.5, 1.0, 0)
        >>> edges, util = stats.timeline(0.0, 2.0, 4)
        >>> edges.tolist(), util[:, 0].tolist()
        ([0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 0.0, 0.0])
        """
        if windows < 1 or not end > start:
            raise NetworkError(
                f"timeline needs windows >= 1 and start < end, got {windows!r}, {start!r}, {end!r}"
            )
        width = (end - start) / windows
        edges = start + width * np.arange(windows + 1)
        edges[-1] = end
        util = np.zeros((windows, self.router.capacity.size))
        if not self.history:
            return edges, util
        h = np.asarray(self.history)
        # Each interval meets the windows from its first to its last (one more either side
        # guards against rounding; their overlap is then 0): contiguous intervals make this
        # at most intervals + windows pieces.
        first = np.clip(np.floor((h[:, 0] - start) / width).astype(np.int64) - 1, 0, windows - 1)
        last = np.clip(np.ceil((h[:, 1] - start) / width).astype(np.int64), 0, windows - 1)
        counts = np.maximum(last - first + 1, 0)
        row = np.repeat(np.arange(len(h)), counts)
        window = first[row] + (np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts))
        overlap = np.minimum(h[row, 1], edges[window + 1]) - np.maximum(h[row, 0], edges[window])
        keep = overlap > 0
        pattern = h[row[keep], 2].astype(np.int64)
        key = window[keep] * (int(pattern.max()) + 1) + pattern if pattern.size else pattern
        keys, where = np.unique(key, return_inverse=True)
        seconds = np.bincount(where, weights=overlap[keep])
        stride = int(pattern.max()) + 1 if pattern.size else 1
        for k, dt in zip(keys.tolist(), seconds.tolist()):
            links, load = self.patterns[k % stride]
            util[k // stride, links] += load * dt
        util /= self.router.capacity * width
        return edges, util

    def _index(self) -> pd.MultiIndex:
        return pd.MultiIndex.from_tuples(self.router.links, names=["u", "v"])
