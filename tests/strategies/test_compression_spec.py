"""Compression specs: parsing, defaults, one-line errors, config, cost option, codec set-up."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from strategies.compression import COMPRESSORS, Compression
from strategies.compression.cost import DEFAULT_FLOP_NS, DEFAULT_NS_PER_VALUE


def worker(numel=10, model=None, rank=0, seed=0):
    return SimpleNamespace(rank=rank, world_size=1, numel=numel, model=model, seed=seed)


def test_names_are_the_documented_ones():
    assert COMPRESSORS == (
        "fp16",
        "bf16",
        "topk",
        "randomk",
        "qsgd",
        "uint8",
        "powersgd",
        "signsgd",
    )
    assert set(DEFAULT_NS_PER_VALUE) == set(COMPRESSORS)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("fp16", {}),
        ("bf16", {}),
        ("topk", {"ratio": 0.01, "error_feedback": True}),
        ("randomk", {"ratio": 0.01, "error_feedback": True}),
        ("qsgd", {"levels": 16}),
        ("uint8", {}),
        ("powersgd", {"rank": 2, "error_feedback": True, "warm_start": True}),
        ("signsgd", {}),
    ],
)
def test_defaults_are_resolved_and_config_round_trips_through_json(name, options):
    spec = Compression.parse(name)
    encode, decode = DEFAULT_NS_PER_VALUE[name]
    flop = DEFAULT_FLOP_NS if name == "powersgd" else 0.0
    assert spec.options == {**options, "cost": {"encode": encode, "decode": decode, "flop": flop}}
    config = json.loads(json.dumps(spec.config()))
    assert config == {"name": name, **spec.options}
    assert Compression.parse(config) == spec
    assert spec.rounds == (2 if name == "powersgd" else 1)


def test_parse_accepts_a_dict_an_instance_and_none():
    spec = Compression.parse({"name": "topk", "ratio": 0.25, "error_feedback": False})
    assert (spec.name, spec.options["ratio"], spec.options["error_feedback"]) == (
        "topk",
        0.25,
        False,
    )
    assert Compression.parse(spec) is spec
    assert Compression.parse(None) is None
    assert Compression("qsgd", levels=4) == Compression.parse({"name": "qsgd", "levels": 4})
    assert Compression.parse({"name": "powersgd", "rank": 4}).options["rank"] == 4


def test_config_is_a_copy():
    spec = Compression.parse("topk")
    spec.config()["cost"]["encode"] = 99.0
    assert spec.options["cost"]["encode"] == DEFAULT_NS_PER_VALUE["topk"][0]


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        (0, {"encode": 0.0, "decode": 0.0, "flop": 0.0}),
        (2.5, {"encode": 2.5, "decode": 2.5, "flop": 0.0}),
        (
            {"decode": 1},
            {"encode": DEFAULT_NS_PER_VALUE["powersgd"][0], "decode": 1.0, "flop": DEFAULT_FLOP_NS},
        ),
    ],
)
def test_cost_option(value, cost):
    assert Compression.parse({"name": "powersgd", "cost": value}).options["cost"] == cost


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"name": "topk", "ratio": 1.5}, "compression topk ratio=1.5 must be in (0, 1]"),
        ({"name": "topk", "ratio": 0}, "ratio=0 must be in (0, 1]"),
        ({"name": "randomk", "ratio": True}, "ratio=True"),
        ({"name": "randomk", "ratio": "0.1"}, "ratio='0.1'"),
        ({"name": "topk", "error_feedback": "yes"}, "error_feedback='yes' must be True or False"),
        ({"name": "powersgd", "warm_start": 1}, "warm_start=1 must be True or False"),
        ({"name": "powersgd", "rank": 0}, "rank=0 must be an integer >= 1"),
        ({"name": "powersgd", "rank": 2.0}, "rank=2.0"),
        (
            {"name": "qsgd", "levels": 128},
            "levels=128 must be an integer in 1..127 (levels travel as int8)",
        ),
        ({"name": "qsgd", "levels": 0}, "levels=0"),
        ({"name": "fp16", "cost": -1}, "cost=-1 must be a finite number of ns >= 0"),
        ({"name": "fp16", "cost": "fast"}, "cost='fast'"),
        ({"name": "fp16", "cost": float("inf")}, "cost=inf"),
        (
            {"name": "fp16", "cost": {"speed": 1}},
            "cost has no key 'speed'; use encode, decode, flop",
        ),
        ({"name": "fp16", "cost": {"flop": -2}}, "cost['flop']=-2"),
        ({"name": "fp16", "ratio": 0.1}, "compression fp16 has no option 'ratio'; it takes cost"),
        (
            {"name": "topk", "levels": 3},
            "topk has no option 'levels'; it takes ratio, error_feedback, cost",
        ),
        (
            "zip",
            "compression 'zip' is unknown; use one of fp16, bf16, topk, randomk, qsgd, uint8, powersgd, signsgd",
        ),
        ({"ratio": 0.1}, "has no 'name'"),
        (42, "compression=42 must be a name"),
    ],
)
def test_errors_are_one_line_and_name_the_field(value, words):
    with pytest.raises(ValueError) as info:
        Compression.parse(value)
    message = str(info.value)
    assert "\n" not in message
    assert words in message


def test_codec_shapes_default_to_the_trainable_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[1].bias.requires_grad_(False)
    numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    spec = Compression.parse("powersgd")
    codec = spec.codec(worker(numel, model))
    assert codec.shapes == [(4, 3), (4,), (2, 4)]
    assert codec.numel == numel == 3 * 4 + 4 + 4 * 2
    # Another size is one flat tensor, unless shapes say otherwise.
    assert spec.codec(worker(numel, model), numel=7).shapes == [(7,)]
    assert spec.codec(worker(numel, model), numel=6, shapes=[(2, 3)]).shapes == [(2, 3)]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"numel": 6, "shapes": [(2, 2)]}, "codec shapes [(2, 2)] hold 4 values, not numel=6"),
        ({"numel": 0}, "codec numel=0 must be an integer >= 1"),
        ({"salt": 3}, "codec salt=3 must be a string"),
    ],
)
def test_codec_arguments_are_checked(kwargs, words):
    with pytest.raises(ValueError, match=None) as info:
        Compression.parse("topk").codec(worker(), **kwargs)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_codec_refuses_a_tensor_of_another_size():
    codec = Compression.parse("topk").codec(worker(10))
    with pytest.raises(ValueError, match="got 9 values but the codec was made for 10"):
        codec.encode(torch.zeros(9))


def test_codec_seconds_follow_the_cost_option():
    spec = Compression.parse({"name": "uint8", "cost": {"encode": 2.0, "decode": 3.0}})
    codec = spec.codec(worker(1000))
    assert codec.encode_seconds() == pytest.approx(1000 * 2.0e-9)
    assert codec.decode_seconds() == pytest.approx(1000 * 3.0e-9)
    power = Compression.parse(
        {"name": "powersgd", "rank": 3, "cost": {"encode": 1, "decode": 0, "flop": 0.5}}
    )
    codec = power.codec(worker(40 * 30 + 5), shapes=[(40, 30), (5,)])
    flops = 2 * 40 * 30 * 3
    assert codec.encode_seconds() == pytest.approx((1205 * 1 + 2 * flops * 0.5) * 1e-9)
    assert codec.decode_seconds() == pytest.approx(flops * 0.5 * 1e-9)
    free = Compression.parse({"name": "powersgd", "cost": 0}).codec(worker(12), shapes=[(3, 4)])
    assert free.encode_seconds() == free.decode_seconds() == 0.0


def test_ratio_is_one_before_any_call():
    assert Compression.parse("signsgd").codec(worker()).ratio == 1.0
    expected = 10 * DEFAULT_NS_PER_VALUE["fp16"][0] * 1e-9
    assert math.isclose(Compression.parse("fp16").codec(worker()).encode_seconds(), expected)
