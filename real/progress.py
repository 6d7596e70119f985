"""A progress bar for a real run, drawn by whoever watches it (the local launcher, or rank 0
on a cluster) from the steps the owners of the global model publish on the run's store.

The global model has taken step ``k`` once every owner has, so the bar shows the slowest
owner's step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from real.runtime import STEP_KEY
from strategies import rules

__all__ = ["RunProgress", "global_step"]


def global_step(store: Any, owners: list[int]) -> int:
    """The global step (:func:`strategies.rules.global_step`) of the owners' published
    steps (0 before every owner has published one)."""
    steps = []
    for rank in owners:
        key = STEP_KEY.format(rank=rank)
        if not store.check([key]):
            return 0
        steps.append(int(bytes(store.get(key)).decode()))
    return rules.global_step(steps)


class RunProgress:
    """``with RunProgress(connect, owners, steps, label):`` draws the bar while the run goes on.

    ``connect()`` returns a store client for the bar's thread alone (a client serves one
    call at a time); it is called in that thread, so it may wait for the store to come up.
    With ``enabled=False`` nothing is drawn (tests, library calls)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        owners: list[int],
        steps: int,
        label: str,
        enabled: bool = True,
    ) -> None:
        self._connect = connect
        self._owners = owners
        self._steps = steps
        self._label = label
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunProgress:
        if self._enabled:
            self._thread = threading.Thread(target=self._draw, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _draw(self) -> None:
        try:
            store = self._connect()
        except Exception:  # no store, no bar: the run itself reports what went wrong
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(self._label, total=self._steps)
            while True:
                stopping = self._stop.wait(0.2)
                try:
                    bar.update(task, completed=global_step(store, self._owners))
                except Exception:  # the store went away with the run: the bar ends here
                    return
                if stopping:
                    return
