"""The option types workload builders share, declared once (:mod:`options.declare`).

Examples
--------
>>> from options.declare import describe
>>> from pydantic.fields import FieldInfo
>>> describe(FieldInfo.from_annotated_attribute(BatchSize, 32))
'an integer >= 1 (samples per worker and step)'
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from options.declare import OneOf
from workloads.partition import PARTITIONS

__all__ = ["Alpha", "BatchSize", "Coefficient", "Count", "Discount", "Partition", "Share"]

#: Samples per worker and step.
BatchSize = Annotated[int, Field(ge=1, description="samples per worker and step")]

#: How the training set is split among workers.
Partition = Annotated[str, OneOf(tuple(PARTITIONS)), Field(description="how data is split")]

#: Dirichlet concentration of a non-iid partition.
Alpha = Annotated[float, Field(gt=0, description="smaller = more skewed")]

#: A size that must be at least one.
Count = Annotated[int, Field(ge=1)]

#: A discount or GAE's lambda: a fraction of the future kept per step.
Discount = Annotated[float, Field(ge=0, le=1)]

#: A loss term's weight.
Coefficient = Annotated[float, Field(ge=0)]

#: A part of a whole, strictly between 0 and 1.
Share = Annotated[float, Field(gt=0, lt=1)]
