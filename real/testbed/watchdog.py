"""A run's testbed goes with its launcher, however the launcher ends.

``commsim real --testbed`` removes its testbed when it ends, on Ctrl-C and SIGTERM too. A
SIGKILL leaves it no chance, so before the testbed is made the launcher starts a *watchdog*:
``python -m real.testbed.watchdog NAME PID STARTED``, in a session of its own (a Ctrl-C to
the terminal's process group does not reach it). It waits for the launcher to end (a pidfd,
so it wakes at once) and then, if the testbed's state file still names that launcher as its
owner, removes the testbed (:func:`real.testbed.lifecycle.down`: the processes inside are
killed, then the namespaces and the state file go). When the launcher cleaned up itself,
the state file is gone and the watchdog just ends; the launcher also ends it once its
testbed is down. It outlives nothing but its launcher.

The ranks themselves die with the launcher anyway: each is started with
``PR_SET_PDEATHSIG`` = SIGKILL, which ``ip netns exec`` keeps (it execs the rank in place,
neither setuid nor with file capabilities). Should the watchdog be killed too, ``commsim
testbed status`` says the testbed has no live owner, and the next ``up`` or ``down`` removes
it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

__all__ = ["start", "wait_for_exit", "main"]


def start(name: str, pid: int | None = None) -> subprocess.Popen[bytes]:
    """Start the watchdog of testbed ``name`` for process ``pid`` (this one by default)."""
    from real.testbed.lifecycle import owner

    who = owner(os.getpid() if pid is None else pid)
    return subprocess.Popen(
        [sys.executable, "-m", "real.testbed.watchdog", name, str(who["pid"]), str(who["started"])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_exit(pid: int, started: int) -> None:
    """Return once process ``pid`` (started at ``started`` ticks after boot) has ended."""
    from real.testbed.lifecycle import owner_alive

    who = {"pid": pid, "started": started}
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):  # gone already, or a kernel older than 5.3: poll
        while owner_alive(who):
            time.sleep(0.2)
        return
    try:
        if not owner_alive(who):  # the pid was reused before the pidfd was taken
            return
        select.select([pidfd], [], [])  # readable once the process has ended
    finally:
        os.close(pidfd)


def main(argv: list[str]) -> int:
    """``NAME PID STARTED``: wait for the owner to end, then remove the testbed it owned."""
    from real.testbed.lifecycle import _records, down

    name, pid, started = argv[0], int(argv[1]), int(argv[2])
    for interrupt in (signal.SIGINT, signal.SIGHUP):  # the terminal going away is not our end
        signal.signal(interrupt, signal.SIG_IGN)
    wait_for_exit(pid, started)
    record = _records().get(name)
    if record is not None and record.get("owner") == {"pid": pid, "started": started}:
        down(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
