"""Fault schedules: every error is one line starting with its field, the forms a schedule is
given in (lists, dicts, TOML and JSON files), the record's round trip and the backends'
helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faults import (
    Crash,
    FaultError,
    FaultSchedule,
    LinkFault,
    RandomCrashes,
    Slow,
)

# A star: switch s0 and hosts h0..h3.
STAR = [("s0", f"h{i}") for i in range(4)]


def parse(value: Any, world_size: int = 4, links: Any = STAR, steps: int | None = 100):
    return FaultSchedule.parse(value, world_size=world_size, links=links, steps=steps)


def crash(**kw: Any) -> dict[str, Any]:
    return {"kind": "crash", "rank": 1, **kw}


def down(**kw: Any) -> dict[str, Any]:
    return {"kind": "link_down", "link": ["s0", "h3"], "at": 1, **kw}


def slow_link(**kw: Any) -> dict[str, Any]:
    return {"kind": "link_slow", "link": ["s0", "h3"], "factor": 0.5, "at": 1, **kw}


def slow(**kw: Any) -> dict[str, Any]:
    return {"kind": "slow", "rank": 2, "factor": 4, "at": 1, **kw}


def rnd(**kw: Any) -> dict[str, Any]:
    return {"kind": "crash", "mtbf": "300s", "restart": "10s", **kw}


# (events, field, the message's start after "field: ")
ERRORS = [
    # kinds and keys
    (
        [{"kind": "crsh", "rank": 1}],
        "faults[0].kind",
        "unknown kind 'crsh' (kinds: crash, link_down, link_slow, slow); did you mean 'crash'?",
    ),
    ([{"rank": 1, "step": 3}], "faults[0].kind", "missing; say which of crash"),
    (
        [crash(step=3, stpe=4)],
        "faults[0].stpe",
        "unknown key for a crash (keys: kind, rank, step, at, restart, restart_step); did you mean 'step'?",
    ),
    (
        [rnd(rank=1)],
        "faults[0].rank",
        "unknown key for random crashes (keys: kind, mtbf, ranks, restart, distribution, shape); did you mean 'ranks'?",
    ),
    (
        [down(factor=0.5)],
        "faults[0].factor",
        "unknown key for a link_down (keys: kind, link, at, until)",
    ),
    ([3], "faults[0]", "an event is a dict with a kind"),
    # missing keys
    ([{"kind": "crash", "step": 3}], "faults[0].rank", "missing; write e.g."),
    ([crash(rank=None, step=3)], "faults[0].rank", "missing; write e.g."),
    ([crash()], "faults[0].step", "give step or at for a crash, one of them"),
    ([crash(step=3, at=1)], "faults[0].step", "give step or at for a crash, not both"),
    ([{"kind": "slow", "rank": 2, "at": 1}], "faults[0].factor", "missing; write e.g."),
    (
        [{"kind": "link_slow", "link": ["s0", "h3"], "factor": 0.5}],
        "faults[0].at",
        "missing; write e.g.",
    ),
    # ranks
    ([crash(step=3, rank=4)], "faults[0].rank", "rank 4 is not in the run's ranks 0..3"),
    ([crash(step=3, rank=-1)], "faults[0].rank", "must be 0 or more, not -1"),
    ([slow(rank=7)], "faults[0].rank", "rank 7 is not in the run's ranks 0..3"),
    ([rnd(ranks=[0, 9])], "faults[0].ranks[1]", "rank 9 is not in the run's ranks 0..3"),
    ([rnd(ranks=[0, 0])], "faults[0].ranks", "lists a rank twice in [0, 0]"),
    ([rnd(ranks=[])], "faults[0].ranks", "is empty; list the ranks"),
    ([rnd(ranks=2)], "faults[0].ranks", "must be a list of ranks, e.g. [0, 2]"),
    # links
    ([down(link=["s0", "h9"])], "faults[0].link", "no node 'h9' (s0 links to h0, h1, h2, h3)"),
    (
        [down(link=["sw0", "h3"])],
        "faults[0].link",
        "no node 'sw0'; did you mean 's0'? (h3 links to s0)",
    ),
    ([down(link=["h0", "h3"])], "faults[0].link", "no link between h0 and h3 (h0 links to s0)"),
    ([down(link=["x", "y"])], "faults[0].link", "no node 'x'; nodes: h0, h1, h2, h3, s0"),
    ([down(link=["s0", "s0"])], "faults[0].link", "must be two different nodes"),
    ([down(link="s0-h3")], "faults[0].link", "must be a pair of node names"),
    ([down(link=[True, "s0"])], "faults[0].link", "must be a pair of node names"),
    # times
    ([slow(until=1)], "faults[0].until", "must be after at (1 s), not 1 s"),
    ([down(at="3s", until="2s")], "faults[0].until", "must be after at (3 s), not 2 s"),
    ([crash(at="-1s")], "faults[0].at", "bad time '-1s': must be non-negative"),
    ([crash(at=-2)], "faults[0].at", "bad time -2: must be non-negative"),
    ([slow(at="1 parsec")], "faults[0].at", "bad time '1 parsec'"),
    ([crash(at=1, restart=-5)], "faults[0].restart", "bad time -5: must be non-negative"),
    ([rnd(mtbf=0)], "faults[0].mtbf", "must be a positive number of seconds, not 0.0"),
    # steps
    ([crash(step=-1)], "faults[0].step", "must be 0 or more, not -1"),
    (
        [crash(step=101)],
        "faults[0].step",
        "step 101 is after the run's last step (100); give 0..100",
    ),
    (
        [crash(step=50, restart_step=101)],
        "faults[0].restart_step",
        "step 101 is after the run's last step",
    ),
    (
        [crash(step=50, restart_step=50)],
        "faults[0].restart_step",
        "must be after the crash's step (50), not 50",
    ),
    ([crash(at=1, restart_step=-3)], "faults[0].restart_step", "must be 0 or more, not -3"),
    (
        [crash(step=5, restart=1, restart_step=9)],
        "faults[0].restart",
        "give restart (seconds) or restart_step, not both",
    ),
    # bools and other types where numbers are expected
    ([crash(rank=True, step=1)], "faults[0].rank", "must be a whole number, not True"),
    ([crash(step=1.5)], "faults[0].step", "must be a whole number, not 1.5"),
    ([crash(at=True)], "faults[0].at", "bad time True"),
    ([slow(factor=True)], "faults[0].factor", "must be a number, not True"),
    ([slow(factor="4x")], "faults[0].factor", "must be a number, not '4x'"),
    ([rnd(distribution="weibull", shape=False)], "faults[0].shape", "must be a number, not False"),
    # factors
    (
        [slow(factor=0.5)],
        "faults[0].factor",
        "is how many times longer compute takes, >= 1, not 0.5",
    ),
    (
        [slow_link(factor=0)],
        "faults[0].factor",
        "is the bandwidth kept, in (0, 1], not 0.0; a link_down for 0",
    ),
    ([slow_link(factor=1.5)], "faults[0].factor", "is the bandwidth kept, in (0, 1], not 1.5"),
    # distributions
    (
        [rnd(distribution="weibul")],
        "faults[0].distribution",
        "unknown distribution 'weibul' (use exponential or weibull); did you mean 'weibull'?",
    ),
    ([rnd(distribution="weibull")], "faults[0].shape", "a weibull distribution needs a shape > 0"),
    (
        [rnd(distribution="weibull", shape=0)],
        "faults[0].shape",
        "a weibull distribution needs a shape > 0",
    ),
    ([rnd(shape=2)], "faults[0].shape", "only a weibull distribution has a shape"),
    # nobody left
    (
        [crash(rank=r, step=r + 1) for r in range(4)],
        "faults[3]",
        "every rank (0..3) crashes with no restart, so the run cannot finish; add restart=",
    ),
    ([{"kind": "crash", "mtbf": 60}], "faults[0]", "every rank (0..3) crashes with no restart"),
    (
        [rnd(ranks=[0, 1], restart=None), crash(rank=2, at=1), crash(rank=3, step=1)],
        "faults[2]",
        "every rank (0..3) crashes with no restart",
    ),
    # the schedule's own keys and forms
    (
        {"evnts": []},
        "faults.evnts",
        "unknown key (keys: events, detect, reroute, recovery, checkpoint_every, checkpoint); did you mean 'events'?",
    ),
    ({"events": [], "detect": "-1s"}, "faults.detect", "bad time '-1s': must be non-negative"),
    ({"events": [], "reroute": True}, "faults.reroute", "bad time True"),
    ({"events": {"kind": "crash"}}, "faults.events", "must be a list of events"),
    (crash(step=1), "faults", "is one event; give a list of events"),
    (3, "faults", "give a list of events or a dict"),
]


@pytest.mark.parametrize(("value", "field", "start"), ERRORS)
def test_every_error_is_one_line_naming_its_field(value: Any, field: str, start: str) -> None:
    with pytest.raises(FaultError) as info:
        parse(value)
    message = str(info.value)
    assert info.value.field == field
    assert message.startswith(f"{field}: {start}"), message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_link_faults_need_a_backend_with_links() -> None:
    events = [crash(step=1), slow(), down()]
    with pytest.raises(FaultError) as info:
        parse(events, links=None)
    assert str(info.value) == (
        "faults[2]: link_down needs a backend with links (sim, or real --testbed)"
    )
    assert info.value.field == "faults[2]"
    assert parse(events[:2], links=None).slows == (Slow(rank=2, factor=4.0, at=1.0),)


def test_a_crash_of_every_rank_is_fine_with_a_restart_or_a_survivor() -> None:
    assert parse([crash(rank=r, step=1, restart="1s") for r in range(4)])
    assert parse([crash(rank=r, step=1) for r in range(3)])
    assert parse([{"kind": "crash", "mtbf": 60, "restart": 5}])
    assert parse([{"kind": "crash", "mtbf": 60, "ranks": [0, 1, 2]}])
    # A rank that crashes twice, once for good, counts once.
    assert parse([crash(rank=0, step=1), crash(rank=0, step=2), crash(rank=1, step=3)])


def test_steps_are_not_checked_when_the_run_has_no_step_count() -> None:
    assert parse([crash(step=10**6)], steps=None).crashes[0].step == 10**6
    assert parse([crash(step=100)]).crashes == (Crash(rank=1, step=100),)


def test_links_are_undirected_and_compared_as_strings() -> None:
    assert parse([down(link=["h3", "s0"])]).link_faults[0].link == ("h3", "s0")
    # A topology whose nodes are ints (a ring of ranks): names as written in TOML or JSON.
    ring = [(0, 1), (1, 2), (2, 3), (3, 0)]
    fault = parse([down(link=[1, 0]), slow_link(link=["2", "3"])], links=ring).link_faults
    assert fault[0].link == ("1", "0") and fault[0].matches(0, 1) and fault[0].matches("1", 0)
    assert not fault[0].matches(1, 2)


EVERY_KIND = [
    {"kind": "crash", "rank": 3, "step": 40, "restart_step": 60},
    {"kind": "crash", "rank": 0, "at": "2.5s", "restart": "5s"},
    {"kind": "crash", "rank": 2, "at": 0.5},
    {"kind": "crash", "mtbf": "300s", "ranks": [1, 2], "restart": "10s"},
    {"kind": "crash", "mtbf": 50, "ranks": [4], "distribution": "weibull", "shape": 0.7},
    {"kind": "link_down", "link": ["s0", "h3"], "at": "1s", "until": "3s"},
    {"kind": "link_slow", "link": ["h1", "s0"], "factor": 0.1, "at": 2},
    {"kind": "slow", "rank": 2, "factor": 4, "at": "1s", "until": "2500ms"},
]


def test_each_kind_reads_to_its_event() -> None:
    schedule = parse({"events": EVERY_KIND, "detect": "2s", "reroute": "100ms"}, world_size=8)
    assert schedule.crashes == (
        Crash(rank=3, step=40, restart_step=60),
        Crash(rank=0, at=2.5, restart=5.0),
        Crash(rank=2, at=0.5),
    )
    assert schedule.random_crashes == (
        RandomCrashes(mtbf=300.0, ranks=(1, 2), restart=10.0),
        RandomCrashes(mtbf=50.0, ranks=(4,), distribution="weibull", shape=0.7),
    )
    assert schedule.link_faults == (
        LinkFault("link_down", ("s0", "h3"), at=1.0, until=3.0),
        LinkFault("link_slow", ("h1", "s0"), at=2.0, factor=0.1),
    )
    assert schedule.slows == (Slow(rank=2, factor=4.0, at=1.0, until=2.5),)
    assert (schedule.detect, schedule.reroute) == (2.0, 0.1)
    assert [schedule.has_restart(r) for r in range(5)] == [True, True, True, True, False]


def test_the_record_is_plain_json_and_parses_back_to_an_equal_schedule() -> None:
    schedule = parse({"events": EVERY_KIND, "detect": "2s"}, world_size=8)
    record = schedule.record()
    assert json.loads(json.dumps(record)) == record
    assert record["events"][1] == {"kind": "crash", "rank": 0, "at": 2.5, "restart": 5.0}
    assert record["detect"] == 2.0 and record["reroute"] == 0.5
    assert all(type(e.get("at", 0.0)) is float for e in record["events"])
    again = parse(json.loads(json.dumps(record)), world_size=8)
    assert again == schedule and again.record() == record
    # A schedule is parsed again for another run: its checks are that run's.
    assert parse(schedule, world_size=8) == schedule
    with pytest.raises(FaultError, match=r"^faults\[0\]\.rank: rank 3 is not in the run's"):
        parse(schedule, world_size=3)


def test_no_faults_is_an_empty_schedule_with_the_default_delays() -> None:
    for value in (None, [], {"events": []}, {}):
        schedule = parse(value)
        assert not schedule and schedule == FaultSchedule()
        assert (schedule.detect, schedule.reroute) == (3.0, 0.5)
    assert parse([crash(step=1)])


def test_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(
        'detect = "1s"\n'
        "[[events]]\n"
        'kind = "crash"\nrank = 3\nstep = 40\nrestart_step = 60\n'
        "[[events]]\n"
        'kind = "link_down"\nlink = ["s0", "h3"]\nat = "1s"\nuntil = "3s"\n'
    )
    expected = FaultSchedule(
        (Crash(rank=3, step=40, restart_step=60), LinkFault("link_down", ("s0", "h3"), 1.0, 3.0)),
        detect=1.0,
    )
    assert parse(path) == expected
    assert parse(str(path)) == expected


def test_a_json_file_of_either_form(tmp_path: Path) -> None:
    events = [{"kind": "slow", "rank": 1, "factor": 2, "at": 0}]
    listed, keyed = tmp_path / "list.json", tmp_path / "dict.json"
    listed.write_text(json.dumps(events))
    keyed.write_text(json.dumps({"events": events, "reroute": 2}))
    assert parse(listed).slows == (Slow(rank=1, factor=2.0, at=0.0),)
    assert parse(keyed) == FaultSchedule(parse(listed).events, reroute=2.0)


@pytest.mark.parametrize(
    ("name", "text", "start"),
    [
        ("nope.toml", None, "no such file"),
        ("faults.yaml", "", "is not a .toml or .json file"),
        ("bad.toml", "[[events]\n", "is not valid TOML:"),
        ("bad.json", "[{", "is not valid JSON:"),
        ("string.json", '"crash"', "holds 'crash'; give a list of events or a dict"),
        ("bad_event.toml", '[[events]]\nkind = "crash"\nrank = 9\nat = 1\n', None),
    ],
)
def test_file_errors_are_one_line(
    tmp_path: Path, name: str, text: str | None, start: str | None
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(FaultError) as info:
        parse(path)
    message = str(info.value)
    assert "\n" not in message
    if start is None:  # an event's error names the event, as from a list
        assert message.startswith("faults[0].rank: rank 9 is not in the run's ranks 0..3")
    else:
        assert message.startswith(f"faults: {str(path)!r} {start}") or message.startswith(
            f"faults: {start}"
        ), message


def test_events_check_themselves_when_built_directly() -> None:
    with pytest.raises(FaultError, match=r"^until: must be after at \(2 s\)") as info:
        Slow(rank=0, factor=2.0, at=2.0, until=1.0)
    assert info.value.field == "until"
    with pytest.raises(FaultError, match=r"^factor: a link_down has no factor"):
        LinkFault("link_down", ("a", "b"), at=0.0, factor=0.5)
    for bad in (-1.0, float("nan"), float("inf"), "3s", True):
        with pytest.raises(FaultError, match=r"^faults.detect: must be a non-negative"):
            FaultSchedule(detect=bad)
    listed = FaultSchedule([Slow(rank=0, factor=2.0, at=0.0)])
    assert listed == FaultSchedule((Slow(rank=0, factor=2.0, at=0.0),)) and hash(listed)
