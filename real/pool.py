"""A warm process that forks rank processes with torch already imported.

Starting a rank costs ``import torch`` (1.6 s of CPU here), which four ranks on two cores pay
again at every ``real.run``. The launcher instead keeps one *pool* process per interpreter:
it imports :mod:`real.rank` (and so torch) once, starts no threads, and forks a rank on
request. A forked rank runs exactly what ``python -m real.rank`` runs, with the launcher's
environment and its own stderr file; it dies with the pool, and the pool with the launcher.

The protocol is one JSON object a line: requests on the pool's stdin, replies on a pipe the
launcher passes (the pool's stdout stays the launcher's, so a strategy's prints show):

* ``{"start": [scratch, rank, port, timeout], "env": {...}, "err": path}`` -> ``{"pid": n}``
* ``{"poll": [pid, ...]}`` -> ``{"codes": {pid: exit code or null}}`` (negative: a signal)
* ``{"kill": [pid, ...]}`` -> ``{}``

Run it as ``python -m real.pool FD`` (``FD``: the reply pipe); :class:`RankPool` does.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

__all__ = ["RankPool", "shared_pool"]


def _die_with_parent() -> None:
    """On Linux, be killed when the parent dies (killed, or its interpreter ended), so no
    pool or rank outlives the launcher."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class RankPool:
    """The launcher's handle on one pool process (see the module docstring)."""

    def __init__(self) -> None:
        self.path = tuple(p for p in sys.path if p)
        env = dict(os.environ)
        # Classes the set-up refers to by module must import there as they do here.
        env["PYTHONPATH"] = os.pathsep.join([*self.path, env.get("PYTHONPATH", "")])
        read, write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "real.pool", str(write)],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=(write,),
            preexec_fn=_die_with_parent,
        )
        os.close(write)
        self._replies: IO[bytes] = os.fdopen(read, "rb")
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
            line = self._replies.readline()
        if not line:
            raise RuntimeError("the rank pool process ended; it is restarted on the next run")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, argv: list[str], err: str) -> int:
        """Fork a rank running ``real.rank.main(argv)``, its stderr into ``err``; its pid."""
        return int(self._ask({"start": argv, "env": dict(os.environ), "err": err})["pid"])

    def poll(self, pids: list[int]) -> dict[int, int | None]:
        """Each rank's exit code (negative: killed by that signal), ``None`` while it runs."""
        codes = self._ask({"poll": pids})["codes"]
        return {int(pid): code for pid, code in codes.items()}

    def kill(self, pids: list[int]) -> None:
        self._ask({"kill": pids})

    def close(self) -> None:
        if self._process.poll() is None and self._process.stdin is not None:
            self._process.stdin.close()  # the pool's loop ends at end of input
        self._process.wait()
        self._replies.close()


_POOL: RankPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> RankPool:
    """This interpreter's pool, started on first use (and again if it ended or ``sys.path``
    changed, so new modules stay importable in the ranks)."""
    global _POOL
    with _POOL_LOCK:
        path = tuple(p for p in sys.path if p)
        if _POOL is None or not _POOL.alive or _POOL.path != path:
            if _POOL is not None and _POOL.alive:
                _POOL.close()
            _POOL = RankPool()
            atexit.register(_POOL.close)  # leave no pool behind, even for a moment
        return _POOL


# -- the pool process ---------------------------------------------------------------------------
def _fork_rank(argv: list[str], env: dict[str, str], err: str, reply_fd: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the rank: nothing of the pool's protocol, the launcher's environment
        os.close(reply_fd)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)  # becomes fd 0
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        _die_with_parent()
        from real import rank

        code = rank.main(argv)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(reply_fd: int) -> None:
    # A rank's first torch optimizer imports torch._dynamo (2 s here): once, here, too.
    import torch._dynamo  # noqa: F401

    import real.rank  # noqa: F401 - torch and the rank code, once, before any fork

    children: dict[int, int | None] = {}
    replies = os.fdopen(reply_fd, "w")
    for line in sys.stdin:
        request = json.loads(line)
        reply: dict[str, Any] = {}
        if "start" in request:
            pid = _fork_rank(request["start"], request["env"], request["err"], reply_fd)
            children[pid] = None
            reply = {"pid": pid}
        elif "poll" in request:
            for pid in request["poll"]:
                if children.get(pid) is None and pid in children:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        children[pid] = os.waitstatus_to_exitcode(status)
            reply = {"codes": {pid: children.get(pid) for pid in request["poll"]}}
        elif "kill" in request:
            for pid in request["kill"]:
                if pid in children and children[pid] is None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
