"""Collectives as schedules of point-to-point messages, one module per algorithm family.

:mod:`~sim.collectives.schedule` defines schedules and runs them on a network,
:mod:`~sim.collectives.select` checks arguments, picks the algorithm (``auto``) and remembers
plans (:class:`~sim.collectives.select.Planner`), and ``ring``, ``tree``, ``halving_doubling``,
``direct`` and ``hierarchical`` build the schedules.
"""

from sim.collectives.schedule import Chain, CollectiveRun, Schedule, Step
from sim.collectives.select import (
    ALGORITHMS,
    OPS,
    SMALL_MESSAGE_BYTES,
    Planner,
    choose,
    plan,
    supported,
)

__all__ = [
    "ALGORITHMS",
    "OPS",
    "SMALL_MESSAGE_BYTES",
    "Chain",
    "CollectiveRun",
    "Planner",
    "Schedule",
    "Step",
    "choose",
    "plan",
    "supported",
]
