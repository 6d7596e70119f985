"""Bring a testbed up, find it, take it down: ``ip`` and ``tc`` over a :class:`Plan`.

A testbed's plan is written to its state file (``/run/commsim/testbeds/NAME.json``, or under
``$COMMSIM_TESTBED_STATE``) *before* anything is created, so that whatever a killed ``up``
left behind is found and removed by ``down``. Everything lives inside the testbed's own
namespaces: removing them (after stopping the processes inside) removes the veths, bridges
and qdiscs too (the management network's gateway veth in the machine's own namespace goes
with its peer in ``NAME-m``); each host namespace also gets an ``/etc/netns/NS/hosts`` naming the testbed's
addresses (removed with it). A failure, Ctrl-C or SIGTERM during ``up`` removes what it had
made.

Owners
------
The state file also names the testbed's *owner*: the process (pid and start time, so a reused
pid is not mistaken for it) whose life the testbed lasts. While ``up`` creates, that is the
``up`` itself; afterwards it is the process ``up`` was given (``commsim real --testbed``: the
launcher, which a watchdog outlives to remove the testbed, see :mod:`real.testbed.watchdog`),
or none: a testbed made by ``commsim testbed up`` stays until ``down``. A testbed whose owner
is dead (a killed ``up``, a launcher and its watchdog killed) is reported so by :func:`status`
and removed by the next :func:`up` (whatever its name) or :func:`down`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from real.testbed.plan import SUBNET, Link, Plan, TestbedError, check_name

__all__ = [
    "Status",
    "down",
    "has_netem",
    "netns_etc",
    "owner",
    "owner_alive",
    "preflight",
    "reap",
    "run_command",
    "shaping",
    "state_dir",
    "status",
    "up",
]

#: A command runner: the argv, returns stdout; raises TestbedError on failure.
Runner = Callable[[Sequence[str]], str]
#: tbf's queue: as long as the measured set-up (notes: real links) used.
TBF_LATENCY = "400ms"


def state_dir() -> Path:
    """Where testbeds' state files live (``$COMMSIM_TESTBED_STATE`` or /run/commsim/testbeds)."""
    return Path(os.environ.get("COMMSIM_TESTBED_STATE", "/run/commsim/testbeds"))


def netns_etc() -> Path:
    """Where ``ip netns exec`` finds a namespace's own ``/etc`` files (``/etc/netns``, or
    ``$COMMSIM_NETNS_ETC``)."""
    return Path(os.environ.get("COMMSIM_NETNS_ETC", "/etc/netns"))


def _write_hosts(plan: Plan) -> None:
    # `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts: a rank's reverse lookups
    # of its peers (c10d asks for each client) answer from it, instead of failing (or
    # waiting) on a DNS server the namespace cannot reach.
    # c10d's store listens on IPv6 and sees its IPv4 clients as ::ffff:a.b.c.d: name both.
    table = "127.0.0.1 localhost\n::1 localhost\n"
    table += "".join(
        f"{host.address} {host.namespace}\n::ffff:{host.address} {host.namespace}\n"
        for host in plan.hosts
    )
    table += f"{plan.gateway} {plan.management_namespace}\n"
    for host in plan.hosts:
        directory = netns_etc() / host.namespace
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text(table)


def _remove_hosts(namespace: str) -> None:
    directory = netns_etc() / namespace
    (directory / "hosts").unlink(missing_ok=True)
    for empty in (directory, directory.parent):  # only if nothing but ours was there
        try:
            empty.rmdir()
        except OSError:
            break


def run_command(argv: Sequence[str]) -> str:
    """Run ``argv``; its stdout, or a one-line :class:`TestbedError` with its complaint."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise TestbedError(f"`{' '.join(argv)}` failed: {said[-1] if said else done.returncode}")
    return done.stdout


def preflight() -> None:
    """Root, ``ip`` and ``tc``, and namespaces in this kernel; else a one-line fix."""
    if os.geteuid() != 0:
        raise TestbedError(
            "a testbed needs root (network namespaces, bridges and qdiscs): run it with sudo"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise TestbedError(
                f"`{tool}` is not installed: install iproute2 (e.g. apt install iproute2)"
            )
    if not Path("/proc/self/ns/net").exists():
        raise TestbedError("this kernel has no network namespaces (CONFIG_NET_NS)")


def has_netem(run: Runner = run_command, namespace: str | None = None) -> bool:
    """Whether the kernel has the ``netem`` qdisc (latency emulation), tried on a loopback."""
    prefix = ["-n", namespace] if namespace else []
    device = "lo"
    try:
        run(["tc", *prefix, "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms"])
    except TestbedError:
        return False
    run(["tc", *prefix, "qdisc", "del", "dev", device, "root"])
    return True


def _burst(rate: float) -> int:
    # A wire has no bucket: a burst lets a message of up to its size through at once, which
    # makes mid-sized messages look faster than the link (a 500 KB bucket took 4 ms off each
    # 4 MB message at 1 Gbit/s). Half a millisecond of line rate still refills in time:
    # 933 Mbit/s of TCP payload at 1 Gbit/s (958 with 4 ms), which calibration measures.
    return int(max(64 * 1024, rate * 0.0005))


def _ip(namespace: str, *args: str) -> list[str]:
    """``ip`` inside ``namespace``."""
    return ["ip", "-n", namespace, *args]


def shaping(
    namespace: str,
    device: str,
    link: Link,
    netem: bool,
    factor: float = 1.0,
    verb: str = "add",
) -> list[list[str]]:
    """The ``tc`` commands that shape one end of ``link`` to ``factor`` times its rate:
    ``tbf`` (under a ``netem`` delay where the kernel has it). ``verb="replace"`` swaps
    them in for whatever root qdisc the end has (a link fault, :mod:`real.testbed.links`).

    Examples
    --------
    >>> from real.testbed.plan import End
    >>> link = Link(0, End("tb-h0", "l0a", False), End("tb-s0", "l0b", True), 1.25e6, 0.0)
    >>> shaping("tb-h0", "l0a", link, netem=False, factor=0.5, verb="replace")
    [['tc', '-n', 'tb-h0', 'qdisc', 'replace', 'dev', 'l0a', 'root', 'tbf', 'rate', '5000000bit', 'burst', '65536', 'latency', '400ms']]
    """
    rate = link.rate * factor
    tbf = ["tbf", "rate", f"{rate * 8:.0f}bit", "burst", str(_burst(rate)), "latency", TBF_LATENCY]
    qdisc = ["tc", "-n", namespace, "qdisc", verb, "dev", device]
    if netem and link.delay > 0:
        delay = f"{link.delay * 1e6:.0f}us"
        return [
            [*qdisc, "root", "handle", "1:", "netem", "delay", delay],
            [*qdisc, "parent", "1:1", "handle", "10:", *tbf],
        ]
    return [[*qdisc, "root", *tbf]]


def _shape(run: Runner, namespace: str, device: str, link: Link, netem: bool) -> None:
    for command in shaping(namespace, device, link, netem):
        run(command)


def _existing_namespaces(run: Runner) -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()}


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] in ("Z", "X"):  # a zombie has ended; only its exit status is left
        return None
    return int(fields[19])  # field 22, starttime


def owner(pid: int) -> dict[str, int]:
    """The state file's record of owner ``pid``: its pid and start time.

    Examples
    --------
    >>> owner(os.getpid())["pid"] == os.getpid()
    True
    """
    return {"pid": pid, "started": _start_time(pid) or 0}


def owner_alive(record: object) -> bool | None:
    """Whether a state file's owner (see :func:`owner`) still runs; None when it has none.

    Examples
    --------
    >>> owner_alive(owner(os.getpid())), owner_alive(None)
    (True, None)
    >>> owner_alive({"pid": os.getpid(), "started": 1})  # the pid, reused by another process
    False
    """
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    return _start_time(record["pid"]) == record.get("started")


def _write_state(
    plan: Plan, state: str, netem: bool | None, owned_by: dict[str, int] | None = None
) -> None:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{plan.name}.json"
    record = {
        "state": state,
        "netem": netem,
        "subnet": SUBNET,
        "owner": owned_by,
        "plan": plan.to_dict(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def up(plan: Plan, run: Runner = run_command, owned_by: int | None = None) -> bool:
    """Create ``plan``'s testbed; return whether latency is emulated (``netem``).

    ``owned_by``: the pid whose life the testbed lasts (None: until ``down``); see the
    module's notes. Testbeds whose owner is dead are removed first (:func:`reap`).

    Raises
    ------
    TestbedError
        When a namespace of the plan exists already (``down`` it first, or pick another
        name), or a command fails; what was created is removed first.
    """
    reap(run)
    taken = sorted(set(plan.namespaces) & _existing_namespaces(run))
    if taken or (state_dir() / f"{plan.name}.json").exists():
        raise TestbedError(
            f"testbed {plan.name!r} exists ({', '.join(taken) or 'its state file'}): "
            f"`commsim testbed down {plan.name}` first, or give another --name"
        )
    plan.management = _free_management(plan.management, run)
    _write_state(plan, "creating", None, owner(os.getpid()))
    made = [*plan.namespaces, plan.management_namespace]
    try:
        for namespace in plan.namespaces:
            run(["ip", "netns", "add", namespace])
            run(_ip(namespace, "link", "set", "lo", "up"))
        netem = has_netem(run, plan.namespaces[0])
        for namespace in plan.bridges:
            run(_ip(namespace, "link", "add", "br0", "type", "bridge"))
            run(_ip(namespace, "link", "set", "br0", "up"))
        for link in plan.links:
            a, b = link.a, link.b
            veth = ["name", a.device, "netns", a.namespace, "type", "veth"]
            run(["ip", "link", "add", *veth, "peer", "name", b.device, "netns", b.namespace])
            for end in (a, b):
                if end.bridged:
                    run(_ip(end.namespace, "link", "set", end.device, "master", "br0"))
                run(_ip(end.namespace, "link", "set", end.device, "up"))
                _shape(run, end.namespace, end.device, link, netem)
        for host in plan.hosts:
            run(_ip(host.namespace, "addr", "add", f"{host.address}/16", "dev", host.device))
        _management(plan, run)
        _write_hosts(plan)
    except BaseException:  # a failed command, Ctrl-C: leave nothing behind
        _remove(plan.name, made, _existing_namespaces(run), run)
        raise
    _write_state(plan, "up", netem, None if owned_by is None else owner(owned_by))
    if not netem and any(link.delay > 0 for link in plan.links):
        warnings.warn(
            "this kernel has no netem qdisc: link latency is not emulated (bandwidth is); "
            "load sch_netem (modprobe sch_netem) for delays",
            stacklevel=2,
        )
    return netem


def _free_management(first: int, run: Runner) -> int:
    """The first management subnet (``10.78.M.0/24``, from ``first`` on) that no interface of
    this machine's namespace uses: two testbeds up at once must not share one."""
    used = set(re.findall(r"inet 10\.78\.(\d+)\.", run(["ip", "-4", "-o", "addr", "show"])))
    for step in range(250):
        index = (first - 1 + step) % 250 + 1
        if str(index) not in used:
            return index
    raise TestbedError("every management subnet 10.78.1-250.0/24 is in use: `commsim testbed down`")


def _management(plan: Plan, run: Runner) -> None:
    """The management network (see :mod:`real.testbed.plan`): a bridge in ``NAME-m``, an
    unshaped veth from each host and one to the machine's own namespace (the gateway)."""
    hub = plan.management_namespace
    run(["ip", "netns", "add", hub])
    run(_ip(hub, "link", "set", "lo", "up"))
    run(_ip(hub, "link", "add", "br0", "type", "bridge"))
    run(_ip(hub, "link", "set", "br0", "up"))
    gateway = plan.gateway_device
    run(["ip", "link", "add", gateway, "type", "veth", "peer", "name", "gw", "netns", hub])
    run(_ip(hub, "link", "set", "gw", "master", "br0"))
    run(_ip(hub, "link", "set", "gw", "up"))
    run(["ip", "addr", "add", f"{plan.gateway}/24", "dev", gateway])
    run(["ip", "link", "set", gateway, "up"])
    for host in plan.hosts:
        address = plan.management_address(host.rank)
        port = f"h{host.rank}"
        veth = ["name", "mgmt", "netns", host.namespace, "type", "veth"]
        run(["ip", "link", "add", *veth, "peer", "name", port, "netns", hub])
        run(_ip(hub, "link", "set", port, "master", "br0"))
        run(_ip(hub, "link", "set", port, "up"))
        run(_ip(host.namespace, "addr", "add", f"{address}/24", "dev", "mgmt"))
        run(_ip(host.namespace, "link", "set", "mgmt", "up"))


def _records() -> dict[str, dict]:
    directory = state_dir()
    records = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            records[path.stem] = {"state": "unreadable", "plan": {"name": path.stem}}
    return records


def _namespaces_of(name: str, record: dict | None, existing: set[str]) -> list[str]:
    """A testbed's namespaces: its plan's, and any of its naming left from an older plan."""
    planned = set()
    if record and isinstance(record.get("plan"), dict):
        plan = record["plan"]
        planned |= {h["namespace"] for h in plan.get("hosts", [])}
        planned |= set(plan.get("switches", []))
    pattern = re.compile(rf"^{re.escape(name)}-(?:[hs]\d+|m)$")
    return sorted(planned | {ns for ns in existing if pattern.match(ns)})


def _remove(name: str, namespaces: list[str], existing: set[str], run: Runner) -> list[str]:
    """Stop the processes in those of ``namespaces`` that exist, delete them, forget ``name``."""
    removed = []
    if f"{name}-m" in namespaces and f"{name}-m" in existing:
        # The management network's gateway end, in the machine's own namespace: it would go
        # with its peer, but only once the kernel has torn the namespace down (later).
        try:
            run(["ip", "link", "del", f"{name}-m"])
        except TestbedError:
            pass  # gone already
    for namespace in namespaces:
        _remove_hosts(namespace)
        if namespace not in existing:
            continue
        for pid in run(["ip", "netns", "pids", namespace]).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", namespace])
        removed.append(namespace)
    (state_dir() / f"{name}.json").unlink(missing_ok=True)
    return removed


def down(name: str | None = None, run: Runner = run_command) -> dict[str, list[str]]:
    """Remove testbed ``name`` (every recorded one when None): its processes, namespaces and
    state file. Returns the namespaces removed per testbed; a testbed half made by a killed
    ``up`` is found by its state file and removed the same way."""
    records = _records()
    existing = _existing_namespaces(run)
    if name is not None:
        check_name(name)
        if name not in records and not _namespaces_of(name, None, existing):
            raise TestbedError(
                f"no testbed {name!r}"
                + (f"; there are: {', '.join(records)}" if records else "; none is up")
            )
        names = [name]
    else:
        names = list(records)
    return {
        n: _remove(n, _namespaces_of(n, records.get(n), existing), existing, run) for n in names
    }


def reap(run: Runner = run_command) -> dict[str, list[str]]:
    """Remove every testbed whose owner has died (see the module's notes); the namespaces
    removed per testbed."""
    records = _records()
    dead = [n for n, record in records.items() if owner_alive(record.get("owner")) is False]
    if not dead:
        return {}
    existing = _existing_namespaces(run)
    return {n: _remove(n, _namespaces_of(n, records[n], existing), existing, run) for n in dead}


@dataclass
class Status:
    """One testbed as found: its plan's counts, whether all its namespaces exist, and its
    owner (``owner_alive`` None: it has none, it stays until ``down``)."""

    name: str
    state: str
    hosts: int
    switches: int
    links: int
    netem: bool | None
    missing: list[str]
    processes: int
    owner: int | None = None
    owner_alive: bool | None = None

    @property
    def condition(self) -> str:
        """The state in words, saying when its owner is gone.

        Examples
        --------
        >>> Status("tb", "creating", 2, 1, 2, None, [], 0, 42, False).condition
        'abandoned: its `up` (pid 42) was killed while creating it'
        >>> Status("tb", "up", 2, 1, 2, True, [], 2, 42, False).condition
        'orphaned: its owner (pid 42) is gone'
        """
        if self.owner_alive is False:
            if self.state == "creating":
                return f"abandoned: its `up` (pid {self.owner}) was killed while creating it"
            return f"orphaned: its owner (pid {self.owner}) is gone"
        state = self.state
        if self.owner_alive:
            state += f", owned by pid {self.owner}"
        return state


def status(run: Runner = run_command) -> list[Status]:
    """Every recorded testbed, with what of it is missing and how many processes run in it."""
    existing = _existing_namespaces(run)
    found = []
    for name, record in _records().items():
        plan = record.get("plan", {})
        namespaces = _namespaces_of(name, record, existing)
        processes = sum(
            len(run(["ip", "netns", "pids", ns]).split()) for ns in namespaces if ns in existing
        )
        owned = record.get("owner")
        found.append(
            Status(
                name=name,
                state=str(record.get("state")),
                hosts=len(plan.get("hosts", [])),
                switches=len(plan.get("switches", [])),
                links=len(plan.get("links", [])),
                netem=record.get("netem"),
                missing=[ns for ns in namespaces if ns not in existing],
                processes=processes,
                owner=owned.get("pid") if isinstance(owned, dict) else None,
                owner_alive=owner_alive(owned),
            )
        )
    return found
