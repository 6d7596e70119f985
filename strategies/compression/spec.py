"""What a run asks for: a compression scheme and its options, parsed and checked once.

:meth:`Compression.parse` takes a name (``"topk"``), a dict (``{"name": "topk", "ratio":
0.01}``), an existing :class:`Compression` or ``None`` (no compression), fills in every
default and checks every option, raising a one-line ``ValueError`` naming the option and
the fix. :meth:`Compression.config` is what goes to ``run.json``.

=========  =============================================  ===========================
name       options (defaults)                             bytes a rank sends (n values)
=========  =============================================  ===========================
fp16       (none)                                         ``2n`` (all-reduce)
bf16       (none)                                         ``2n`` (all-reduce)
topk       ratio=0.01, error_feedback=True                ``8k`` (all-gather)
randomk    ratio=0.01, error_feedback=True                ``4k`` (all-reduce)
qsgd       levels=16                                      ``n + 4`` (all-gather)
uint8      (none)                                         ``n + 8`` (all-gather)
powersgd   rank=2, error_feedback=True, warm_start=True   ``4 (sum (n_i + m_i) r_i + v)``
signsgd    (none)                                         ``ceil(n / 8)`` (all-gather)
=========  =============================================  ===========================

``k = max(1, ceil(ratio * n))``; PowerSGD's ``n_i x m_i`` are its matrices, ``r_i`` the rank
clamped to ``min(n_i, m_i)``, ``v`` the values of the 1-D tensors (two all-reduces). Every
scheme also takes ``cost``: ``None`` (the measured defaults of
:mod:`strategies.compression.cost`), a number of ns per value (``0``: free) or a dict of
``encode``, ``decode`` and ``flop`` ns.

Examples
--------
>>> spec = Compression.parse({"name": "topk", "ratio": 0.1})
>>> spec.name, spec.options["ratio"], spec.options["error_feedback"], spec.rounds
('topk', 0.1, True, 1)
>>> Compression.parse("powersgd").rounds
2
>>> Compression.parse({"name": "qsgd", "cost": 0}).config()
{'name': 'qsgd', 'levels': 16, 'cost': {'encode': 0.0, 'decode': 0.0, 'flop': 0.0}}
>>> Compression.parse(None) is None
True
>>> Compression.parse({"name": "topk", "ratio": 1.5})
Traceback (most recent call last):
...
ValueError: compression topk ratio=1.5 must be in (0, 1]
>>> Compression.parse("zip")
Traceback (most recent call last):
...
ValueError: compression 'zip' is unknown; use one of fp16, bf16, topk, randomk, qsgd, uint8, powersgd, signsgd
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from strategies.compression.casts import HalfCodec
from strategies.compression.codec import Codec
from strategies.compression.cost import COST_KEYS, CostModel, default_cost
from strategies.compression.powersgd import PowerSGDCodec
from strategies.compression.quantize import QSGDCodec, UInt8Codec
from strategies.compression.sign import SignCodec
from strategies.compression.sparse import RandomKCodec, TopKCodec

__all__ = ["COMPRESSORS", "Compression"]

#: Each scheme's codec class and its options' defaults (``cost`` is common to all).
_SCHEMES: dict[str, tuple[type[Codec], dict[str, Any]]] = {
    "fp16": (HalfCodec, {}),
    "bf16": (HalfCodec, {}),
    "topk": (TopKCodec, {"ratio": 0.01, "error_feedback": True}),
    "randomk": (RandomKCodec, {"ratio": 0.01, "error_feedback": True}),
    "qsgd": (QSGDCodec, {"levels": 16}),
    "uint8": (UInt8Codec, {}),
    "powersgd": (PowerSGDCodec, {"rank": 2, "error_feedback": True, "warm_start": True}),
    "signsgd": (SignCodec, {}),
}

#: The known scheme names.
COMPRESSORS: tuple[str, ...] = tuple(_SCHEMES)


def _ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"compression {name} ratio={value!r} must be in (0, 1]")
    return float(value)


def _flag(option: str) -> Callable[[str, Any], bool]:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"compression {name} {option}={value!r} must be True or False")
        return value

    return check


def _int_in(option: str, low: int, high: int | None, why: str = "") -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise ValueError(
                f"compression {name} {option}={value!r} must be an integer {bound}{why}"
            )
        return int(value)

    return check


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "ratio": _ratio,
    "error_feedback": _flag("error_feedback"),
    "warm_start": _flag("warm_start"),
    "levels": _int_in("levels", 1, 127, " (levels travel as int8)"),
    "rank": _int_in("rank", 1, None),
}


def _ns(name: str, key: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"compression {name} {key}={value!r} must be a finite number of ns >= 0 (0 is free)"
        )
    return float(value)


def _cost(name: str, value: Any) -> dict[str, float]:
    """Resolve the ``cost`` option (see the module docstring)."""
    if value is None:
        return default_cost(name)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in COST_KEYS]
        if unknown:
            raise ValueError(
                f"compression {name} cost has no key {unknown[0]!r}; use {', '.join(COST_KEYS)} "
                "(ns per value, ns per flop)"
            )
        resolved = default_cost(name)
        resolved.update({k: _ns(name, f"cost[{k!r}]", v) for k, v in value.items()})
        return resolved
    ns = _ns(name, "cost", value)
    # A single number replaces the whole model, flop term included: 0 must mean free.
    return {"encode": ns, "decode": ns, "flop": 0.0}


class Compression:
    """A checked compression scheme: ``name`` and its fully resolved ``options``.

    Make one with :meth:`parse` (or ``Compression(name, **options)``); make per-rank state
    with :meth:`codec`.
    """

    __slots__ = ("name", "options")

    def __init__(self, name: str, **options: Any) -> None:
        if not isinstance(name, str) or name not in _SCHEMES:
            raise ValueError(
                f"compression {name!r} is unknown; use one of {', '.join(COMPRESSORS)}"
            )
        defaults = _SCHEMES[name][1]
        unknown = [k for k in options if k not in defaults and k != "cost"]
        if unknown:
            takes = ", ".join([*defaults, "cost"])
            raise ValueError(f"compression {name} has no option {unknown[0]!r}; it takes {takes}")
        resolved = {k: _CHECKS[k](name, options.get(k, v)) for k, v in defaults.items()}
        resolved["cost"] = _cost(name, options.get("cost"))
        self.name: str = name
        self.options: dict[str, Any] = resolved

    @classmethod
    def parse(cls, value: Any) -> Compression | None:
        """A :class:`Compression` from a name, a dict with ``name``, an instance, or
        ``None`` (no compression: returns ``None``)."""
        if value is None or isinstance(value, Compression):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            if "name" not in value:
                raise ValueError(
                    f"compression {dict(value)!r} has no 'name'; use e.g. "
                    "{'name': 'topk', 'ratio': 0.01}"
                )
            options = {k: v for k, v in value.items() if k != "name"}
            if not all(isinstance(k, str) for k in options):
                raise ValueError(
                    f"compression options must be named by strings, got {dict(value)!r}"
                )
            return cls(value["name"], **options)
        raise ValueError(
            f"compression={value!r} must be a name ({', '.join(COMPRESSORS)}), a dict with "
            "'name', or None"
        )

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **options}``, JSON-able (for ``run.json``)."""
        cost = dict(self.options["cost"])
        return {"name": self.name, **{**self.options, "cost": cost}}

    @property
    def rounds(self) -> int:
        """Collective rounds of the codec's all-reduce: 2 for PowerSGD, else 1."""
        return _SCHEMES[self.name][0].rounds

    @property
    def collective(self) -> str:
        """``"all_reduce"`` or ``"all_gather"``: what a single-round payload composes with
        (PowerSGD: two all-reduces)."""
        return _SCHEMES[self.name][0].collective

    def codec(
        self,
        w: Any,
        numel: int | None = None,
        shapes: Sequence[Sequence[int]] | None = None,
        salt: str = "",
    ) -> Codec:
        """Per-rank state for compressing tensors of ``numel`` values (default ``w.numel``).

        ``shapes`` (for PowerSGD) default to the model's trainable parameter shapes when
        ``numel`` is the model's size, else ``[(numel,)]``. ``salt`` tells two codecs of one
        rank apart (different call sites), so their random streams differ.
        """
        if numel is None:
            numel = int(w.numel)
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 1:
            raise ValueError(f"codec numel={numel!r} must be an integer >= 1")
        if not isinstance(salt, str):
            raise ValueError(f"codec salt={salt!r} must be a string naming the call site")
        if shapes is None:
            model = getattr(w, "model", None) if numel == getattr(w, "numel", None) else None
            if model is not None:
                shapes = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
            else:
                shapes = [(numel,)]
        checked: list[tuple[int, ...]] = [tuple(int(d) for d in s) for s in shapes]
        if sum(math.prod(s) for s in checked) != numel:
            raise ValueError(
                f"codec shapes {checked} hold {sum(math.prod(s) for s in checked)} values, not "
                f"numel={numel}; pass the shapes the flat tensor concatenates"
            )
        cls = _SCHEMES[self.name][0]
        seed = int(w.seed)  # the run's: both backends draw the same numbers
        cost = CostModel(**self.options["cost"])
        options = {k: v for k, v in self.options.items() if k != "cost"}
        return cls(
            self.name,
            options,
            numel=numel,
            shapes=checked,
            seed=seed,
            rank=int(w.rank),
            salt=salt,
            cost=cost,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Compression):
            return NotImplemented
        return (self.name, self.options) == (other.name, other.options)

    def __hash__(self) -> int:
        return hash((self.name, repr(sorted(self.options.items()))))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if k != "cost")
        return f"Compression({self.name!r}{', ' if shown else ''}{shown})"
