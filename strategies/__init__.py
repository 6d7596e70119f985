"""How workers cooperate: the one strategy interface and the built-in strategies.

A :class:`Strategy` declares roles and writes one generator program per role against a
:class:`~strategies.context.WorkerContext` / :class:`~strategies.context.ServerContext` and a
:class:`~strategies.comm.Communicator`. Backends (``sim``, ``real``) drive the same objects.
This package never imports a backend.
"""

from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale
from strategies.allreduce import AllReduceSGD
from strategies.base import Program, Strategy
from strategies.comm import (
    CommError,
    Communicator,
    Group,
    as_message,
    check_rank,
    make_group,
    message_nbytes,
)
from strategies.context import RoleContext, Runtime, ServerContext, WorkerContext
from strategies.handles import Done, Pending, Waitable
from strategies.optim import OPTIMIZERS, SCHEDULES, OptimizerSpec, ScheduleSpec
from strategies.parameter_server import ParameterServer
from strategies.registry import get, names, register
from strategies.replica import FlatOptimizer, Replica

__all__ = [
    "AllReduceSGD",
    "CommError",
    "Communicator",
    "Done",
    "FlatOptimizer",
    "Group",
    "OPTIMIZERS",
    "OptimizerSpec",
    "ParameterServer",
    "Pending",
    "Program",
    "Replica",
    "RoleContext",
    "Runtime",
    "SCHEDULES",
    "ScheduleSpec",
    "ServerContext",
    "Strategy",
    "Waitable",
    "WorkerContext",
    "as_message",
    "check_rank",
    "make_group",
    "get",
    "message_nbytes",
    "names",
    "reduce_tensors",
    "register",
    "shard_bounds",
    "staleness_lr_scale",
]
