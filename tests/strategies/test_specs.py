"""Spec strings: one grammar for the command line and the Python API."""

import pytest

from strategies import OptimizerSpec, ScheduleSpec, registry
from strategies.specs import parse_spec


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("allreduce", ("allreduce", {})),
        ("local_sgd:period=8", ("local_sgd", {"period": 8})),
        (
            "parameter_server:mode=ssp,staleness=2",
            ("parameter_server", {"mode": "ssp", "staleness": 2}),
        ),
        ("adam:lr=0.001,amsgrad=true", ("adam", {"lr": 0.001, "amsgrad": True})),
        (
            "x:a=none,b=False,c=1e-3,d=text, e = 2 ",
            ("x", {"a": None, "b": False, "c": 1e-3, "d": "text", "e": 2}),
        ),
        (
            "local_sgd:period",
            "--strategy: bad item 'period' in 'local_sgd:period'; write name:key=value",
        ),
        (":period=2", "--strategy: ':period=2' has no name"),
        ("local_sgd:=2", "--strategy: bad item '=2'"),
    ],
)
def test_one_reader_of_spec_strings_for_the_command_line_and_the_api(spec, expected):
    from real.cli import parse_spec as command_line

    for parse in (parse_spec, command_line):  # the command line's is the same function
        if isinstance(expected, str):
            with pytest.raises(ValueError) as caught:
                parse(spec, "--strategy")
            assert str(caught.value).startswith(expected)
        else:
            assert parse(spec, "--strategy") == expected


def test_strategies_optimizers_and_schedules_take_a_spec():
    assert (
        registry.get("parameter_server:mode=ssp,staleness=2").config()
        == registry.get("parameter_server", mode="ssp", staleness=2).config()
    )
    assert OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9") == OptimizerSpec.parse(
        {"name": "sgd", "lr": 0.5, "momentum": 0.9}
    )
    assert ScheduleSpec.parse("step:every=2,gamma=0.5") == ScheduleSpec.parse(
        {"name": "step", "every": 2, "gamma": 0.5}
    )


def test_a_spec_and_an_argument_for_the_same_option_is_refused():
    with pytest.raises(ValueError, match=r"^strategy 'local_sgd': period given both"):
        registry.get("local_sgd:period=2", period=4)
