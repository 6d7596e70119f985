"""Options declared once, as annotated class attributes, from which everything else comes.

A class that derives from :class:`Declared` (``strategies.Strategy`` does) lists its options
as annotated class attributes, with pydantic's ``Field`` for ranges and a description::

    class LocalSGD(Strategy):
        period: Annotated[int, Field(ge=1, description="local steps between averagings")] = 8
        warmup: Annotated[int, Field(ge=0)] = 0

From that one declaration come the constructor (``LocalSGD(period=4)``, or positionally in
the declared order), its checks (strict types: ``True`` is not an integer, ``"8"`` is not a
number; one-line errors naming the option, what it takes and the closest valid name), the
defaults, the attributes (``self.period``), the options recorded in ``run.json`` and shown by
``repr``, the schema an experiment file is checked against (:func:`option_fields`) and the
tables in the docs (:func:`options_table`). Rules between options (``initial_period`` only
with ``period="adaptive"``) go in ``__post_init__``, which runs after the fields are set.

A value is kept as given (an ``int`` given for a ``float`` option stays an ``int``), so a
declared class records and computes exactly what its hand-written constructor did.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import types
import typing
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from options.spec import did_you_mean

R = TypeVar("R")

__all__ = [
    "Declared",
    "OneOf",
    "OptionError",
    "Record",
    "check_options",
    "declared",
    "declares_options",
    "describe",
    "option_fields",
    "options_table",
]


class OptionError(ValueError, TypeError):
    """A bad option: one line naming it and the fix. ``field`` is the option's name (None
    when the error is about the options together), so a caller can say where it was set
    (``strategy.period``) without reading the message."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Record:
    """``Annotated`` metadata: how an option's value is recorded (``run.json``, ``repr``),
    when not as it is (a parsed compression scheme records its ``config()``); ``omit_none``
    leaves the option out while it is None."""

    as_recorded: Callable[[Any], Any] = lambda value: value
    omit_none: bool = False


@dataclass(frozen=True)
class OneOf:
    """``Annotated`` metadata: the value must be one of ``values`` (a list kept in code, such
    as the collective algorithms, that a ``Literal`` cannot name).

    Examples
    --------
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(Annotated[str, OneOf(("sync", "async"))]).validate_python("async")
    'async'
    """

    values: tuple[Any, ...]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def check(value: Any) -> Any:
            if value not in self.values:
                raise ValueError(f"use one of {', '.join(map(repr, self.values))}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))


@dataclass(frozen=True)
class _Declaration:
    model: type[BaseModel]
    #: By the option's name (a field's ``alias`` when it has one, else the attribute's).
    fields: dict[str, FieldInfo]
    records: dict[str, Record]
    #: The attribute each option is kept in (``servers`` in ``n_servers``: a method is
    #: called ``servers``).
    attributes: dict[str, str]


class Declared:
    """Base of classes whose options are their annotated class attributes (see the module).

    Annotations on a class that derives from this one are options, except ``ClassVar`` ones,
    names that start with ``_`` and names the root class itself annotates (its machinery:
    ``Strategy.name``, ``optimizers``). A subclass that writes
    its own ``__init__`` keeps it (and declares nothing this way): the older style still
    works, without the schema.
    """

    #: The options as recorded (``run.json``, ``repr``), in the declared order.
    options: dict[str, Any]
    #: The declaring root's own annotated names (never options), set on the root.
    _root_names: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if Declared in cls.__bases__:  # the root (Strategy): its annotations are machinery
            cls._root_names = frozenset(cls.__dict__.get("__annotations__", {})) | {"options"}
            return
        inherited = cls.__init__
        generated_or_root = inherited is _declared_init or any(
            Declared in klass.__bases__ and klass.__dict__.get("__init__") is inherited
            for klass in cls.__mro__
        )
        if "__init__" not in cls.__dict__ and generated_or_root and _own_option_names(cls):
            cls.__init__ = _declared_init  # type: ignore[assignment,method-assign]

    def __post_init__(self) -> None:
        """Rules between options, run after they are set; raise :class:`OptionError`."""


def _declared_init(self: Declared, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    declaration = _declaration(cls)
    names = list(declaration.fields)
    if len(args) > len(names):
        raise OptionError(
            f"{cls.__name__} takes at most {len(names)} positional options ({', '.join(names)}); "
            f"got {len(args)}"
        )
    for name, value in zip(names, args):
        if name in kwargs:
            raise OptionError(f"{cls.__name__}: {name} given twice; give it once", name)
        kwargs[name] = value
    for name, value in check_options(cls, kwargs).items():
        setattr(self, declaration.attributes[name], value)
    self.__post_init__()
    recorded: dict[str, Any] = {}
    for name in names:
        value = getattr(self, declaration.attributes[name])
        record = declaration.records.get(name)
        if record is not None:
            if record.omit_none and value is None:
                continue
            value = record.as_recorded(value)
        recorded[name] = value
    _root_init(cls)(self, **recorded)


def _root_init(cls: type) -> Callable[..., None]:
    """The declaring root's ``__init__`` (the one that keeps the recorded options): the
    first up the MRO from the root, so that a mixin with its own ``__init__`` placed before
    a declared class (``class Telling(Tells, AllReduceSGD)``) is not called again."""
    mro = cls.__mro__
    root = next((i for i, klass in enumerate(mro) if Declared in klass.__bases__), 1)
    for klass in mro[root:]:
        init = klass.__dict__.get("__init__")
        if init is not None and init is not _declared_init:
            return typing.cast(Callable[..., None], init)
    raise TypeError(f"{cls.__name__} has no root __init__ to keep its options")  # unreachable


def check_options(owner: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked against the declaration of ``owner`` (a :class:`Declared` class or a
    :func:`declared` function), with the defaults filled in; the values are kept as given.
    Raises :class:`OptionError` naming the first bad option."""
    declaration = _declaration_of(owner)
    fields = declaration.fields
    for name in given:
        if name not in fields:
            valid = list(fields)
            raise OptionError(
                f"{_label(owner)} has no argument {name!r}{did_you_mean(name, valid)} "
                f"(valid: {', '.join(valid)})",
                name,
            )
    try:
        declaration.model.model_validate(dict(given))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        name = next((n for n, a in declaration.attributes.items() if a == name), name)
        if error["type"] == "missing":
            raise OptionError(
                f"{_label(owner)} needs {name}: {describe(fields[name])}", name
            ) from None
        choices = _choices(fields[name])
        if choices is not None and isinstance(given[name], str):  # a name from a list
            known = ", ".join(str(v) for v in choices)
            why = f" ({fields[name].description})" if fields[name].description else ""
            raise OptionError(
                f"{name}={given[name]!r} is unknown; use one of {known}{why}", name
            ) from None
        raise OptionError(
            f"{name}={given[name]!r} must be {describe(fields[name])}", name
        ) from None
    values = {}
    for name, info in fields.items():
        if name in given:
            values[name] = given[name]
        elif not info.is_required():  # a copy: instances never share a mutable default
            values[name] = copy.deepcopy(info.get_default(call_default_factory=True))
    return values


def _choices(info: FieldInfo) -> list[Any] | None:
    """The values an option names from a list (``OneOf`` or ``Literal``, possibly or None),
    or None when it takes more than names."""
    for meta in info.metadata:
        if isinstance(meta, OneOf):
            return list(meta.values)
    branches = typing.get_args(info.annotation) if _is_union(info.annotation) else ()
    branches = branches or (info.annotation,)
    values: list[Any] = []
    for branch in branches:
        if branch is type(None):
            continue
        if typing.get_origin(branch) is Literal:
            values.extend(typing.get_args(branch))
            continue
        one_of = [m for m in _metadata(branch) if isinstance(m, OneOf)]
        if not one_of:
            return None
        values.extend(one_of[0].values)
    if type(None) in branches:
        values.append(None)
    return values or None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _label(owner: Any) -> str:
    name = getattr(owner, "name", "") if isinstance(owner, type) else ""
    return str(name or owner.__name__)


def _declaration_of(owner: Any) -> _Declaration:
    if isinstance(owner, type):
        return _declaration(owner)
    declaration = getattr(owner, "__declaration__", None)
    if not isinstance(declaration, _Declaration):
        raise TypeError(f"{owner!r} declares no options")
    return declaration


def declared(fn: Callable[..., R]) -> Callable[..., R]:
    """A builder function whose keyword parameters are its declared options: annotated as a
    class's are (``hidden: Annotated[int, Field(ge=1)] = 64``), checked as theirs are
    before the body runs, with the same one-line errors, and read by :func:`option_fields`.

    Examples
    --------
    >>> from pydantic import Field
    >>> @declared
    ... def toy(*, size: Annotated[int, Field(ge=1)] = 4) -> int:
    ...     return size * 2
    >>> toy(size=3), list(option_fields(toy))
    (6, ['size'])
    >>> toy(sise=3)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: toy has no argument 'sise'; did you mean 'size'? (valid: size)
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, FieldInfo] = {}
    definitions: dict[str, Any] = {}
    for name, parameter in inspect.signature(fn).parameters.items():
        if parameter.kind is not parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__}: declared options are keyword-only; put * first")
        default = ... if parameter.default is parameter.empty else parameter.default
        annotation = hints.get(name, Any)
        fields[name] = (
            FieldInfo.from_annotation(annotation)
            if default is ...
            else FieldInfo.from_annotated_attribute(annotation, default)
        )
        definitions[name] = (annotation, default)
    model = create_model(
        f"{fn.__name__}_options",
        __config__=ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True),
        **definitions,
    )
    declaration = _Declaration(model, fields, {}, {name: name for name in fields})

    @functools.wraps(fn)
    def build(**given: Any) -> R:
        return fn(**check_options(build, given))

    build.__declaration__ = declaration  # type: ignore[attr-defined]
    return build


def _own_option_names(cls: type) -> list[str]:
    """Names annotated as options on ``cls`` and the declaring classes above it."""
    names: list[str] = []
    root_names = cls._root_names if issubclass(cls, Declared) else frozenset()
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, Declared)) or klass is Declared:
            continue
        for name, annotation in klass.__dict__.get("__annotations__", {}).items():
            text = annotation if isinstance(annotation, str) else repr(annotation)
            if name.startswith("_") or name in root_names or "ClassVar" in text:
                continue
            if name not in names:
                names.append(name)
    return names


#: Each class's declaration, built on first use (annotations may name later classes). Kept
#: here, not on the class, so that pickling a class by value (cloudpickle, for a strategy
#: defined in a script's ``__main__``) does not carry the generated pydantic model.
_DECLARATIONS: weakref.WeakKeyDictionary[type, _Declaration] = weakref.WeakKeyDictionary()


def _declaration(cls: type[Declared]) -> _Declaration:
    cached = _DECLARATIONS.get(cls)
    if cached is not None:
        return cached
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise TypeError(f"{cls.__name__}'s options name a type Python cannot find: {exc}") from None
    fields: dict[str, FieldInfo] = {}
    records: dict[str, Record] = {}
    attributes: dict[str, str] = {}
    definitions: dict[str, Any] = {}
    for attribute in _own_option_names(cls):
        annotation = hints[attribute]
        default = getattr(cls, attribute, ...)
        if default is ...:
            info = FieldInfo.from_annotation(annotation)
        else:
            info = FieldInfo.from_annotated_attribute(annotation, default)
        name = info.alias or attribute
        fields[name], attributes[name] = info, attribute
        for meta in _metadata(annotation):
            if isinstance(meta, Record):
                records[name] = meta
        definitions[attribute] = (annotation, default)
    model = create_model(
        f"{cls.__name__}Options",
        __config__=ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True),
        **definitions,
    )
    declaration = _Declaration(model, fields, records, attributes)
    _DECLARATIONS[cls] = declaration
    return declaration


def option_fields(cls: Any) -> dict[str, FieldInfo]:
    """The options ``cls`` declares, in order, as pydantic fields (annotation, default,
    constraints, description): the schema experiment files and the docs read. Empty for a
    class that declares none (one with its own ``__init__``).

    Examples
    --------
    >>> from strategies.local_sgd import LocalSGD
    >>> list(option_fields(LocalSGD))
    ['period', 'warmup', 'initial_period', 'compression', 'algorithm', 'fault_tolerance', 'min_replicas']
    """
    if isinstance(getattr(cls, "__declaration__", None), _Declaration):
        return dict(_declaration_of(cls).fields)
    if not declares_options(cls):
        return {}
    return dict(_declaration(cls).fields)


def declares_options(cls: type) -> bool:
    """Whether ``cls`` declares its options (its constructor is the generated one), rather
    than writing its own ``__init__``."""
    return getattr(cls, "__init__", None) is _declared_init


def _metadata(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Annotated:
        return list(getattr(annotation, "__metadata__", ()))
    return []


def describe(info: FieldInfo) -> str:
    """What an option takes, in words, from its declaration: type, range and description.

    Examples
    --------
    >>> from typing import Annotated, Literal
    >>> from pydantic import Field
    >>> from pydantic.fields import FieldInfo
    >>> period = Annotated[int, Field(ge=1)] | Literal["adaptive"]
    >>> describe(FieldInfo.from_annotated_attribute(period, 8))
    "an integer >= 1 or 'adaptive'"
    >>> describe(FieldInfo.from_annotated_attribute(
    ...     Annotated[float, Field(gt=0, lt=1, description="the elastic rate")], 0.1))
    'a number in (0, 1) (the elastic rate)'
    """
    if info.annotation is Any and info.description:  # nothing to say but the description
        return info.description
    text = _describe_type(info.annotation, info.metadata)
    return f"{text} ({info.description})" if info.description else text


def _describe_type(annotation: Any, metadata: list[Any]) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        args = typing.get_args(annotation)
        inner_meta = [m for m in args[1:] if not isinstance(m, Record)]
        expanded: list[Any] = []
        for meta in inner_meta:
            expanded.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
        return _describe_type(args[0], [*metadata, *expanded])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if set(args) >= {int, float}:  # int | float is "a number"
            args = tuple(a for a in args if a is not int)
        return " or ".join(_describe_type(a, metadata) for a in args)
    if origin is Literal:
        return (
            "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
            if len(typing.get_args(annotation)) > 1
            else repr(typing.get_args(annotation)[0])
        )
    words = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "text",
        type(None): "None",
        Any: "a value",
    }
    for meta in metadata:
        if isinstance(meta, OneOf):
            return "one of " + ", ".join(map(repr, meta.values))
    if annotation is float and any(getattr(m, "ge", None) == math.inf for m in metadata):
        return "math.inf"  # a float that can only be infinite: the unbounded choice
    text = words.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if annotation is float and any(getattr(m, "allow_inf_nan", None) is False for m in metadata):
        text = "a finite number"
    return text + _describe_range(metadata)


def _describe_range(metadata: list[Any]) -> str:
    bounds: dict[str, Any] = {}
    for meta in metadata:
        for key in ("ge", "gt", "le", "lt"):
            value = getattr(meta, key, None)
            if isinstance(meta, annotated_types.BaseMetadata) and value is not None:
                bounds[key] = value
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (
        ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    )
    if low and high:
        return f" in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {_number(high[1])}"
    return ""


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(value)


def options_table(cls: Any) -> str:
    """A Markdown table of ``cls``'s options (name, default, what it takes): the docs' tables
    are made by this, so they cannot drift from the code.

    Examples
    --------
    >>> from strategies.easgd import EASGD
    >>> print(options_table(EASGD))  # doctest: +ELLIPSIS
    | option | default | takes |
    |---|---|---|
    | `alpha` | `0.1` | a number in (0, 1) (the elastic moving rate) |
    ...
    """
    lines = ["| option | default | takes |", "|---|---|---|"]
    for name, info in option_fields(cls).items():
        default = (
            "required"
            if info.is_required()
            else f"`{info.get_default(call_default_factory=True)!r}`"
        )
        lines.append(f"| `{name}` | {default} | {describe(info).replace('|', '/')} |")
    return "\n".join(lines)
