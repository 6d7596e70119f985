"""``commsim real ... --testbed SPEC`` (``real.run(..., testbed=SPEC)``): one rank in each
host's namespace, its store on the management network.

The testbed plays the cluster, and the launcher plays torchrun's agent, as the local launcher
does (:mod:`real.launch`): it hosts the run's store in the machine's own namespace, on the
testbed's management network (:mod:`real.testbed.plan`: an unshaped veth per host, not part
of the topology, which no link fault reaches), and starts rank ``r`` as ``python -m
real.rank`` inside namespace ``NAME-h<r>`` (:class:`NamespaceRanks`), with the variables
torchrun would set (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` = the store's management
address, ``TORCHELASTIC_USE_AGENT_STORE``) and ``GLOO_SOCKET_IFNAME`` = the host's topology
device, so the ranks' collectives cross the shaped links and the store's traffic does not.
The store outlives every rank, so the local launcher's fault machinery runs here unchanged
(:mod:`real.restarts`): a crash is the rank's process killed with ``SIGKILL`` in its
namespace, a restart a new process in the same namespace, and a straggler slows itself
(:mod:`real.slowdowns`); the launcher gathers what the ranks hand in and writes the run.

Nothing outlives the launcher. Each rank gets ``PR_SET_PDEATHSIG`` (SIGKILL when the
launcher dies; ``ip netns exec`` execs the rank in place and keeps it) and a process group
of its own, so that the launcher alone decides what a signal does (it asks the ranks to stop
on the store, as the local launcher does). Against SIGKILL, which leaves it no chance, a
watchdog started before the testbed removes it once the launcher is gone
(:mod:`real.testbed.watchdog`).

With link faults, an agent beside the launcher (in the machine's own namespace, a client of
the store over the management network) changes the links' qdiscs at the schedule's times
(:mod:`real.testbed.links`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from typing import Any

import networkx as nx

from faults import FaultSchedule
from real.partitions import cuts
from real.placement import Placement
from real.store import SECRET_ENV
from real.testbed import watchdog
from real.testbed.lifecycle import down, preflight, up
from real.testbed.links import applied, changes, to_json
from real.testbed.plan import Plan, TestbedError, make_plan

__all__ = ["NamespaceRanks", "Testbed", "check_testbed_arguments", "rank_environment"]

#: After an interrupt, how long the link-fault agent gets to finish the change it is making.
AGENT_GRACE = 2.0


def _rank_process() -> None:
    """In a rank, between fork and exec: SIGKILL when the launcher dies (kept across
    ``ip netns exec``'s exec of the rank, which is neither setuid nor file-capable), and a
    process group of its own, so that a signal reaches it through the launcher only."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgid(0, 0)


def rank_environment(plan: Plan, rank: int, port: int) -> dict[str, str]:
    """The variables torchrun would give rank ``rank`` on a one-rank-per-host cluster whose
    agent hosts the store at the management gateway's ``port``; gloo on the host's topology
    device.

    Examples
    --------
    >>> import topologies
    >>> plan = make_plan(topologies.star(2), "tb")
    >>> env = rank_environment(plan, 1, 4000)
    >>> env["MASTER_ADDR"], env["GLOO_SOCKET_IFNAME"], env["TORCHELASTIC_USE_AGENT_STORE"]
    ('10.78.114.254', 'l1a', 'True')
    """
    world = len(plan.hosts)
    placement = Placement(rank, world, 0, 1, rank, plan.gateway, port, True, "testbed")
    return {
        **placement.env(),
        "GLOO_SOCKET_IFNAME": plan.hosts[rank].device,
        # Each rank alone on its "host": one thread, as the local launcher gives each rank.
        "OMP_NUM_THREADS": "1",
    }


class NamespaceRanks:
    """The local launcher's rank pool (:class:`real.pool.RankPool`: ``start``, ``poll``,
    ``kill``) for a testbed: each rank a ``python -m real.rank`` in its host's namespace."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.runs = 0
        self.alive = True
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, argv: list[str], err: str) -> int:
        """Start the rank ``argv`` describes (``SCRATCH OPTIONS_JSON``, its stderr to
        ``err``); its pid, which is the rank's own (``ip netns exec`` execs it in place)."""
        rank = int(json.loads(argv[1])["env"]["RANK"])
        env = dict(os.environ)
        # Classes the set-up refers to by module must import there as they do here.
        env["PYTHONPATH"] = os.pathsep.join(
            [p for p in sys.path if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        command = ["ip", "netns", "exec", self.plan.hosts[rank].namespace]
        with open(err, "wb") as stderr:
            process = subprocess.Popen(
                [*command, sys.executable, "-m", "real.rank", *argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=_rank_process,
            )
        self._processes[process.pid] = process
        return process.pid

    def poll(self, pids: list[int]) -> dict[int, int | None]:
        """Each rank's exit status, None while it runs (negative: killed by that signal)."""
        return {pid: self._processes[pid].poll() for pid in pids}

    def kill(self, pids: list[int]) -> None:
        """``SIGKILL`` to each of ``pids`` still running (in its namespace)."""
        for pid in pids:
            if self._processes[pid].poll() is None:
                self._processes[pid].kill()

    def close(self) -> None:
        """Kill and reap every rank still running."""
        for process in self._processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


class Testbed:
    """The testbed of one run, for as long as the ``with`` block: made on entry (after its
    watchdog), removed on exit with everything that runs in it.

    ``graph``: the tree-shaped topology; ``name``: the testbed's (its namespaces' prefix);
    ``faults``: the run's schedule, whose link events its agent makes
    (:mod:`real.testbed.links`), once :meth:`started` says where the store is."""

    def __init__(self, graph: nx.Graph, name: str, faults: FaultSchedule | None = None) -> None:
        self.plan = make_plan(graph, name)
        #: The topology's links, as fault schedules name them.
        self.links = [(str(u), str(v)) for u, v in graph.edges]
        self.faults = faults if faults is not None and faults.link_faults else None
        self.netem = False
        self.ranks = NamespaceRanks(self.plan)
        self._agent: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None

    @property
    def gateway(self) -> str:
        """Where the launcher hosts the run's store (its management address)."""
        return self.plan.gateway

    def __enter__(self) -> Testbed:
        preflight()
        self._guard = watchdog.start(self.plan.name)  # first: a SIGKILL leaves nothing
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # latency not emulated: said below
                self.netem = up(self.plan, owned_by=os.getpid())
        except BaseException:
            self._stop_guard()
            raise
        if not self.netem:
            print(
                "testbed: latency is not emulated (no netem in this kernel); bandwidth is "
                "shaped to the topology's rates, but links add no delay: load sch_netem "
                "(modprobe sch_netem) to emulate latency",
                file=sys.stderr,
            )
        return self

    def environment(self, rank: int, port: int) -> dict[str, str]:
        """Rank ``rank``'s variables (:func:`rank_environment`)."""
        return rank_environment(self.plan, rank, port)

    def started(self, port: int, secret: str) -> None:
        """The store listens at the gateway's ``port``: start the link agent, if any."""
        if self.faults is not None:
            made = changes(self.plan, self.faults, self.netem)
            self._agent = _start_agent(self.gateway, port, made, secret)

    def marks(self, store: Any) -> list[tuple[Any, ...]]:
        """The ``fault`` rows of the link changes the agent made (rank -1, as ``sim``), and
        the ranks the quorums cut off and admitted again (:mod:`real.partitions`)."""
        if not self.faults:
            return []
        links: list[tuple[Any, ...]] = [(at, -1, event) for at, event in applied(store)]
        return links + [
            (at, rank, "cut_off" if out else "reconnect", since)
            for at, rank, out, since in cuts(store)
        ]

    def _stop_guard(self) -> None:
        if self._guard is not None:
            self._guard.kill()
            self._guard.wait()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._agent is not None:
                _stop_agent(self._agent)
            self.ranks.close()
            down(self.plan.name)
        finally:
            self._stop_guard()


def _start_agent(gateway: str, port: int, made: list[Any], secret: str) -> subprocess.Popen[bytes]:
    """The agent that makes the link changes ``made``, beside the launcher (the store is
    reached over the management network, which no change touches), dying with the
    launcher as a rank does. A change that fails fails the run with its line (on the
    store); its stderr is the launcher's."""
    env = {
        **os.environ,
        "MASTER_ADDR": gateway,
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
        SECRET_ENV: secret,
    }
    agent = subprocess.Popen(
        [sys.executable, "-m", "real.testbed.links"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        preexec_fn=_rank_process,
    )
    assert agent.stdin is not None
    agent.stdin.write(to_json(made).encode())
    agent.stdin.close()
    return agent


def _stop_agent(agent: subprocess.Popen[bytes]) -> None:
    """Stop the agent between two changes (one it has begun it makes and records whole),
    or kill it after ``AGENT_GRACE`` seconds (stuck on the store)."""
    agent.terminate()
    try:
        agent.wait(timeout=AGENT_GRACE)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


def check_testbed_arguments(nproc: int | None, graph: nx.Graph) -> None:
    """``--nproc`` must agree with the testbed's hosts when given."""
    import topologies

    hosts = len(topologies.hosts(graph))
    if nproc is not None and nproc != hosts:
        raise TestbedError(
            f"--nproc {nproc} but the testbed has {hosts} hosts (one rank each); drop --nproc"
        )
