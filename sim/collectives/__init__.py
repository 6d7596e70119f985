"""Collectives as schedules of point-to-point messages, one module per algorithm family.

:mod:`~sim.collectives.schedule` defines schedules and runs them on a network,
:mod:`~sim.collectives.select` checks arguments, picks the algorithm (``auto``) and remembers
plans (:class:`~sim.collectives.select.Planner`), :mod:`~sim.collectives.rules` names what
``auto`` imitates (``commsim``, ``gloo``, ``nccl``; NCCL's cost model is
:mod:`~sim.collectives.nccl`), and ``ring``, ``tree``, ``halving_doubling``, ``direct``,
``hierarchical`` and ``gloo`` build the schedules.
"""

from sim.collectives.rules import DEFAULT_RULE, RULES, library_rule
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
    "DEFAULT_RULE",
    "RULES",
    "OPS",
    "SMALL_MESSAGE_BYTES",
    "Chain",
    "CollectiveRun",
    "Planner",
    "Schedule",
    "Step",
    "choose",
    "library_rule",
    "plan",
    "supported",
]
