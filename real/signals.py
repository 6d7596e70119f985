"""SIGINT and SIGTERM as a run's processes take them: handed to a function of the run's own.

Ctrl-C reaches every process of a terminal's process group, a cluster's scheduler sends
SIGTERM, and either, by default, ends a process before it has written what it measured. A
launcher or a rank instead turns them into a stop of the run (:mod:`real.launch`,
:mod:`real.rank`). Only the main thread can take signals; elsewhere nothing changes.

Examples
--------
>>> import os, signal
>>> got = []
>>> with interrupts(got.append):
...     os.kill(os.getpid(), signal.SIGTERM)
>>> got
['SIGTERM']
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["interrupts", "terminate_interrupts"]


@contextmanager
def interrupts(handler: Callable[[str], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``handler`` with the signal's name (it may
    raise, as Ctrl-C's default does); the previous handlers come back on the way out."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(
                signum, lambda number, frame: handler(signal.Signals(number).name)
            )
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def _raise(name: str) -> None:
    raise KeyboardInterrupt(f"interrupted by {name}")


@contextmanager
def terminate_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM interrupts as Ctrl-C does (``KeyboardInterrupt``, saying
    which signal), so that ``finally`` blocks and run writers run: Python's default for
    SIGTERM dies without them.

    >>> import os, signal
    >>> try:
    ...     with terminate_interrupts():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ... except KeyboardInterrupt as interrupt:
    ...     print(interrupt)
    interrupted by SIGTERM
    """
    with interrupts(_raise):
        yield
