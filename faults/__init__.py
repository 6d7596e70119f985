"""Fault schedules, one description for both backends: crashes at a step or a time (with or
without a restart), random crashes from an MTBF drawn from the run's seed, links that go down
or slow down, and transient stragglers; read from Python, TOML or JSON, checked against the
run with one-line errors (:class:`FaultError`), recorded in ``run.json``.

This package sits beside ``topologies`` (it needs numpy, ``options`` and
``topologies.units``), below ``sim`` and ``real``, which apply the schedule.
"""

from __future__ import annotations

from faults.draws import DISTRIBUTIONS, STREAM
from faults.errors import FaultError
from faults.events import Crash, Event, LinkFault, RandomCrashes, Slow
from faults.reading import KINDS
from faults.schedule import FaultSchedule

__all__ = [
    "DISTRIBUTIONS",
    "KINDS",
    "STREAM",
    "Crash",
    "Event",
    "FaultError",
    "FaultSchedule",
    "LinkFault",
    "RandomCrashes",
    "Slow",
]
