"""How workers cooperate: the one strategy interface and the built-in strategies.

A :class:`Strategy` declares roles, its global model and its optimizers, and writes one
generator program per role against a :class:`~strategies.context.WorkerContext` /
:class:`~strategies.context.ServerContext` and a :class:`~strategies.comm.Communicator`.
Programs yield :class:`~strategies.handles.Handle` objects. Backends (``sim``, ``real``) drive
the same objects and report to the same :class:`~strategies.ledger.Ledger`. This package
never imports a backend.
"""

from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale
from strategies.allreduce import AllReduceSGD
from strategies.base import Program, Strategy
from strategies.comm import (
    ALGORITHMS,
    CommError,
    CommTimeout,
    Communicator,
    Group,
    Received,
    Transport,
    as_message,
    check_rank,
    make_group,
    message_nbytes,
)
from strategies.context import RoleContext, Runtime, ServerContext, WorkerContext
from strategies.handles import Handle, all_of, any_of, done
from strategies.ledger import GLOBAL_MODELS, Ledger, is_eval_step
from strategies.optim import OPTIMIZERS, SCHEDULES, OptimizerSpec, ScheduleSpec
from strategies.parameter_server import ParameterServer
from strategies.registry import get, names, register
from strategies.replica import FlatOptimizer, Replica

__all__ = [
    "ALGORITHMS",
    "AllReduceSGD",
    "CommError",
    "CommTimeout",
    "Communicator",
    "FlatOptimizer",
    "GLOBAL_MODELS",
    "Group",
    "Handle",
    "Ledger",
    "OPTIMIZERS",
    "OptimizerSpec",
    "ParameterServer",
    "Program",
    "Received",
    "Replica",
    "RoleContext",
    "Runtime",
    "SCHEDULES",
    "ScheduleSpec",
    "ServerContext",
    "Strategy",
    "Transport",
    "WorkerContext",
    "all_of",
    "any_of",
    "as_message",
    "check_rank",
    "done",
    "get",
    "is_eval_step",
    "make_group",
    "message_nbytes",
    "names",
    "reduce_tensors",
    "register",
    "shard_bounds",
    "staleness_lr_scale",
]
