"""Link faults on the testbed (real/testbed/links.py): the `tc` changes a schedule becomes,
what a testbed refuses in one line, the rows the replay writes, and, as root, a run whose
link is slowed and then cut for a second, which completes later with the same maths."""

import json
import subprocess

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import topologies
import workloads
from faults import FaultSchedule
from real.testbed import make_plan
from real.testbed.links import applied, changes

needs_root = pytest.mark.usefixtures("testbed_rights")  # skips, saying why, where not


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    """Each test's testbeds are recorded in its own state directory (and /etc/netns)."""
    monkeypatch.setenv("COMMSIM_TESTBED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("COMMSIM_NETNS_ETC", str(tmp_path / "netns"))
    return tmp_path / "state"


def _schedule(graph, events):
    return FaultSchedule.parse(
        events,
        world_size=len(topologies.hosts(graph)),
        links=[(str(u), str(v)) for u, v in graph.edges],
    )


def _cli():
    from real.cli import real_command

    cli = typer.Typer()
    cli.command()(real_command)
    return cli


# --------------------------------------------------------------------------------------------
# The changes (no root)


def test_a_slowed_and_a_downed_link_change_both_ends_and_come_back_at_the_links_rate():
    graph = topologies.star(3, bandwidth="100Mbps")
    plan = make_plan(graph, "tb")
    schedule = _schedule(
        graph,
        [
            {"kind": "link_down", "link": ["2", "s0"], "at": 3, "until": 4},
            {"kind": "link_slow", "link": ["s0", "2"], "factor": 0.5, "at": 1, "until": 2},
        ],
    )
    made = changes(plan, schedule, netem=False)
    assert [(c.at, c.event) for c in made] == [
        (1.0, "link_slow"),
        (2.0, "link_up"),
        (3.0, "link_down"),
        (4.0, "link_up"),
    ]
    ends = [("tb-h2", "l2a"), ("tb-s0", "l2b")]  # host 2's link, both of its veth ends
    for change in made:
        assert [(c[2], c[6]) for c in change.commands] == ends
        assert all(
            c[:2] == ("tc", "-n") and c[3:5] == ("qdisc", "replace") for c in change.commands
        )
    rate = {c.event: {c2[c2.index("rate") + 1] for c2 in c.commands if "rate" in c2} for c in made}
    assert rate["link_slow"] == {"50000000bit"}  # half of 100 Mbit/s, each way
    assert rate["link_up"] == {"100000000bit"}  # the topology's own rate again
    assert {c[-1] for c in made[2].commands} == {"blackhole"}  # down: nothing passes


def test_applied_reads_the_agents_changes_in_time_order_and_skips_what_is_not_one():
    class Store:
        def __init__(self, values):
            self.values = values

        def add(self, key, n):
            return len(self.values)

        def check(self, keys):
            return all(k in self.values for k in keys)

        def get(self, key):
            return self.values[key].encode()

    values = ["2.5 link_up", "1.5 link_down", "x link_slow", "0.5 crash"]
    store = Store({f"testbed/links/{i}": v for i, v in enumerate(values)})
    assert applied(store) == [(1.5, "link_down"), (2.5, "link_up")]


# --------------------------------------------------------------------------------------------
# What a testbed refuses, in one line, before anything is made (no root)


@pytest.mark.parametrize(
    ("events", "said"),
    [
        (
            [{"kind": "link_down", "link": ["s0", "1"], "at": 1}],
            "faults[0].until: a link that stays down is applied on a testbed only to a "
            'strategy with fault_tolerance="quorum"',
        ),
        (
            [{"kind": "link_slow", "link": ["s0", "h9"], "factor": 0.5, "at": 1}],
            "faults[0].link: no node 'h9'",
        ),
        (
            [{"kind": "crash", "rank": 5, "step": 2}],
            "faults[0].rank: rank 5 is not in the run's ranks 0..1",
        ),
    ],
)
def test_a_testbed_refuses_what_it_cannot_apply_in_one_line(tmp_path, events, said):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(events))
    args = ["--testbed", "star:n=2", "--steps", "2", "--faults", str(path), "--no-progress"]
    done = CliRunner().invoke(_cli(), args)
    assert done.exit_code == 2, done.output
    assert done.output.startswith(f"error: {said}"), done.output
    assert done.output.count("\n") == 1


def test_a_rank_under_torchrun_refuses_a_schedule_its_restarts_cannot_run_in_one_line(
    tmp_path, monkeypatch
):
    # A crash with no recovery="restart": torchrun's agent restarts every worker, so no
    # survivor could go on (real.elastic; each refusal is tests/real/test_elastic.py's).
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"kind": "crash", "rank": 1, "step": 2}]))
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    args = ["--steps", "2", "--faults", str(path), "--no-progress"]
    done = CliRunner().invoke(_cli(), args)
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: --faults under a launcher needs --out"), done.output
    done = CliRunner().invoke(_cli(), [*args, "--out", str(tmp_path / "run")])
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: --faults under torchrun"), done.output
    assert done.output.count("\n") == 1, done.output


# --------------------------------------------------------------------------------------------
# The replay writes the testbed's changes as sim writes them (no root)


def test_the_replay_writes_each_change_as_a_fault_row_at_its_time_among_the_events():
    from real.results import replay
    from strategies.events import Computed
    from strategies.roles import TrainingSetup

    setup = TrainingSetup.create("allreduce", workloads.get("quadratic"), 2, steps=4, eval_every=2)
    parts = [
        {
            "events": [Computed(t, r, 8) for t in (0.2, 1.2)],
            "final": None,
            "stop_reason": "interrupted",
            "times": (2.5, 0.0, 0.0, 0.0),  # the rank ended at 2.5 s, after its last event
        }
        for r in range(2)
    ]
    # The last change: after the ranks ended (the agent's, before the run's store went).
    marks = [(2.0, -1, "link_up"), (1.0, -1, "link_down"), (9.0, -1, "link_slow")]
    rows = replay(setup, parts, faults=True, marks=marks).ledger.rows
    faults = [(row["time"], row["event"], row["rank"]) for row in rows if row["kind"] == "fault"]
    assert faults == [(1.0, "link_down", -1), (2.0, "link_up", -1)]
    computed = [row["time"] for row in rows if row["kind"] != "fault"]
    assert computed == sorted(computed)


# --------------------------------------------------------------------------------------------
# A real testbed (root)


@needs_root
def test_a_slowed_then_cut_link_delays_the_run_which_ends_with_the_same_maths(tmp_path):
    """2 hosts at 2 Mbit/s (all-reduce of mlp_digits: ~80 ms a step, on the link): the link
    at a quarter of its rate for a second, then down for 2.5 s, longer than --silence 2: the
    heartbeats reach the launcher's store over the management network, so no rank is taken
    for silent. Nothing crosses while it is down, so no step ends then and the run resumes
    once TCP retransmits; the numbers are those of the fault-free run (sim's: the testbed
    run equals it, see test_testbed.py)."""
    import os

    import sim

    spec = "star:n=2,bandwidth=2Mbps"
    events = [
        {"kind": "link_slow", "link": ["s0", "1"], "factor": 0.25, "at": 0.5, "until": 1.0},
        {"kind": "link_down", "link": ["1", "s0"], "at": 1.5, "until": 4.0},
    ]
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(events))
    args = ["--testbed", spec, "--steps", "40", "--eval-every", "10", "--faults", str(path)]
    args += ["--silence", "2"]
    done = CliRunner().invoke(_cli(), [*args, "--out", str(tmp_path / "run"), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished"
    assert [e["kind"] for e in record["config"]["faults"]["events"]] == ["link_slow", "link_down"]
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    faults = metrics[metrics["kind"] == "fault"]
    assert list(faults["event"]) == ["link_slow", "link_up", "link_down", "link_up"]
    assert list(faults["rank"]) == [-1] * 4
    scheduled = [0.5, 1.0, 1.5, 4.0]
    assert all(t >= s for t, s in zip(faults["time"], scheduled, strict=True))  # never early
    down, up = faults["time"].iloc[2], faults["time"].iloc[3]
    steps = metrics[metrics["kind"] == "step"]
    assert steps["step"].max() == 40 and (steps["time"] > up).any()  # it went on after
    # Nothing crossed while the link was down: no step ended inside the outage.
    assert not ((steps["time"] > down + 0.1) & (steps["time"] < up)).any()
    assert steps["time"].diff().max() >= up - down - 0.1
    simulated = sim.run("allreduce", "mlp_digits", spec, steps=40, eval_every=10)
    evals = metrics[metrics["kind"] == "eval"]
    assert list(evals["step"]) == list(simulated.evals["step"])
    pd.testing.assert_series_equal(
        evals["loss"].reset_index(drop=True),
        simulated.evals["loss"].reset_index(drop=True),
        check_names=False,
        rtol=1e-6,
    )
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"r{os.getpid() % 10**7}-" not in left  # its testbed (named by its pid) is gone


@needs_root
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_an_interrupt_during_an_outage_still_writes_the_rows(tmp_path, state, how):
    """SIGTERM while the link is down: the ranks hand in over the management network, which
    the outage does not touch, and the launcher writes the run, with its link_down row.
    SIGKILL: the agent dies with the launcher, as the ranks do, and the watchdog removes the
    testbed. Either way nothing is left: no namespace, no agent, no state file."""
    import signal
    import sys
    import time

    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"kind": "link_down", "link": ["s0", "1"], "at": 0.5, "until": 9}]))
    command = [sys.executable, "-m", "real", "--testbed", "star:n=2,bandwidth=2Mbps"]
    command += ["--steps", "1000000", "--eval-every", "1000000", "--faults", str(path)]
    launcher = subprocess.Popen(
        [*command, "--out", str(tmp_path / "run"), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    name = f"r{launcher.pid % 10**7}"

    def cut():
        shown = subprocess.run(
            ["tc", "-n", f"{name}-h1", "qdisc", "show"], capture_output=True, text=True
        ).stdout
        return "blackhole" in shown

    def agents():
        listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return [line for line in listed.splitlines() if "real.testbed.links" in line]

    try:
        deadline = time.monotonic() + 120  # a bound on a hang, not a timing assertion
        while not cut() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cut(), "the link never went down"
        launcher.send_signal(getattr(signal, how))
        launcher.wait(timeout=60)
        if how == "SIGTERM":
            record = json.loads((tmp_path / "run" / "run.json").read_text())
            assert record["status"] == "interrupted", record
            metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
            assert list(metrics.loc[metrics["kind"] == "fault", "event"]) == ["link_down"]

        def gone():
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            return f"{name}-" not in listed.stdout and not agents()

        deadline = time.monotonic() + 60  # the watchdog's clean-up, after a SIGKILL
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone() and not list(state.glob("*.json"))
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
