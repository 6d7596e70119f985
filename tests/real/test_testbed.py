"""The emulated testbed: its plan from a topology, the commands it runs (with a fake `ip`/`tc`),
and, as root, a real one: shaped to the link's rate, removed on `down`, after a failure and
after a killed `up`."""

import json
import os
import subprocess
import sys
import time
import warnings

import networkx as nx
import pytest
from typer.testing import CliRunner

import topologies
from real.testbed import TestbedError, down, make_plan, status, up
from real.testbed.cli import app
from real.testbed.lifecycle import _write_state, owner

needs_root = pytest.mark.usefixtures("testbed_rights")  # skips, saying why, where not


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    """Each test's testbeds are recorded in its own state directory (and name their hosts
    in their own /etc/netns)."""
    monkeypatch.setenv("COMMSIM_TESTBED_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("COMMSIM_NETNS_ETC", str(tmp_path / "netns"))
    return tmp_path / "state"


def line_of_hosts(n):
    g = nx.Graph()
    for r in range(n):
        g.add_node(r, kind="host", rank=r)
    for r in range(n - 1):
        g.add_edge(r, r + 1, bandwidth=1.25e7, latency=1e-3)
    return g


# --------------------------------------------------------------------------------------------
# The plan (no root)


def test_a_star_is_a_namespace_per_host_and_switch_and_a_link_per_edge():
    plan = make_plan(topologies.star(4, bandwidth="100Mbps", latency="1ms"), "tb")
    assert plan.namespaces == ["tb-h0", "tb-h1", "tb-h2", "tb-h3", "tb-s0"]
    assert plan.bridges == ["tb-s0"]
    assert [h.address for h in plan.hosts] == [f"10.77.0.{r + 1}" for r in range(4)]
    assert len(plan.links) == 4
    for link in plan.links:
        assert link.rate == pytest.approx(100e6 / 8) and link.delay == pytest.approx(1e-3)
        assert link.b.namespace == "tb-s0" and link.b.bridged and not link.a.bridged


def test_hierarchical_keeps_each_link_rate_and_a_relaying_host_bridges():
    graph = topologies.hierarchical(nodes=2, gpus_per_node=2, inter_bandwidth="100Mbps")
    plan = make_plan(graph, "tb")
    assert len(plan.links) == graph.number_of_edges()
    rates = sorted(link.rate for link in plan.links)
    assert rates == sorted(d["bandwidth"] for _, _, d in graph.edges(data=True))
    line = make_plan(line_of_hosts(3), "ln")  # host 1 carries 0 <-> 2 traffic
    assert line.bridges == ["ln-h1"] and line.hosts[1].device == "br0"


@pytest.mark.parametrize("spec", ["ring:n=4", "fat_tree:k=4", "fully_connected:n=3"])
def test_a_topology_with_loops_is_refused_in_one_line(spec):
    with pytest.raises(TestbedError, match=r"^topology: a testbed must be a tree .* loops?") as e:
        make_plan(topologies.from_spec(spec), "tb")
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------
# The commands (a fake ip/tc)


class FakeIp:
    """Plays `ip`/`tc`: keeps the namespaces, fails on a command containing ``fail_on``."""

    def __init__(self, fail_on=None, netem=False):
        self.namespaces, self.calls, self.fail_on, self.netem = set(), [], fail_on, netem

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        text = " ".join(argv)
        if self.fail_on and self.fail_on in text:
            raise TestbedError(f"`{text}` failed: RTNETLINK answers: Operation not permitted")
        if "netem" in argv and not self.netem:
            raise TestbedError(f"`{text}` failed: Specified qdisc kind is unknown.")
        if argv[:3] == ["ip", "netns", "list"]:
            return "".join(f"{ns}\n" for ns in sorted(self.namespaces))
        if argv[:3] == ["ip", "netns", "add"]:
            self.namespaces.add(argv[3])
        if argv[:3] == ["ip", "netns", "del"]:
            self.namespaces.discard(argv[3])
        return ""


def test_up_shapes_both_ends_of_every_link_at_its_rate():
    fake = FakeIp()
    plan = make_plan(topologies.star(3, bandwidth="100Mbps", latency="1ms"), "tb")
    with pytest.warns(UserWarning, match="latency is not emulated"):
        assert up(plan, run=fake) is False
    shaped = [c for c in fake.calls if c[:2] == ["tc", "-n"] and "tbf" in c]
    assert len(shaped) == 2 * len(plan.links)
    assert all(c[c.index("rate") + 1] == "100000000bit" for c in shaped)
    assert fake.namespaces == {*plan.namespaces, "tb-m"}
    assert [s.state for s in status(run=fake)] == ["up"]


def test_every_host_has_an_unshaped_management_link_to_the_launchers_namespace():
    fake = FakeIp()
    plan = make_plan(topologies.star(3, bandwidth="100Mbps"), "tb")
    with pytest.warns(UserWarning):
        up(plan, run=fake)
    texts = [" ".join(c) for c in fake.calls]
    # One veth per host into the management bridge's namespace, and one to the machine's own.
    for host in plan.hosts:
        assert (
            f"ip link add name mgmt netns {host.namespace} type veth peer name h{host.rank} netns tb-m"
            in texts
        )
        assert (
            f"ip -n {host.namespace} addr add 10.78.{plan.management}.{host.rank + 1}/24 dev mgmt"
            in texts
        )
    assert "ip link add tb-m type veth peer name gw netns tb-m" in texts
    assert f"ip addr add 10.78.{plan.management}.254/24 dev tb-m" in texts
    # Not part of the topology: no qdisc on any of its devices, no address in its subnet.
    shaped = {(c[2], c[c.index("dev") + 1]) for c in fake.calls if c[:2] == ["tc", "-n"]}
    assert not any(ns == "tb-m" or dev in ("mgmt", "gw") for ns, dev in shaped)
    assert all(h.address.startswith("10.77.") for h in plan.hosts)


def test_the_management_subnet_moves_past_one_this_machine_uses():
    class Used(FakeIp):
        def __call__(self, argv):
            if list(argv)[:3] == ["ip", "-4", "-o"]:
                return f"5: x    inet 10.78.{first}.254/24 scope global x\n"
            return super().__call__(argv)

    plan = make_plan(topologies.star(2), "tb")
    first = plan.management
    with pytest.warns(UserWarning):
        up(plan, run=Used())
    assert plan.management == first % 250 + 1 and plan.gateway.endswith(".254")


def test_each_host_resolves_every_testbed_address_and_down_removes_it(tmp_path):
    # c10d looks up each store client's name, seen as ::ffff:a.b.c.d; without an answer
    # from /etc/hosts every rank printed a warning (and may wait on an unreachable DNS).
    fake = FakeIp()
    plan = make_plan(topologies.star(2), "tb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        up(plan, run=fake)
    hosts = (tmp_path / "netns" / "tb-h0" / "hosts").read_text().splitlines()
    assert "10.77.0.2 tb-h1" in hosts and "::ffff:10.77.0.2 tb-h1" in hosts
    assert (tmp_path / "netns" / "tb-h1" / "hosts").is_file()
    down("tb", run=fake)
    assert not (tmp_path / "netns").exists()


def test_with_netem_each_end_delays_by_the_links_latency_under_its_tbf():
    fake = FakeIp(netem=True)
    up(make_plan(topologies.star(2, bandwidth="1Gbps", latency="250us"), "tb"), run=fake)
    delays = [
        c for c in fake.calls if "netem" in c and "dev" in c and c[c.index("dev") + 1] != "lo"
    ]
    assert len(delays) == 4 and all(c[-1] == "250us" for c in delays)
    children = [c for c in fake.calls if "parent" in c]
    assert len(children) == 4 and all("tbf" in c for c in children)


def test_a_failing_command_leaves_nothing_behind(state):
    fake = FakeIp(fail_on="l1a")
    plan = make_plan(topologies.star(3), "tb")
    with pytest.raises(TestbedError, match="Operation not permitted"):
        up(plan, run=fake)
    assert fake.namespaces == set() and not list(state.glob("*.json"))


def test_an_existing_testbed_is_not_touched_by_up():
    fake = FakeIp()
    fake.namespaces = {"tb-h0", "unrelated"}
    with pytest.raises(
        TestbedError, match=r"testbed 'tb' exists \(tb-h0\): `commsim testbed down tb`"
    ):
        up(make_plan(topologies.star(2), "tb"), run=fake)
    assert fake.namespaces == {"tb-h0", "unrelated"}
    assert not [c for c in fake.calls if c[:3] == ["ip", "netns", "add"]]


def test_down_removes_a_half_made_testbed_and_only_its_namespaces():
    fake = FakeIp()
    plan = make_plan(topologies.star(3), "tb")
    _write_state(plan, "creating", None)  # as a killed `up` leaves it
    fake.namespaces = {"tb-h0", "tb-h1", "tbx-h0", "other"}
    assert down(run=fake) == {"tb": ["tb-h0", "tb-h1"]}
    assert fake.namespaces == {"tbx-h0", "other"} and status(run=fake) == []


def test_the_command_line_says_what_is_missing_in_one_line(monkeypatch):
    runner = CliRunner()
    loop = runner.invoke(app, ["up", "ring:n=4"])
    assert loop.exit_code == 2 and loop.output.startswith(
        "error: topology: a testbed must be a tree"
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["up", "star:n=2"], ["down"], ["status"]):
        done = runner.invoke(app, args)
        assert done.exit_code == 2
        assert done.output == (
            "error: a testbed needs root (network namespaces, bridges and qdiscs): run it "
            "with sudo\n"
        )


# --------------------------------------------------------------------------------------------
# A real one (root)


def _throughput(bed, src, dst, nbytes=6_000_000):
    """Payload bit/s of one TCP stream from host ``src`` to host ``dst``, inside the testbed."""
    server = (
        "import socket,time\n"
        f"s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('10.77.0.{dst + 1}',5201));s.listen(1);print('ready',flush=True)\n"
        "c,_=s.accept();got=0;t=None\n"
        f"while got<{nbytes}:\n"
        "  b=c.recv(1<<20)\n"
        "  if not b: break\n"
        "  t=t or time.perf_counter();got+=len(b)\n"
        "print(got*8/(time.perf_counter()-t))\n"
    )
    client = (
        "import socket\n"
        f"c=socket.create_connection(('10.77.0.{dst + 1}',5201))\n"
        f"c.sendall(b'x'*{nbytes});c.close()\n"
    )
    listening = subprocess.Popen(
        ["ip", "netns", "exec", f"{bed}-h{dst}", sys.executable, "-c", server],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert listening.stdout.readline().strip() == "ready"
    subprocess.run(
        ["ip", "netns", "exec", f"{bed}-h{src}", sys.executable, "-c", client],
        check=True,
        timeout=60,
    )
    out, _ = listening.communicate(timeout=60)
    return float(out.split()[-1])


@needs_root
def test_a_real_testbed_carries_tcp_at_the_links_rate_and_goes_away():
    name = f"t{os.getpid() % 10**6}"
    plan = make_plan(topologies.star(3, bandwidth="100Mbps", latency="1ms"), name)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            netem = up(plan)
        assert netem or any("latency is not emulated" in str(w.message) for w in said)
        existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(ns in existing for ns in plan.namespaces)
        rate = _throughput(name, 1, 2)
        # tbf charges whole frames: 1448 payload bytes a 1514-byte frame, so ~95.6 Mbit/s of
        # payload fits in 100 Mbit/s; never more than the link's rate.
        assert 50e6 < rate < 100e6
    finally:
        removed = down(name)
    assert sorted(removed[name]) == sorted([*plan.namespaces, plan.management_namespace])
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in existing for ns in plan.namespaces)


# --------------------------------------------------------------------------------------------
# commsim real --testbed


def test_each_rank_gets_the_variables_a_cluster_launcher_would_give_it():
    from real.placement import Placement
    from real.testbed.launch import rank_environment

    plan = make_plan(topologies.star(3), "tb")
    placement = Placement.from_env(rank_environment(plan, 2, 4000))
    assert (placement.rank, placement.world_size, placement.node) == (2, 3, 2)
    # The launcher hosts the store, on the management network; gloo on the topology's link.
    assert placement.master_addr == plan.gateway and placement.agent_store
    assert placement.master_port == 4000 and placement.launcher == "testbed"
    assert rank_environment(plan, 2, 4000)["GLOO_SOCKET_IFNAME"] == plan.hosts[2].device


def test_testbed_and_nproc_must_agree():
    from real.cli import real_command

    runner = CliRunner()
    import typer

    cli = typer.Typer()
    cli.command()(real_command)
    done = runner.invoke(cli, ["--testbed", "star:n=3", "--nproc", "2", "--steps", "2"])
    assert done.exit_code == 2
    assert "--nproc 2 but the testbed has 3 hosts (one rank each); drop --nproc" in done.output


@needs_root
def test_a_run_on_the_testbed_gives_the_simulators_numbers_and_leaves_no_namespace(tmp_path):
    import json

    import numpy as np
    import pandas as pd
    import typer

    import sim
    from real.cli import real_command

    cli = typer.Typer()
    cli.command()(real_command)
    spec = "star:n=2,bandwidth=100Mbps"
    args = ["--testbed", spec, "--strategy", "allreduce", "--steps", "6", "--eval-every", "3"]
    done = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "run"), "--no-progress"])
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["backend"] == "real-gloo"
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    real_evals = metrics[metrics["kind"] == "eval"]
    simulated = sim.run("allreduce", "mlp_digits", spec, steps=6, eval_every=3).evals
    assert list(real_evals["step"]) == list(simulated["step"]) == [0, 3, 6]
    np.testing.assert_allclose(real_evals["loss"], simulated["loss"], rtol=1e-6)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"r{os.getpid() % 10**7}-" not in left  # the run's testbed (named by its pid) is gone


# --------------------------------------------------------------------------------------------
# Owners: a testbed lasts its owner's life; one whose owner died is said so and reaped


def _dead_owner():
    """The record of a process that has ended (a killed `up`, a killed run)."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    record = owner(gone.pid)
    gone.wait()
    return record


def test_a_killed_up_and_an_orphaned_run_say_their_owner_is_gone_and_the_next_up_reaps_them():
    fake = FakeIp()
    killed_up = make_plan(topologies.star(2), "ka")
    _write_state(killed_up, "creating", None, _dead_owner())
    orphan = make_plan(topologies.star(2), "kb")
    _write_state(orphan, "up", False, _dead_owner())
    kept = make_plan(topologies.star(2), "kc")
    _write_state(kept, "up", False, None)  # made by `commsim testbed up`: stays until down
    fake.namespaces = set(killed_up.namespaces[:2]) | set(orphan.namespaces) | set(kept.namespaces)
    found = {bed.name: bed for bed in status(run=fake)}
    assert found["ka"].owner_alive is False and found["ka"].condition.startswith("abandoned")
    assert found["kb"].owner_alive is False and found["kb"].condition.startswith("orphaned")
    assert found["kc"].owner_alive is None and found["kc"].condition == "up"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        up(make_plan(topologies.star(2), "kd"), run=fake, owned_by=os.getpid())
    assert sorted(bed.name for bed in status(run=fake)) == ["kc", "kd"]
    assert fake.namespaces == set(kept.namespaces) | {
        *make_plan(topologies.star(2), "kd").namespaces,
        "kd-m",
    }
    assert status(run=fake)[1].condition == f"up, owned by pid {os.getpid()}"


def test_the_status_command_names_the_testbed_without_a_live_owner(monkeypatch):
    import real.testbed

    fake = FakeIp()
    plan = make_plan(topologies.star(2), "ka")
    _write_state(plan, "up", False, _dead_owner())
    fake.namespaces = set(plan.namespaces)
    monkeypatch.setattr(real.testbed, "preflight", lambda: None)  # as root, with a fake `ip`
    monkeypatch.setattr(real.testbed, "status", lambda: status(run=fake))
    monkeypatch.setenv("COLUMNS", "200")  # one line a row
    done = CliRunner().invoke(app, ["status"])
    assert done.exit_code == 0, done.output
    assert "orphaned: its owner" in done.output
    assert "testbed 'ka' has no live owner: remove it with `commsim testbed down ka`" in done.output


def _alive(pid):
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _until(condition, seconds=120.0):
    """Wait for ``condition()`` (not a timing assertion: a bound on a hang)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@needs_root
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_testbed_run_leaves_no_namespace_state_file_or_rank(how, state, tmp_path):
    import signal

    command = [sys.executable, "-m", "real", "--testbed", "star:n=2"]  # commsim real
    command += ["--workload", "quadratic", "--steps", "1000000", "--eval-every", "1000000"]
    launcher = subprocess.Popen(
        [*command, "--out", str(tmp_path / "run"), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    name = f"r{launcher.pid % 10**7}"  # the run's testbed is named by its launcher's pid
    ranks = []

    def training():
        ranks[:] = [
            int(pid)
            for host in ("h0", "h1")
            for pid in subprocess.run(
                ["ip", "netns", "pids", f"{name}-{host}"], capture_output=True, text=True
            ).stdout.split()
        ]
        return len(ranks) == 2

    def namespaces():
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return [line.split()[0] for line in listed.splitlines() if line.startswith(f"{name}-")]

    try:
        assert _until(training), "the run's ranks never started"
        if how == "SIGTERM":  # once it trains, so that there are rows to keep
            assert _until(lambda: (tmp_path / "run" / "run.json").exists(), 60)
            time.sleep(3.0)
        launcher.send_signal(getattr(signal, how))
        launcher.wait(timeout=60)
        assert _until(lambda: not namespaces()), namespaces()
        assert _until(lambda: _gone(name))  # the management network's gateway veth too
        assert _until(lambda: not any(_alive(pid) for pid in ranks))
        assert _until(lambda: not list(state.glob("*.json")))
        assert not status()
        if how == "SIGTERM":  # rank 0 wrote what it had: the run says it was interrupted
            record = json.loads((tmp_path / "run" / "run.json").read_text())
            assert record["status"] == "interrupted", record
    finally:
        if launcher.poll() is None:
            launcher.kill()
        if namespaces():
            down(name)


def test_a_testbed_without_netem_says_what_it_emulates_in_a_whole_sentence(monkeypatch, capsys):
    """No root needed: the launcher's steps are stood in for, and ``up`` reports no netem."""
    from types import SimpleNamespace

    from real.testbed import launch

    finished = SimpleNamespace(kill=lambda: None, wait=lambda: 0)
    monkeypatch.setattr(launch, "preflight", lambda: None)
    monkeypatch.setattr(launch.watchdog, "start", lambda name: finished)
    monkeypatch.setattr(launch, "up", lambda plan, owned_by: False)  # no netem qdisc
    monkeypatch.setattr(launch, "down", lambda name: None)
    with launch.Testbed(line_of_hosts(2), "t"):
        pass
    said = capsys.readouterr().err.strip()
    assert said.startswith("testbed: latency is not emulated (no netem in this kernel)")
    assert "bandwidth is shaped" in said and said.endswith(
        "(modprobe sch_netem) to emulate latency"
    )


# --------------------------------------------------------------------------------------------
# The management network: the launcher's store, out of band; crashes and restarts on it


def _sent(namespace, device):
    """Bytes ``device`` in ``namespace`` has sent (its counters, as ``ip -s link`` shows)."""
    shown = subprocess.run(
        ["ip", "-n", namespace, "-j", "-s", "link", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(shown)[0]["stats64"]["tx"]["bytes"]


def _gone(name):
    """Whether nothing of testbed ``name`` is left: namespaces, or the gateway veth."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return f"{name}-" not in listed and f" {name}-m@" not in links and f" {name}-m:" not in links


@needs_root
def test_a_crash_and_restart_on_the_testbed_gives_sims_quorum_numbers(monkeypatch):
    """A quorum all-reduce on 3 hosts: rank 2 is killed at step 3 (SIGKILL, in its
    namespace) and comes back at step 6 as a new process in the same namespace; the
    launcher's store, on the management network, outlives it. Committed steps, lost steps
    and the final loss are sim's; the training's bytes crossed the shaped links."""
    import real
    import sim
    from real.testbed import launch
    from strategies import AllReduceSGD

    sent = {}
    remove = launch.down

    def counted(name):  # the counters, read just before the testbed goes
        plan = make_plan(topologies.star(3), name)
        for host in plan.hosts:
            sent[host.rank] = (_sent(host.namespace, host.device), _sent(host.namespace, "mgmt"))
        return remove(name)

    monkeypatch.setattr(launch, "down", counted)
    quorum = AllReduceSGD(fault_tolerance="quorum")
    faults = {"events": [{"kind": "crash", "rank": 2, "step": 3, "restart_step": 6}]}
    faults["detect"] = 1.0
    spec, kw = "star:n=3,bandwidth=100Mbps", dict(steps=10, eval_every=5)
    simulated = sim.run(quorum, "quadratic", spec, **kw, compute=0.01, faults=faults)
    ran = real.run(quorum, "quadratic", nproc=3, **kw, timeout=60, faults=faults, testbed=spec)
    keys = ("steps", "failures", "restarts", "lost_steps", "lost_samples", "heal_bytes")
    assert [ran.summary[k] for k in keys] == [simulated.summary[k] for k in keys]
    assert [ran.summary[k] for k in ("failures", "restarts", "lost_steps")] == [1, 1, 1]
    assert ran.summary["final_loss"] == simulated.summary["final_loss"]
    assert ran.evals[["step", "loss"]].equals(simulated.evals[["step", "loss"]])

    def fault_rows(result):  # (its step: see docs/faults.md, "Known gaps")
        rows = result.metrics[result.metrics.kind == "fault"]
        return sorted(zip(rows["rank"], rows.event))

    assert fault_rows(ran) == fault_rows(simulated) != []
    assert ran.config["placement"]["launcher"] == "testbed"
    # What the ledger counts as sent went over the topology's (shaped) veths: had gloo
    # taken the management link, they would have carried next to nothing.
    assert sum(topology for topology, _ in sent.values()) >= ran.summary["bytes"] > 0
    assert all(management > 0 for _, management in sent.values())  # the store's traffic
    assert _gone(f"r{os.getpid() % 10**7}")


@needs_root
def test_the_store_is_reached_over_the_management_network_while_every_link_is_down():
    """Every topology link blackholed: a host reaches the launcher's store (a client in its
    namespace sets a key the launcher reads), but not a peer over the topology. ``down``
    takes the management network away too (its veth in the machine's own namespace)."""
    from real import rendezvous
    from real.testbed.links import _commands

    plan = make_plan(topologies.star(2, bandwidth="100Mbps"), f"mg{os.getpid() % 10**5}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            up(plan)
        for link in plan.links:
            for command in _commands(link, False, 0.0):
                subprocess.run(command, check=True)
        store = rendezvous.host_store(0, 2, 30.0, plan.gateway)
        client = (
            "import sys, datetime, torch.distributed as d; "
            "s = d.TCPStore(sys.argv[1], int(sys.argv[2]), is_master=False, "
            "timeout=datetime.timedelta(seconds=20)); s.set('from', 'h1')"
        )
        namespace = plan.hosts[1].namespace
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-c",
                client,
                plan.gateway,
                str(store.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert store.get("from") == b"h1"
        peer = f"import socket; socket.create_connection(('{plan.hosts[0].address}', 9), timeout=2)"
        cut = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", peer],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "timed out" in cut.stderr  # the topology carries nothing: not even a refusal
    finally:
        down(plan.name)
    assert _gone(plan.name)


@needs_root
@pytest.mark.parametrize("until", [None, 1.8], ids=["for-good", "back-after-detect"])
def test_a_cut_link_on_the_testbed_leaves_its_rank_out_as_sim_does(until):
    """Host 2's link down at 0.3 s (a blackhole on both veth ends), for good or until 1.8 s:
    the round in flight fails with PeerFailure once the cut is known (``detect``, 1 s), not
    at ``--timeout``; the quorums then hold ranks 0 and 1 only (the primary part, sim's
    rule), and rank 2 waits cut off, out of the stop. For good: committed steps, failures,
    lost steps and the final loss are sim's under gloo's rule. Back at 1.8 s: rank 2 is
    admitted again and healed, as in sim (its step then follows the machine's speed)."""
    import real
    import sim
    from strategies import AllReduceSGD

    quorum = AllReduceSGD(fault_tolerance="quorum")
    cut = {"kind": "link_down", "link": ["s0", "2"], "at": 0.3}
    if until is not None:
        cut["until"] = until
    faults = {"events": [cut], "detect": 1.0}
    spec, kw = "star:n=3,bandwidth=100Mbps", dict(steps=12 if until is None else 40)
    ran = real.run(quorum, "quadratic", nproc=3, **kw, timeout=60, faults=faults, testbed=spec)
    rows = ran.metrics[ran.metrics.kind == "fault"]
    down = rows[rows.event == "link_down"].time.iloc[0]
    lost = rows[rows.event == "lost"]
    # The round in flight failed once the cut was known (detect), not at the 60 s
    # --timeout, even where the cut came while its quorum group connected (gloo's own
    # connect timeout is 5 s).
    assert 1.0 <= lost.time.min() - down < 3.0
    # sim's compute time puts the cut in the same round as on the testbed.
    compute = 0.3 / (int(lost.step.min()) + 0.5)
    simulated = sim.run(
        quorum,
        "quadratic",
        spec,
        **kw,
        compute=compute,
        faults=faults,
        network={"collectives": "gloo"},
    )
    keys = ("steps", "failures", "restarts", "lost_steps", "heal_bytes")
    assert [ran.summary[k] for k in keys] == [simulated.summary[k] for k in keys]
    events = [e for e in rows.event if e in ("cut_off", "link_up", "reconnect", "rejoin")]
    assert list(rows[rows.event == "cut_off"]["rank"]) == [2]
    if until is None:
        assert [ran.summary[k] for k in keys] == [12, 1, 0, 1, 0]
        assert ran.summary["final_loss"] == pytest.approx(simulated.summary["final_loss"], rel=1e-6)
        assert events == ["cut_off"]
    else:
        assert [ran.summary[k] for k in keys[:-1]] == [40, 1, 1, 1]
        assert events == ["cut_off", "link_up", "reconnect", "rejoin"]
        # Healed, back in the average: the loss is sim's but for the steps it missed.
        assert ran.summary["final_loss"] == pytest.approx(simulated.summary["final_loss"], rel=0.05)
    assert _gone(f"r{os.getpid() % 10**7}")
