"""The objects made before a simulation, left out of the garbage collector's full passes.

A full pass walks every tracked object of the process: the imports (torch alone brings
~250,000), the topology's graph, the replicas and contexts of a run. A simulation allocates
enough to trigger several, each walking those long-lived objects again for nothing; at a
thousand ranks they took a third of a timing-only run's time, and two of them half the routing
of a 4,096-rank ring on ``fat_tree(26)``. :func:`set_up_left_alone` moves what exists into the
collector's permanent generation (``gc.freeze``) for the duration and hands it back after.

Examples
--------
>>> import gc
>>> with set_up_left_alone():
...     gc.get_freeze_count() > 0
True
>>> gc.get_freeze_count()
0
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["set_up_left_alone"]


@contextmanager
def set_up_left_alone() -> Iterator[None]:
    """The objects that exist now left out of the garbage collector's passes while the
    block runs (``gc.freeze``), handed back at its end. A process whose collector is off, or
    that froze its heap itself (before forking, say), is left as it was."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
