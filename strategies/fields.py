"""The option types strategies share, declared once (:mod:`options.declare`): a period, a
collective algorithm, a compression scheme, a server count.

Examples
--------
>>> from options.declare import describe
>>> from pydantic.fields import FieldInfo
>>> describe(FieldInfo.from_annotated_attribute(Period, 8))
'an integer >= 1 (local steps between synchronisations)'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from options.declare import OneOf, Record
from strategies.comm import ALGORITHMS_FOR

__all__ = [
    "Algorithm",
    "Compressed",
    "CompressedIfSet",
    "FaultTolerance",
    "FaultToleranceIfSet",
    "MinReplicas",
    "OuterLr",
    "OuterMomentum",
    "Period",
    "Servers",
]

#: Local steps between synchronisations.
Period = Annotated[int, Field(ge=1, description="local steps between synchronisations")]

#: The outer optimizer's step size and momentum (DiLoCo and Streaming DiLoCo).
OuterLr = Annotated[float, Field(gt=0, description="0 would never move the model")]
OuterMomentum = Annotated[float, Field(ge=0)]

#: How a synchronous strategy survives crashes: ``"quorum"`` (torchft's FT-DDP): each round
#: starts with a quorum of the live workers, a rejoining one is healed from a live peer, and
#: a round that fails is dropped (its gradients lost), not retried; ``None``: a crash ends
#: the run.
FaultTolerance = Annotated[Literal["quorum"] | None, Field(description="'quorum' survives crashes")]
#: As :data:`FaultTolerance`, left out of ``run.json`` while None (strategies that gained it
#: later, such as IMPALA, record what they recorded before it).
FaultToleranceIfSet = Annotated[FaultTolerance, Record(omit_none=True)]
#: The fewest live workers a quorum round needs (it waits for more to come back below that).
MinReplicas = Annotated[int, Field(ge=1, description="workers a quorum round needs")]

#: An all-reduce algorithm (the simulator's hint; ``"auto"`` lets it choose): every strategy
#: that takes one averages with it.
Algorithm = Annotated[str, OneOf(("auto", *ALGORITHMS_FOR["all_reduce"]))]


def _compression_config(spec: Any) -> Any:
    return None if spec is None else spec.config()


#: A ``strategies.compression`` scheme as given (``"topk"``, ``{"name": "qsgd", ...}``); the
#: strategy parses it in ``__post_init__`` and ``run.json`` records the parsed scheme's config.
Compressed = Annotated[
    Any,
    Record(_compression_config),
    Field(description="a strategies.compression scheme ('topk', {'name': 'qsgd', ...}) or None"),
]

#: As :data:`Compressed`, left out of ``run.json`` while None (strategies that gained
#: compression later record what they recorded before it).
CompressedIfSet = Annotated[
    Any,
    Record(_compression_config, omit_none=True),
    Field(description="a strategies.compression scheme ('topk', {'name': 'qsgd', ...}) or None"),
]

#: How many ranks are servers (the first ones, each holding one shard).
Servers = Annotated[int, Field(ge=1, alias="servers", description="ranks that are servers")]
