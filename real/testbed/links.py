"""Link faults on a testbed: ``link_slow`` and a transient ``link_down`` done with ``tc`` at
their wall time, as ``sim`` applies them to its simulated network.

A testbed run (``commsim real --testbed SPEC --faults FILE``) takes the schedule's link
events (:class:`faults.LinkFault`, links named by the topology's nodes) and turns each into
*changes* of the link's two veth ends (:func:`changes`):

* ``link_slow`` (``factor``): both ends' ``tbf`` is replaced by one at ``factor`` times the
  link's rate (each end shapes what it sends, so both directions slow);
* ``link_down``: both ends' root qdisc becomes ``blackhole``, which takes every packet and
  sends none: the link carries nothing, as a cut cable, while every interface, address and
  route stays up (TCP sees only losses and retransmits; ``netem`` loss, or ``tc`` actions,
  are not in every kernel, ``blackhole`` is);
* at ``until``, ``link_up``: both ends are shaped to the link's own rate again.

The changes are made by an *agent*, ``python -m real.testbed.links``, that the testbed
launcher starts beside itself, in the machine's own namespace: it reaches the run's store
(the launcher's) over the management network, which no change touches, so it never waits on
the link it took down. It reads the ranks' common start from the store, makes each change
at ``start + at`` on the ranks' shared wall clock (as the local launcher times a crash at a
time), and writes what it did, with the time it was done, to the store; the launcher reads
it when it gathers the run (:func:`applied`) and its replay writes the ``fault`` rows where
``sim`` writes them (``link_slow``, ``link_down``, ``link_up``, rank -1). Everything the
agent changes lives inside the testbed's namespaces, which go with the run (at its end, on
Ctrl-C or SIGTERM, by the watchdog after a SIGKILL): no qdisc outlives it. Once the run
stops (its steps, a failure, Ctrl-C or SIGTERM) the agent gives the links still down or
slowed their own rate back, unrecorded, so that a rank blocked in an operation over one
finishes it and hands in within the interrupt's grace.

A transient outage gives the numbers ``sim`` gives: gloo over TCP waits it out, as ``sim``'s
stalled flows do until the link is back (``sim`` fails them only ``detect`` seconds after the
outage began). The ranks' heartbeats reach the store over the management network
throughout, so an outage longer than ``--silence`` reports no rank silent.

A link that stays down (or an outage longer than ``detect``): each change is written with
its link, so that the ranks' quorums leave out the ranks it cuts off, and their operations over
it fail with ``PeerFailure`` once the cut is known, as in ``sim`` (:mod:`real.partitions`).
That needs a quorum strategy's groups, whose timeout is ``detect``: for a strategy without
quorums (its operations on the world's group would wait until ``--timeout``)
:func:`check_testbed_faults` refuses a link that stays down, in one line.

Examples
--------
>>> import topologies
>>> from faults import FaultSchedule
>>> from real.testbed.plan import make_plan
>>> graph = topologies.star(2, bandwidth="10Mbps")
>>> schedule = FaultSchedule.parse(
...     [{"kind": "link_down", "link": ["s0", "1"], "at": 1, "until": 2}],
...     world_size=2, links=[(str(u), str(v)) for u, v in graph.edges])
>>> for change in changes(make_plan(graph, "tb"), schedule, netem=False):
...     print(change.at, change.event, [c[2] + " " + " ".join(c[6:9]) for c in change.commands])
1.0 link_down ['tb-h1 l1a root blackhole', 'tb-s0 l1b root blackhole']
2.0 link_up ['tb-h1 l1a root tbf', 'tb-s0 l1b root tbf']
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faults import FaultError, FaultSchedule, LinkFault
from real.testbed.lifecycle import run_command, shaping
from real.testbed.plan import Link, Plan, TestbedError

__all__ = ["LINKS_KEY", "Change", "applied", "changes", "check_testbed_faults", "main"]

#: Where the agent counts the changes it made; each is ``LINKS_KEY/i`` = ``"AT EVENT LINK"``
#: (the link as a JSON pair of the schedule's names).
LINKS_KEY = "testbed/links"
_START, _STOP = "start", "stop"  # as real.rank and real.runtime name them
_EVENTS = ("link_slow", "link_down", "link_up")
#: The longest the agent waits for rank 0's store (as long as a rank waits by default).
STORE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Change:
    """What happens to one link at ``at`` (seconds on the run's clock): ``event`` (a
    ``fault`` row's, as ``sim`` writes it) and the ``tc`` commands that do it."""

    at: float
    event: str
    commands: tuple[tuple[str, ...], ...]
    #: The link, as the schedule names it (:mod:`real.partitions` reads it on the store).
    link: tuple[str, str] = ("", "")


def check_testbed_faults(schedule: FaultSchedule, silence: float, strategy: Any = None) -> None:
    """Refuse, in one line naming the event, what a testbed run cannot apply (see the module
    notes); ``silence``: the run's ``--silence`` seconds; ``strategy``: the run's (None:
    not known yet, nothing refused for it).

    Examples
    --------
    >>> from strategies import AllReduceSGD
    >>> schedule = FaultSchedule.parse(
    ...     [{"kind": "link_down", "link": ["s0", "h1"], "at": 1}], world_size=2,
    ...     links=[("s0", "h1")])
    >>> check_testbed_faults(schedule, 10.0, AllReduceSGD(fault_tolerance="quorum"))
    >>> check_testbed_faults(schedule, 10.0, AllReduceSGD())
    Traceback (most recent call last):
    ...
    faults.errors.FaultError: faults[0].until: a link that stays down is applied on a testbed only to a strategy with fault_tolerance="quorum" (its quorums leave the cut-off ranks out, as sim's); allreduce's operations over the cut link would wait until --timeout instead of failing with PeerFailure after detect: give until=... (a transient outage), use fault_tolerance="quorum", or run it with sim
    """
    del silence  # the store is on the management network: an outage silences no heartbeat
    if strategy is None or getattr(strategy, "fault_tolerance", None) == "quorum":
        return
    for index, event in enumerate(schedule.events):
        if isinstance(event, LinkFault) and event.kind == "link_down" and event.until is None:
            raise FaultError(
                f"faults[{index}].until",
                "a link that stays down is applied on a testbed only to a strategy with "
                'fault_tolerance="quorum" (its quorums leave the cut-off ranks out, as '
                f"sim's); {strategy.name}'s operations over the cut link would wait until "
                "--timeout instead of failing with PeerFailure after detect: give until=... "
                '(a transient outage), use fault_tolerance="quorum", or run it with sim',
            )


def _link(plan: Plan, ends: tuple[str, str]) -> Link:
    """The plan's link between topology nodes ``ends`` (names as strings)."""
    a, b = (plan.nodes[end] for end in ends)
    (link,) = [x for x in plan.links if {x.a.namespace, x.b.namespace} == {a, b}]
    return link


def _commands(link: Link, netem: bool, factor: float) -> tuple[tuple[str, ...], ...]:
    """Both ends of ``link`` at ``factor`` of its rate (0: down, a ``blackhole``)."""
    out: list[list[str]] = []
    for end in (link.a, link.b):
        if factor == 0:
            qdisc = ["tc", "-n", end.namespace, "qdisc", "replace", "dev", end.device]
            out.append([*qdisc, "root", "blackhole"])
        else:
            out += shaping(end.namespace, end.device, link, netem, factor, verb="replace")
    return tuple(tuple(command) for command in out)


def changes(plan: Plan, schedule: FaultSchedule, netem: bool) -> list[Change]:
    """The schedule's link events as changes of ``plan``'s links, in time order (events at
    the same time in the schedule's order, as ``sim`` applies them)."""
    out = []
    for fault in schedule.link_faults:
        link = _link(plan, fault.link)
        factor = fault.factor if fault.kind == "link_slow" else 0.0
        ends = (str(fault.link[0]), str(fault.link[1]))
        out.append(Change(fault.at, fault.kind, _commands(link, netem, factor), ends))
        if fault.until is not None:
            out.append(Change(fault.until, "link_up", _commands(link, netem, 1.0), ends))
    return sorted(out, key=lambda change: change.at)


def to_json(changes: list[Change]) -> str:
    """What the agent reads on its stdin."""
    return json.dumps({"changes": [[c.at, c.event, c.commands, c.link] for c in changes]})


def applied(store: Any) -> list[tuple[float, str]]:
    """The changes the agent made, as ``(at, event)`` on the run's clock (what rank 0's
    replay writes as ``fault`` rows); a malformed entry is left out."""
    out = []
    for index in range(int(store.add(LINKS_KEY, 0))):
        key = f"{LINKS_KEY}/{index}"
        if not store.check([key]):
            continue
        at, event, *_ = [*bytes(store.get(key)).decode().split(" ", 2), ""]
        try:
            out.append((float(at), event))
        except ValueError:
            continue
    return sorted((at, event) for at, event in out if event in _EVENTS)


def _connect(addr: str, port: int, secret: str | None) -> Any:
    """A client of rank 0's store, as soon as it listens. c10d's own client retries after
    a random back-off of up to seconds (it met a store that had not started): here, a plain
    socket tries every few milliseconds first, so that the changes are not late."""
    import socket

    from real import rendezvous

    deadline = time.monotonic() + STORE_TIMEOUT
    while True:
        try:
            socket.create_connection((addr, port), timeout=1.0).close()
            return rendezvous.client(addr, port, STORE_TIMEOUT, secret)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _agent(spec: dict[str, Any], stopped: Callable[[], bool] = lambda: False) -> int:
    """Make the changes at their times (see the module notes); 0 when the run ended first
    (or ``stopped()``: the launcher's SIGTERM) or every change was made, 1 when a command
    failed (the run is failed with its line). A change once begun is made and recorded
    whole: its row is never missing for a change that was made."""
    from real import rendezvous
    from real.store import read_secret

    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    store = _connect(addr, port, read_secret())
    while not store.check([_START]):
        if stopped() or store.check([_STOP]):
            return 0
        time.sleep(0.01)
    start = float(bytes(store.get(_START)).decode())
    for index, (at, event, commands, link) in enumerate(spec["changes"]):
        while time.time() - start < at:
            if stopped():
                return 0  # the testbed goes with the run, changed or not
            if store.check([_STOP]):
                _mend(spec["changes"][index:])
                return 0
            time.sleep(min(0.01, max(start + at - time.time(), 0.0)))
        try:
            for command in commands:
                run_command(command)
        except TestbedError as exc:
            rendezvous.report_silence(store, f"testbed: {event} at t={at:g}s failed: {exc}")
            store.set(_STOP, "failed")
            return 1
        # The row's time: when both ends are changed (a few ms after `at`).
        # ... and the link, for the ranks' partitions (real.partitions).
        store.set(f"{LINKS_KEY}/{index}", f"{time.time() - start!r} {event} {json.dumps(link)}")
        store.add(LINKS_KEY, 1)
        if stopped():
            return 0
    return 0


def _mend(rest: list[Any]) -> None:
    """The run stopped (its steps, a failure, an interrupt) with ``rest`` of the changes to
    come: make their ``link_up`` at once, unrecorded, so that a rank blocked in an operation
    over a link that is down finishes it and hands in (an interrupt's grace is seconds); the
    other links get their own rate again, which they have. A command that fails is skipped:
    the testbed is about to go anyway."""
    for _, event, commands, _ in rest:
        if event != "link_up":
            continue
        for command in commands:
            try:
                run_command(command)
            except TestbedError:
                pass


def main() -> int:
    """``python -m real.testbed.links`` (the testbed launcher starts it; the changes as
    :func:`to_json` writes them on stdin). Ends quietly when the run's store goes away."""
    spec = json.loads(sys.stdin.read())
    asked: list[int] = []
    for interrupt in (signal.SIGINT, signal.SIGTERM):  # the launcher's: end between changes
        signal.signal(interrupt, lambda number, _: asked.append(number))
    try:
        return _agent(spec, lambda: bool(asked))
    except Exception:  # the store is gone with rank 0: the run is over
        return 0


if __name__ == "__main__":
    sys.exit(main())
