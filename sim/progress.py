"""A progress bar over global steps (rich), with simulated time and the last loss; silent
unless asked for."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["StepProgress"]


class StepProgress:
    """Context manager showing ``steps / total``, simulated seconds and the last held-out loss;
    a no-op when ``enabled`` is false.

    Examples
    --------
    >>> bar = StepProgress(10, enabled=False, clock=lambda: 0.25)
    >>> bar.observe([{"kind": "eval", "loss": 0.5}])
    >>> bar.status()
    'sim 0.25 s  loss 0.5'
    >>> bar.observe([{"kind": "eval", "loss": float("nan"), "return": 21.0}])  # an RL run's
    >>> bar.status()
    'sim 0.25 s  return 21'
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        label: str = "simulating",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.enabled = enabled
        self._clock = clock
        self._loss = math.nan
        self._metric = "loss"
        self._progress = (
            Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                transient=True,
            )
            if enabled
            else None
        )
        self._task = (
            self._progress.add_task(label, total=total, status="") if self._progress else None
        )

    def __enter__(self) -> StepProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def status(self) -> str:
        """What the bar shows beside the count: simulated time and the last loss."""
        parts = []
        if self._clock is not None:
            parts.append(f"sim {self._clock():.4g} s")
        if not math.isnan(self._loss):
            parts.append(f"{self._metric} {self._loss:.4g}")
        return "  ".join(parts)

    def observe(self, rows: Sequence[dict[str, Any]]) -> None:
        """Note the loss of the newest evaluation among the rows measured so far."""
        for row in reversed(rows):
            if row.get("kind") == "eval":
                self._metric, self._loss = "loss", float(row.get("loss", math.nan))
                if math.isnan(self._loss) and "return" in row:  # a workload's mean return
                    self._metric, self._loss = "return", float(row["return"])
                return

    def update(self, completed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, status=self.status())
