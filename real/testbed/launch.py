"""``commsim real ... --testbed SPEC``: one rank in each host's namespace, launched as a cluster.

The testbed plays the cluster: rank ``r`` runs ``python -m real`` (the same arguments, less
``--testbed`` and ``--nproc``) inside namespace ``NAME-h<r>``, with the variables torchrun
would set (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` = rank 0's testbed address ...) and no
agent store, so rank 0 hosts the rendezvous as under srun, gloo talks over the shaped links
(``GLOO_SOCKET_IFNAME``), and rank 0 gathers and writes the run. A run on the testbed is
therefore the multi-host code path, not the local launcher's.

Nothing outlives the launcher. Each rank gets ``PR_SET_PDEATHSIG`` (SIGKILL when the
launcher dies; ``ip netns exec`` execs the rank in place and keeps it) and a process group
of its own, so that the launcher alone decides what a signal does: on Ctrl-C or SIGTERM it
passes the signal on to every rank, gives them ``GRACE_SECONDS`` to end (rank 0 writes what
was measured), kills what is left and takes the testbed down. Against SIGKILL, which leaves
it no chance, a watchdog started before the testbed removes it once the launcher is gone
(:mod:`real.testbed.watchdog`).

With ``--faults`` (link faults only), an agent beside rank 0 changes the links' qdiscs at the
schedule's times, and the launcher mends them before it passes an interrupt on
(:mod:`real.testbed.links`).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence

import networkx as nx

from faults import FaultSchedule
from real.signals import terminate_interrupts
from real.store import SECRET_ENV, new_secret
from real.testbed import watchdog
from real.testbed.lifecycle import down, preflight, up
from real.testbed.links import Change, changes, mend, to_json
from real.testbed.plan import Plan, TestbedError, make_plan

__all__ = ["check_testbed_arguments", "rank_argv", "rank_environment", "run_on_testbed"]

#: The rendezvous port on rank 0's testbed address (the namespace is the testbed's own).
PORT = 29500
#: After an interrupt, how long the ranks get to end by themselves before they are killed.
GRACE_SECONDS = 10.0
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


def rank_argv(options: Sequence[str]) -> list[str]:
    """The command each rank runs: ``python -m real`` with ``commsim real``'s options.

    Examples
    --------
    >>> rank_argv(["--steps", "5"])[1:]
    ['-m', 'real', '--steps', '5']
    """
    return [sys.executable, "-m", "real", *options]


def rank_environment(plan: Plan, rank: int) -> dict[str, str]:
    """The variables torchrun would give rank ``rank`` on a one-rank-per-host cluster."""
    host = plan.hosts[rank]
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(len(plan.hosts)),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "GROUP_RANK": str(rank),
        "MASTER_ADDR": plan.hosts[0].address,
        "MASTER_PORT": str(PORT),
        "GLOO_SOCKET_IFNAME": host.device,
        "COMMSIM_LAUNCHER": "testbed",
        # Each rank alone on its "host": one thread, as the local launcher gives each rank.
        "OMP_NUM_THREADS": "1",
    }


def run_on_testbed(
    graph: nx.Graph, options: Sequence[str], name: str, faults: FaultSchedule | None = None
) -> int:
    """Bring up a testbed for ``graph``, run one rank per host in it, take it down.

    ``options`` are ``commsim real``'s, as each rank gets them (with ``--topology``, and
    ``--faults`` with ``faults``). ``faults``: the run's link faults, checked
    (:func:`real.testbed.links.check_testbed_faults`); an agent beside rank 0 makes them
    (:mod:`real.testbed.links`).

    Returns the worst exit status of the ranks (0 when all finished). Rank 0's output (its
    progress bar and summary) is this command's; the others' goes to stderr only on failure.
    """
    preflight()
    plan = make_plan(graph, name)
    processes: list[subprocess.Popen[bytes]] = []
    agent: subprocess.Popen[bytes] | None = None
    guard = watchdog.start(name)  # first: from here on, a SIGKILL leaves nothing behind
    secret = new_secret()  # signs the run's store: the testbed's ranks alone know it
    try:
        with terminate_interrupts():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # latency not emulated: said below
                netem = up(plan, owned_by=os.getpid())
            if not netem:
                print(
                    "testbed: latency is not emulated (no netem in this kernel); bandwidth is "
                    "shaped to the topology's rates, but links add no delay: load sch_netem "
                    "(modprobe sch_netem) to emulate latency",
                    file=sys.stderr,
                )
            command = rank_argv(options)
            for host in plan.hosts:
                env = {**os.environ, **rank_environment(plan, host.rank), SECRET_ENV: secret}
                processes.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", host.namespace, *command],
                        env=env,
                        stdout=None if host.rank == 0 else subprocess.DEVNULL,
                        stderr=None if host.rank == 0 else subprocess.PIPE,
                        preexec_fn=_rank_process,
                    )
                )
            if faults:
                agent = _start_agent(plan, changes(plan, faults, netem), secret)
            try:
                codes = _wait(processes)
            except KeyboardInterrupt as interrupt:
                if agent is not None and faults:  # the ranks hand in over whole links
                    _stop_agent(agent)
                    mend(plan, faults, netem)
                _pass_on(processes, interrupt)
                raise
        for rank, (process, code) in enumerate(zip(processes, codes, strict=True)):
            if code != 0 and rank != 0 and process.stderr is not None:
                said = process.stderr.read().decode(errors="replace").strip().splitlines()
                if said:
                    print(f"rank {rank}: {said[-1]}", file=sys.stderr)
        worst = max(codes, key=abs)
        return 128 - worst if worst < 0 else worst  # killed by signal N: the shell's 128 + N
    finally:
        for process in [*processes, *([agent] if agent is not None else [])]:
            if process.poll() is None:
                process.kill()
            process.wait()
        try:
            down(name)
        finally:
            guard.kill()
            guard.wait()


def _start_agent(plan: Plan, made: list[Change], secret: str) -> subprocess.Popen[bytes]:
    """The agent that makes the link changes ``made``, in rank 0's namespace (beside the
    run's store: it crosses no testbed link), dying with the launcher as a rank does. A
    change that fails fails the run with its line (on the store); its stderr is rank 0's."""
    host = plan.hosts[0]
    env = {
        **os.environ,
        "MASTER_ADDR": host.address,
        "MASTER_PORT": str(PORT),
        "OMP_NUM_THREADS": "1",
        SECRET_ENV: secret,
    }
    agent = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, sys.executable, "-m", "real.testbed.links"],
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


def _pass_on(processes: list[subprocess.Popen[bytes]], interrupt: KeyboardInterrupt) -> None:
    """Pass the launcher's interrupt (SIGTERM, else SIGINT) on to every rank still running,
    and give them ``GRACE_SECONDS`` to end; the caller kills what is left."""
    how = signal.SIGTERM if "SIGTERM" in str(interrupt) else signal.SIGINT
    for process in processes:
        if process.poll() is None:
            process.send_signal(how)
    deadline = time.monotonic() + GRACE_SECONDS
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
    except KeyboardInterrupt:  # a second interrupt: no more waiting
        pass


def _wait(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """Every rank's exit status; once one fails, the others have a minute to stop, and once
    rank 0 has ended (it wrote the run) a few seconds (a rank stopped by SIGSTOP, say, and
    named by its silence, would never end by itself)."""
    deadline: float | None = None
    while any(p.poll() is None for p in processes):
        if deadline is None and any(p.returncode not in (None, 0) for p in processes):
            deadline = time.monotonic() + 60.0
        if processes[0].returncode is not None:
            deadline = min(deadline or math.inf, time.monotonic() + 5.0)
        if deadline is not None and time.monotonic() > deadline:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        time.sleep(0.05)
    return [int(p.returncode) for p in processes]


def check_testbed_arguments(nproc: int | None, graph: nx.Graph) -> None:
    """``--nproc`` must agree with the testbed's hosts when given."""
    import topologies

    hosts = len(topologies.hosts(graph))
    if nproc is not None and nproc != hosts:
        raise TestbedError(
            f"--nproc {nproc} but the testbed has {hosts} hosts (one rank each); drop --nproc"
        )
