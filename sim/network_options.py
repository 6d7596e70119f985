"""The network model's options, declared once (:mod:`options.declare`).

``sim.run(..., network=...)`` and an experiment file's ``[network]`` section both read this one
declaration: its types and ranges check what is given (one line naming the option and the
fix, the closest name for a misspelt one), and :func:`network_record` says what a run records.

Examples
--------
>>> network_options(routing="spray")["routing"]
'spray'
>>> network_options(routng="spray")
Traceback (most recent call last):
...
options.declare.OptionError: network has no argument 'routng'; did you mean 'routing'? (valid: model, sharing, efficiency, collectives, unfairness, routing)
>>> network_record("analytic")
{'model': 'analytic', 'routing': 'ecmp'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from options.declare import OneOf, OptionError, declared
from sim.collectives.select import check_auto
from sim.maxmin import MODELS, SHARINGS
from sim.routing import ROUTINGS, NetworkError

__all__ = ["network_options", "network_record"]


@declared
def network(
    *,
    model: Annotated[
        str, OneOf(MODELS), Field(description="flows sharing links, or each message alone")
    ] = "flow",
    sharing: Annotated[
        str, OneOf(SHARINGS), Field(description="max-min fair, or weighted by 1 / RTT")
    ] = "maxmin",
    efficiency: Annotated[
        float, Field(gt=0, le=1, allow_inf_nan=False, description="payload / wire bytes")
    ] = 1.0,
    collectives: Annotated[
        Any,
        Field(description="what auto stands for: a rule (commsim, gloo, nccl) or algorithms"),
    ] = {},  # noqa: B006 - never mutated: the checked copy is returned
    unfairness: Annotated[
        float, Field(ge=0, allow_inf_nan=False, description="spread of flows' weights; 0: fair")
    ] = 0.0,
    routing: Annotated[
        str, OneOf(ROUTINGS), Field(description="how flows use equal-cost paths")
    ] = "ecmp",
) -> dict[str, Any]:
    """Every network option, checked, with the defaults filled in; numbers as floats (as
    ``run.json`` has always recorded them) and ``collectives`` as its checked mapping."""
    if not isinstance(collectives, str | Mapping):
        raise OptionError(
            f"collectives={collectives!r} must name a rule (commsim, gloo, nccl) or map "
            "collectives to algorithms, e.g. {'all_reduce': 'ring'}",
            "collectives",
        )
    try:
        checked_auto = check_auto(collectives)
    except NetworkError as exc:
        raise OptionError(str(exc).removeprefix("collectives: "), "collectives") from None
    return {
        "model": model,
        "sharing": sharing,
        "efficiency": float(efficiency),
        "collectives": checked_auto,
        "unfairness": float(unfairness),
        "routing": routing,
    }


#: The declared builder under the name callers read (``network`` names it in its errors).
network_options = network


def network_record(network: str | Mapping[str, Any]) -> dict[str, Any]:
    """What a run records of ``network`` (a model's name or a mapping of options): the options
    given, checked, and always ``routing`` (its default changed from ``single`` to ``ecmp``,
    so a run's record says which paths its flows took). Raises :class:`OptionError`.

    >>> network_record({"efficiency": 1, "collectives": "gloo"})
    {'efficiency': 1.0, 'collectives': {'rule': 'gloo'}, 'routing': 'ecmp'}
    """
    if isinstance(network, str):
        network = {"model": network}
    if not isinstance(network, Mapping):
        raise OptionError(
            f"network={network!r} must be 'flow', 'analytic' or a mapping of its options", None
        )
    checked = network_options(**network)
    return {**{name: checked[name] for name in network}, "routing": checked["routing"]}
