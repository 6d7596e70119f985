import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topologies.units import (
    BANDWIDTH_UNITS,
    TIME_UNITS,
    UnitError,
    format_bandwidth,
    format_time,
    parse_bandwidth,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100Gbps", 12.5e9),
        ("100Gb/s", 12.5e9),
        ("8bps", 1.0),
        ("8b/s", 1.0),
        ("1Kbps", 125.0),
        ("1kbps", 125.0),
        ("1Mbps", 125e3),
        ("1Tbps", 125e9),
        ("1Tb/s", 125e9),
        ("25GB/s", 25e9),
        ("25 GB/s", 25e9),
        ("  25GB/s  ", 25e9),
        ("1B/s", 1.0),
        ("1KB/s", 1e3),
        ("1kB/s", 1e3),
        ("1MB/s", 1e6),
        ("1TB/s", 1e12),
        ("1KiB/s", 1024.0),
        ("1MiB/s", 2.0**20),
        ("1GiB/s", 2.0**30),
        ("2TiB/s", 2.0**41),
        ("1.5e3", 1500.0),
        (".5GB/s", 0.5e9),
        ("42", 42.0),
        (42, 42.0),
        (2.5, 2.5),
    ],
)
def test_parse_bandwidth(text, expected):
    assert parse_bandwidth(text) == pytest.approx(expected, rel=1e-12)
    assert isinstance(parse_bandwidth(text), float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),
        ("2\u03bcs", 2e-6),
        ("500ns", 5e-7),
        ("1.5ms", 1.5e-3),
        ("3s", 3.0),
        ("3 s", 3.0),
        ("0s", 0.0),
        ("0.25", 0.25),
        (1, 1.0),
        (0, 0.0),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("100G", "unknown unit 'G'"),
        ("10 gbps", "unknown unit 'gbps'"),
        ("10GBps", "unknown unit 'GBps'"),
        ("10Bps", "unknown unit 'Bps'"),
        ("10gb/s", "unknown unit 'gb/s'"),
        ("10KIB/s", "unknown unit 'KIB/s'"),
        ("10 Gb ps", "valid units"),
        ("fast", "expected a number"),
        ("", "expected a number"),
        ("-1Gbps", "must be positive"),
        ("0Gbps", "must be positive"),
        (0, "must be positive"),
        (-3.0, "must be positive"),
        ("nan", "must be finite"),
        ("infGbps", "must be finite"),
        (float("inf"), "must be finite"),
        (float("nan"), "must be finite"),
        (True, "expected a number"),
        (None, "expected a number"),
        ([1], "expected a number"),
    ],
)
def test_parse_bandwidth_errors(text, fragment):
    with pytest.raises(UnitError, match="bad bandwidth") as info:
        parse_bandwidth(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    if "unit" in fragment:
        assert "Gbps" in message and "GiB/s" in message  # lists the valid units


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2 sec", "unknown unit 'sec'"),
        ("2US", "unknown unit 'US'"),
        ("2Ms", "unknown unit 'Ms'"),
        ("2min", "unknown unit 'min'"),
        ("-1us", "must be non-negative"),
        (-1, "must be non-negative"),
        ("inf", "must be finite"),
        (float("nan"), "must be finite"),
    ],
)
def test_parse_time_errors(text, fragment):
    with pytest.raises(UnitError, match="bad time") as info:
        parse_time(text)
    assert fragment in str(info.value)


def test_unit_error_is_value_error():
    assert issubclass(UnitError, ValueError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.5e9, "100Gbps"),
        (125e9, "1Tbps"),
        (1.0, "8bps"),
        (1.25e8, "1Gbps"),
        (3e5, "2.4Mbps"),
        (1.25e15, "10000Tbps"),
    ],
)
def test_format_bandwidth(value, text):
    assert format_bandwidth(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2e-6, "2us"),
        (5e-7, "500ns"),
        (1.5e-3, "1.5ms"),
        (3.0, "3s"),
        (0.0, "0ns"),
        (1e-10, "0.1ns"),
        (12345.0, "12345s"),
    ],
)
def test_format_time(value, text):
    assert format_time(value) == text


def test_format_with_unit():
    assert format_bandwidth(300e9, unit="GB/s") == "300GB/s"
    assert format_bandwidth(2.0**30, unit="GiB/s") == "1GiB/s"
    assert format_time(1e-3, unit="us") == "1000us"
    with pytest.raises(UnitError, match="bad bandwidth unit 'GBps'"):
        format_bandwidth(1.0, unit="GBps")
    with pytest.raises(UnitError, match="must be positive"):
        format_bandwidth(-1.0)


@given(st.floats(min_value=1e-3, max_value=1e18, allow_nan=False))
def test_bandwidth_round_trip(x):
    assert parse_bandwidth(format_bandwidth(x)) == pytest.approx(x, rel=5e-4)


@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_time_round_trip(x):
    assert parse_time(format_time(x)) == pytest.approx(x, rel=5e-4, abs=1e-13)


@given(
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
    st.sampled_from(sorted(BANDWIDTH_UNITS)),
)
def test_every_bandwidth_unit_scales(number, unit):
    assert parse_bandwidth(f"{number!r}{unit}") == pytest.approx(number * BANDWIDTH_UNITS[unit])
    assert parse_bandwidth(format_bandwidth(number, unit=unit)) == pytest.approx(number, rel=5e-4)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(sorted(TIME_UNITS)))
def test_every_time_unit_scales(number, unit):
    assert parse_time(f"{number!r} {unit}") == pytest.approx(number * TIME_UNITS[unit])


def test_unit_tables_are_consistent():
    assert BANDWIDTH_UNITS["Gbps"] * 8 == BANDWIDTH_UNITS["GB/s"]
    assert BANDWIDTH_UNITS["GiB/s"] == 1024 * BANDWIDTH_UNITS["MiB/s"]
    assert all(
        math.isfinite(v) and v > 0 for v in [*BANDWIDTH_UNITS.values(), *TIME_UNITS.values()]
    )
