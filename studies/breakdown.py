"""Where a run's time went, per rank and for the critical rank, and its model FLOPs utilisation.

Every rank's time is *compute*, *exposed communication* (``comm_time``: it waited for data to
move and computed nothing meanwhile), and *idle* (waiting for a peer, sleeping; ``NaN`` on
``real``, whose waits cannot tell a peer's lateness from transfer time). *Overlapped
communication* (``overlap_time``) moved while the rank computed: a bucket's all-reduce
during backward. It is not a share of the rank's time (that time is compute), but what the
overlap saved: without it the step would be that much longer.

The *critical rank* is the worker that computed longest (ties: the one with the most exposed
communication, then the lowest rank): the straggler a synchronous step waits for.

*MFU* (model FLOPs utilisation) is the FLOPs the workers computed over what their devices'
peak could have in the run's time: ``flops_per_step x micro-batches / (time x peak)``, the
mean over workers. It is known for a simulated run whose compute model counts FLOPs
(``compute={"base": "flops", ...}``): there a micro-batch's FLOPs are its base seconds x
peak x efficiency, so ``MFU = efficiency x seconds x micro-batches per worker / time``;
stragglers, contention and exposed communication bring it below the efficiency.

Examples
--------
>>> import pandas as pd
>>> from runs import RunResult
>>> ranks = pd.DataFrame({"kind": "rank", "rank": [0, 1], "role": "worker",
...                       "compute_time": [3.0, 2.0], "comm_time": [1.0, 2.0],
...                       "idle_time": [0.0, 0.0], "overlap_time": [0.5, 0.5]})
>>> compute = pd.DataFrame({"rank": [0, 0, 1, 1], "gradient": [0, 1, 0, 1],
...                         "seconds": [1.5, 1.5, 1.0, 1.0]})
>>> config = {"compute": {"base": "flops", "efficiency": 0.5, "seconds": 1.0},
...           "accumulate": 1}
>>> result = RunResult(config, {"time": 4.0}, ranks, compute=compute)
>>> b = breakdown(result)
>>> b.critical, round(b.mfu, 4)
(0, 0.25)
>>> b.table.loc[0].to_dict()
{'role': 'worker', 'compute': 3.0, 'exposed_comm': 1.0, 'overlapped_comm': 0.5, 'idle': 0.0}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from runs import RunResult

__all__ = ["Breakdown", "breakdown"]

_COLUMNS = {
    "compute_time": "compute",
    "comm_time": "exposed_comm",
    "overlap_time": "overlapped_comm",
    "idle_time": "idle",
}


@dataclass(frozen=True)
class Breakdown:
    """A run's time per rank, its critical rank and its MFU.

    Attributes
    ----------
    table
        Seconds per rank (the index): ``role``, ``compute``, ``exposed_comm``,
        ``overlapped_comm`` (NaN for a run recorded before it was measured), ``idle``.
    critical
        The critical rank (see the module docstring); None without worker rows.
    mfu
        Model FLOPs utilisation in [0, 1]; None where the run's compute model counts no
        FLOPs (a given number of seconds, a measured time, a real run).
    """

    table: pd.DataFrame
    critical: int | None
    mfu: float | None

    @property
    def critical_row(self) -> pd.Series | None:
        """The critical rank's seconds."""
        return None if self.critical is None else self.table.loc[self.critical]


def breakdown(result: RunResult) -> Breakdown:
    """The :class:`Breakdown` of ``result``, from its rank rows, compute rows and config."""
    ranks = result.ranks
    if ranks.empty:
        return Breakdown(pd.DataFrame(columns=["role", *_COLUMNS.values()]), None, None)
    table = pd.DataFrame(index=ranks["rank"].astype(int).to_numpy())
    table.index.name = "rank"
    table["role"] = ranks["role"].to_numpy() if "role" in ranks else "worker"
    for column, name in _COLUMNS.items():
        values = ranks[column] if column in ranks else pd.Series(math.nan, index=ranks.index)
        table[name] = values.astype(float).to_numpy()
    table = table[["role", *_COLUMNS.values()]]
    workers = table[table["role"] == "worker"]
    critical = None
    if not workers.empty:
        order = workers.assign(_rank=workers.index).sort_values(
            ["compute", "exposed_comm", "_rank"], ascending=[False, False, True]
        )
        critical = int(order.index[0])
    return Breakdown(table, critical, _mfu(result, list(workers.index)))


def _mfu(result: RunResult, workers: list[int]) -> float | None:
    compute = result.config.get("compute")
    time = result.summary.get("time")
    if not isinstance(compute, dict) or compute.get("base") != "flops" or not workers:
        return None
    seconds, efficiency = compute.get("seconds"), compute.get("efficiency")
    if not seconds or not efficiency or not time or result.compute is None:
        return None
    gradients = result.compute[result.compute["rank"].isin(workers)]
    micro_batches = len(gradients) * int(result.config.get("accumulate", 1)) / len(workers)
    return float(efficiency) * float(seconds) * micro_batches / float(time)
