"""Spec strings: one grammar for the command line and the Python API."""

import pytest

from real.cli import parse_spec as cli_parse_spec
from strategies import OptimizerSpec, ScheduleSpec, registry
from strategies.specs import parse_spec

SPECS = [
    "allreduce",
    "local_sgd:period=8",
    "parameter_server:mode=ssp,staleness=2",
    "adam:lr=0.001,amsgrad=true",
    "x:a=none,b=False,c=1e-3,d=text, e = 2 ",
    "local_sgd:period",
    ":period=2",
    "local_sgd:=2",
]


@pytest.mark.parametrize("spec", SPECS)
def test_the_api_reads_a_spec_as_the_command_line_does(spec):
    try:
        expected = cli_parse_spec(spec, "--strategy")
    except ValueError as exc:
        with pytest.raises(ValueError) as caught:
            parse_spec(spec, "--strategy")
        assert str(caught.value) == str(exc)
    else:
        assert parse_spec(spec, "--strategy") == expected


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
