"""How workers cooperate: the one strategy interface and the built-in strategies.

A :class:`Strategy` declares roles, its global model and its optimizers, and writes one
generator program per role against a :class:`~strategies.context.WorkerContext` /
:class:`~strategies.context.ServerContext` and a :class:`~strategies.comm.Communicator`.
Programs yield :class:`~strategies.handles.Handle` objects. Backends (``sim``, ``real``) drive
the same objects and report to the same :class:`~strategies.ledger.Ledger`. This package
never imports a backend.

The catalogue, one file per strategy (``docs/strategies.md`` has the table): all-reduce SGD,
parameter servers, Local SGD, EASGD, DiLoCo and Streaming DiLoCo, gossip, broadcast,
hierarchical, actor-learner (IMPALA); any gradient or parameter exchange can be compressed
(:mod:`strategies.compression`); the shared maths is in :mod:`~strategies.aggregate`,
:mod:`~strategies.averaging`, :mod:`~strategies.graphs` and :mod:`~strategies.mixing`.
"""

from strategies.actor_learner import ActorLearner
from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale
from strategies.allreduce import AllReduceSGD
from strategies.base import Program, Strategy
from strategies.broadcast import Broadcast
from strategies.comm import (
    ALGORITHMS,
    CommError,
    CommTimeout,
    Communicator,
    Group,
    PeerFailure,
    Received,
    Transport,
    as_message,
    check_rank,
    make_group,
    message_nbytes,
)
from strategies.compression import COMPRESSORS, Compression
from strategies.context import RoleContext, Runtime, ServerContext, WorkerContext
from strategies.diloco import DiLoCo
from strategies.easgd import EASGD
from strategies.gossip import Gossip
from strategies.handles import Handle, all_of, any_of, done
from strategies.hierarchical import Hierarchical
from strategies.ledger import GLOBAL_MODELS, Ledger, consensus_distance, is_eval_step
from strategies.local_sgd import LocalSGD
from strategies.optim import OPTIMIZERS, SCHEDULES, OptimizerSpec, ScheduleSpec
from strategies.parameter_server import ParameterServer
from strategies.registry import get, names, register
from strategies.replica import FlatOptimizer, Replica
from strategies.streaming_diloco import StreamingDiLoCo

__all__ = [
    "ALGORITHMS",
    "ActorLearner",
    "AllReduceSGD",
    "Broadcast",
    "COMPRESSORS",
    "CommError",
    "CommTimeout",
    "PeerFailure",
    "Communicator",
    "Compression",
    "DiLoCo",
    "EASGD",
    "FlatOptimizer",
    "GLOBAL_MODELS",
    "Gossip",
    "Group",
    "Handle",
    "Hierarchical",
    "Ledger",
    "LocalSGD",
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
    "StreamingDiLoCo",
    "Transport",
    "WorkerContext",
    "all_of",
    "any_of",
    "as_message",
    "check_rank",
    "consensus_distance",
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
