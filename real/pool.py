"""A warm process that forks rank processes with torch already imported.

Starting a rank costs ``import torch`` (1.6 s of CPU here), which four ranks on two cores pay
again at every ``real.run``. The launcher instead keeps one *pool* process per interpreter:
it imports :mod:`real.rank` (and so torch) once, starts no threads, and forks a rank on
request. A forked rank runs exactly what ``python -m real.rank`` runs, with the launcher's
environment, working directory and its own stderr file; it dies with the pool, and the pool
with the launcher (it watches its parent, so it does not matter which thread started it).
The pool is replaced when the launcher's ``sys.path`` changes, when commsim's own sources
change on disk (a notebook that edits them), and after a request was interrupted.

The protocol is one JSON object a line: requests on the pool's stdin, replies on a pipe the
launcher passes (the pool's stdout stays the launcher's, so a strategy's prints show):

* ``{"start": [scratch, options_json], "env": {...}, "cwd": dir, "err": path}`` ->
  ``{"pid": n}``
* ``{"poll": [pid, ...]}`` -> ``{"codes": {pid: exit code or null}}`` (negative: a signal)
* ``{"kill": [pid, ...]}`` -> ``{}``
* ``{"quit": true}``: kill every rank still running and end (no reply)

Run it as ``python -m real.pool FD`` (``FD``: the reply pipe); :class:`RankPool` does.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["RankPool", "shared_pool"]


def _die_with_parent() -> None:
    """On Linux, a rank is killed when its pool dies (the pool's one thread forked it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class RankPool:
    """The launcher's handle on one pool process (see the module docstring)."""

    def __init__(self) -> None:
        self.path = _search_path()
        self.sources = _sources_stamp()
        self.owner = os.getpid()  # the process that started it, the only one to use it
        env = dict(os.environ)
        # Classes the set-up refers to by module must import there as they do here.
        env["PYTHONPATH"] = os.pathsep.join(
            [*self.path, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        read, write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "real.pool", str(write), str(os.getpid())],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=(write,),
        )
        os.close(write)
        self._replies: IO[bytes] = os.fdopen(read, "rb")
        self._lock = threading.Lock()
        self._broken = False
        #: Runs using this pool now (a stale pool is closed once it has none).
        self.runs = 0

    @property
    def alive(self) -> bool:
        return not self._broken and self._process.poll() is None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if not self.alive:
                raise RuntimeError("the rank pool process ended; it is restarted on the next run")
            try:
                stdin = self._process.stdin
                assert stdin is not None
                stdin.write(json.dumps(request).encode() + b"\n")
                stdin.flush()
                line = self._replies.readline()
            except BaseException:
                # Interrupted between a request and its reply (Ctrl-C), or the pipe broke:
                # the next reply would answer the wrong request. The pool, and its ranks, go.
                self._broken = True
                self._process.kill()
                raise
            if not line:
                self._broken = True
                raise RuntimeError("the rank pool process ended; it is restarted on the next run")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, argv: list[str], err: str) -> int:
        """Fork a rank running ``real.rank.main(argv)``, its stderr into ``err``, in this
        process's working directory and environment; its pid."""
        request = {"start": argv, "env": dict(os.environ), "cwd": os.getcwd(), "err": err}
        return int(self._ask(request)["pid"])

    def poll(self, pids: list[int]) -> dict[int, int | None]:
        """Each rank's exit code (negative: killed by that signal), ``None`` while it runs."""
        codes = self._ask({"poll": pids})["codes"]
        return {int(pid): code for pid, code in codes.items()}

    def kill(self, pids: list[int]) -> None:
        self._ask({"kill": pids})

    def close(self) -> None:
        """End the pool (and any rank still running). Its stdin may be inherited by a
        process this one forked, so no end of input is awaited: it is told to quit. A process
        that inherited the pool through a fork leaves it to its owner."""
        if self.owner != os.getpid():
            return
        with self._lock:
            if self._process.poll() is None and not self._broken:
                try:
                    stdin = self._process.stdin
                    assert stdin is not None
                    stdin.write(b'{"quit": true}\n')
                    stdin.flush()
                    self._process.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._broken = True
            self._replies.close()
            if self._process.stdin is not None:
                self._process.stdin.close()


_POOL: RankPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> RankPool:
    """This interpreter's pool, started on first use (and again if it ended or ``sys.path``
    changed, so new modules stay importable in the ranks)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL.owner != os.getpid():
            # Inherited through a fork (a sweep's worker): the pool is the parent's, which
            # alone talks to it and closes it. This process starts its own.
            _POOL = None
        stale = _POOL is not None and (
            _POOL.path != _search_path() or _POOL.sources != _sources_stamp()
        )
        if _POOL is None or not _POOL.alive or stale:
            # Runs in other threads keep the pool they started with (their ranks are its
            # children); an idle one ends now, a busy one at exit.
            if _POOL is not None and _POOL.runs == 0:
                _POOL.close()
            _POOL = RankPool()
            atexit.register(_POOL.close)  # leave no pool behind, even for a moment
        return _POOL


def _search_path() -> tuple[str, ...]:
    """The launcher's ``sys.path``, absolute (``""``, the current directory, included)."""
    return tuple(os.path.abspath(p) for p in sys.path)


#: The packages the pool imports before forking: a change to their sources needs a new pool.
_PRELOADED = ("real", "strategies", "workloads", "runs", "topologies")


def _sources_stamp() -> float:
    """The newest modification time of the preloaded packages' sources."""
    root = Path(__file__).resolve().parents[1]
    newest = 0.0
    for package in _PRELOADED:
        for source in (root / package).rglob("*.py"):
            try:
                newest = max(newest, source.stat().st_mtime)
            except OSError:  # removed while we looked
                pass
    return newest


# -- the pool process ---------------------------------------------------------------------------
def _fork_rank(argv: list[str], env: dict[str, str], cwd: str, err: str, reply_fd: int) -> int:
    pool = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the rank: nothing of the pool's protocol, the launcher's environment
        _die_with_parent()
        if os.getppid() != pool:  # the pool died before the line above took effect
            os._exit(1)
        os.close(reply_fd)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)  # becomes fd 0
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.path.insert(0, cwd)  # as `python -m real.rank` run from there would have it
        from real import rank

        code = rank.main(argv)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(reply_fd: int, launcher: int) -> None:
    # A rank's first torch optimizer imports torch._dynamo (2 s here): once, here, too.
    import torch._dynamo  # noqa: F401

    import real.rank  # noqa: F401 - torch and the rank code, once, before any fork

    # Ctrl-C reaches the launcher's whole process group, and `kill -TERM -PGID` too: the
    # launcher decides what its ranks do then (they stop and hand in), so the pool must not
    # die of it and take them along. It ends when the launcher says so, or is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    children: dict[int, int | None] = {}
    scratch: dict[int, str] = {}  # every rank's set-up directory, kept until the pool ends
    replies = os.fdopen(reply_fd, "w")
    requests = sys.stdin.buffer
    while True:
        # Watch the launcher: it may die without closing our input (a process it forked
        # holds the pipe too), and it may have started us from a thread that has ended.
        ready, _, _ = select.select([requests], [], [], 1.0)
        if not ready:
            if os.getppid() != launcher:
                break
            continue
        line = requests.readline()
        if not line:
            break
        request = json.loads(line)
        reply: dict[str, Any] = {}
        if "quit" in request:
            break
        if "start" in request:
            pid = _fork_rank(
                request["start"], request["env"], request["cwd"], request["err"], reply_fd
            )
            children[pid] = None
            scratch[pid] = request["start"][0]
            reply = {"pid": pid}
        elif "poll" in request:
            for pid in request["poll"]:
                if children.get(pid) is None and pid in children:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        children[pid] = os.waitstatus_to_exitcode(status)
            reply = {"codes": {pid: children.get(pid) for pid in request["poll"]}}
            for pid in request["poll"]:  # reported once ended: the launcher keeps it
                if children.get(pid) is not None:
                    del children[pid]
        elif "kill" in request:
            for pid in request["kill"]:
                if pid in children and children[pid] is None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    for pid, code in children.items():  # the launcher is gone: so are its runs
        if code is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # A launcher killed outright (SIGKILL), even while it gathered or wrote a run whose
    # ranks had ended, could not remove its set-up directories (the run's pickled set-up
    # and secret): they go with the pool. (A launcher that ended well removed its own.)
    for directory in set(scratch.values()):
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    try:
        _serve(int(sys.argv[1]), int(sys.argv[2]))
    except KeyboardInterrupt:
        # Ctrl-C in a terminal (or a notebook kernel shut down) reaches the whole process
        # group; the launcher reports it, and the pool leaves without a traceback. Its ranks
        # get the same signal.
        pass
