"""A progress bar over global steps (rich), silent unless asked for."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["StepProgress"]


class StepProgress:
    """Context manager showing ``steps / total``; a no-op when ``enabled`` is false."""

    def __init__(self, total: int, enabled: bool = True, label: str = "simulating") -> None:
        self.enabled = enabled
        self._progress = (
            Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            if enabled
            else None
        )
        self._task = self._progress.add_task(label, total=total) if self._progress else None

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

    def update(self, completed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed)
