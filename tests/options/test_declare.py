"""Options declared once (options.declare): the constructor, its errors, the record and the
schema all come from a class's annotated attributes."""

from typing import Annotated, Literal

import pytest
from pydantic import Field

from options.declare import OptionError, declares_options, describe, option_fields
from strategies.base import Strategy
from strategies.local_sgd import LocalSGD
from strategies.parameter_server import ParameterServer


class Toy(Strategy):
    """A test strategy declared the new way."""

    name = "toy"
    period: Annotated[int, Field(ge=1, description="steps between rounds")] = 8
    mode: Literal["sync", "async"] = "sync"
    rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    label: str | None = None

    def __post_init__(self):
        if self.mode == "async" and self.label is None:
            self.label = "free"

    def worker(self, w):  # pragma: no cover - never run here
        yield w.compute_gradients()


class Handwritten(Strategy):
    """A strategy that writes its own __init__ (the older style) keeps it."""

    name = "handwritten"

    def __init__(self, k=1):
        super().__init__(k=k)

    def worker(self, w):  # pragma: no cover - never run here
        yield w.compute_gradients()


def test_the_declaration_makes_the_constructor_the_attributes_and_the_record():
    toy = Toy(4, rate=1)
    assert (toy.period, toy.mode, toy.rate, toy.label) == (4, "sync", 1, None)
    # A value is kept as given: the int 1 stays an int (a float would change run.json).
    assert repr(toy) == "Toy(period=4, mode='sync', rate=1, label=None)"
    assert toy.config() == {"name": "toy", "period": 4, "mode": "sync", "rate": 1, "label": None}
    # __post_init__ runs after the fields are set, and what it sets is recorded.
    assert Toy(mode="async").options["label"] == "free"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"period": 0}, "period=0 must be an integer >= 1 (steps between rounds)"),
        ({"period": True}, "period=True must be an integer >= 1"),  # a bool is not a count
        ({"period": "8"}, "period='8' must be an integer >= 1"),  # nor is text
        ({"mode": "fast"}, "mode='fast' is unknown; use one of sync, async"),
        ({"rate": 1.5}, "rate=1.5 must be a number in (0, 1]"),
        ({"perod": 3}, "toy has no argument 'perod'; did you mean 'period'? (valid: period, mode"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_and_the_fix(kwargs, message):
    with pytest.raises(OptionError) as caught:
        Toy(**kwargs)
    assert str(caught.value).startswith(message), str(caught.value)
    assert caught.value.field == next(iter(kwargs))
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)


def test_too_many_positional_options_is_refused():
    with pytest.raises(OptionError, match=r"^Toy takes at most 4 positional options"):
        Toy(1, "sync", 0.5, None, 9)
    with pytest.raises(OptionError, match=r"^Toy: period given twice"):
        Toy(1, period=2)


def test_a_handwritten_constructor_is_kept_and_declares_nothing():
    assert not declares_options(Handwritten) and option_fields(Handwritten) == {}
    assert Handwritten(k=3).options == {"k": 3}
    assert declares_options(LocalSGD) and declares_options(Toy)


def test_an_option_kept_under_another_attribute_is_written_by_its_name():
    """``servers`` is a method of sharded strategies, so the count lives in ``n_servers``."""
    ps = ParameterServer(servers=2)
    assert ps.n_servers == 2 and ps.servers(4) == [0, 1] and ps.options["servers"] == 2
    assert "servers" in option_fields(ParameterServer)
    with pytest.raises(OptionError, match=r"^servers=0 must be an integer >= 1"):
        ParameterServer(servers=0)


def test_the_schema_says_what_each_option_takes():
    fields = option_fields(LocalSGD)
    assert list(fields) == [
        "period",
        "warmup",
        "initial_period",
        "compression",
        "algorithm",
        "fault_tolerance",
        "min_replicas",
    ]
    assert describe(fields["warmup"]) == "an integer >= 0 (steps of all-reduce SGD first)"
    assert fields["period"].default == 8


def test_instances_never_share_a_mutable_default():
    class Bag(Strategy):
        name = "bag"
        items: list = []

        def worker(self, w):  # pragma: no cover - never run here
            yield w.compute_gradients()

    first, second = Bag(), Bag()
    first.items.append(1)
    assert second.items == [] and Bag.items == []


def test_a_subclass_adds_options_after_its_parents():
    class Slower(LocalSGD):
        name = "slower_local_sgd"
        pause: Annotated[int, Field(ge=0)] = 1

    slower = Slower(4, pause=2)
    assert list(option_fields(Slower))[-1] == "pause" and slower.period == 4
    assert repr(slower).endswith("min_replicas=1, pause=2)")


class Labelled:
    """A mixin with its own keyword, placed before a declared strategy (a test's wrapper)."""

    def __init__(self, *args, tag, **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = tag


class LabelledToy(Labelled, Toy):
    name = "labelled_toy_test_only"


def test_a_mixin_before_a_declared_strategy_is_called_once_and_the_options_recorded():
    made = LabelledToy(period=3, tag="x")
    assert (made.tag, made.period, made.options["period"]) == ("x", 3, 3)
    assert "tag" not in made.options
