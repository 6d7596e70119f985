"""The option types of the compute model, declared once (:mod:`options.declare`): a number
(numpy's scalars included, never a bool), a time in seconds, a factor, factors per rank.

Examples
--------
>>> from options.declare import describe
>>> from pydantic.fields import FieldInfo
>>> describe(FieldInfo.from_annotated_attribute(Factor, 1.0))
'a finite number > 0 (a factor on a time)'
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from sim.compute_trace import MAX_SECONDS

__all__ = ["Factor", "Number", "RankFactors", "Seconds", "StragglerOptions"]


def _as_float(value: Any) -> Any:
    """A real number that is not a float (``numpy.int64``, ``Fraction``) checked as a float;
    the value itself is kept as given. A bool is left alone, so it is refused."""
    if isinstance(value, Real) and not isinstance(value, bool | int | float):
        return float(value)
    return value


#: A real number, checked as a float: an ``int``, a numpy scalar, never ``True``.
Number = Annotated[float, BeforeValidator(_as_float)]

#: Seconds of one micro-batch's (or one server step's) compute: at most a day, since more is
#: a unit mistake (milliseconds written as seconds) and makes a run's time meaningless.
Seconds = Annotated[Number, Field(gt=0, le=MAX_SECONDS)]

#: A positive finite factor on a time.
Factor = Annotated[Number, Field(gt=0, allow_inf_nan=False, description="a factor on a time")]


#: Checks the factors of a mapping, whatever its keys (``ComputeModel.check_world`` checks
#: the ranks against the world).
_FACTORS: TypeAdapter[dict[Any, float]] = TypeAdapter(
    dict[Any, Factor], config=ConfigDict(strict=True)
)


def _rank_factors(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError("not a mapping")
    try:
        _FACTORS.validate_python(dict(value))
    except ValidationError:
        raise ValueError("a factor is not a positive finite number") from None
    return value


#: A constant slowdown factor per rank (``{3: 2.0}``: rank 3 twice as slow).
RankFactors = Annotated[
    Any,
    AfterValidator(_rank_factors),
    Field(description="a mapping of ranks to positive finite factors, e.g. {3: 2.0}"),
]


def _mapping(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError("not a mapping")
    return value


#: A straggler's parameters by name (each straggler declares its own: ``sim.stragglers``).
StragglerOptions = Annotated[
    Any,
    AfterValidator(_mapping),
    Field(description="a mapping of the straggler's parameters (cv, sigma, prob, scale, path)"),
]
