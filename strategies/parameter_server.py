"""Parameter servers: synchronous (BSP), asynchronous (ASP) and stale-synchronous (SSP).

Workers push gradients tagged with the model version they were computed on and pull fresh
parameters; servers hold contiguous shards of the flat model, so each push is split across
them. The version tag travels in the message header (8 bytes, charged in both backends), so
the server can measure every gradient's staleness.

Faults (``sim``; see docs/strategies.md): a synchronous server may apply a round without
its ``backup_workers`` slowest workers (Chen et al., 2016) or after a ``timeout`` (as
Hivemind does), and every server carries on without a worker whose crash it detects. A push
tagged with an older version than the server's is *stale*: dropped (``dropped`` is logged),
answered at once with the current parameters so its worker moves on. A restarted worker
(``w.rejoined``) first *joins*: it pushes zeros tagged :data:`JOIN`, which no server applies,
and takes the parameters of the reply. A worker whose push fails with a
:class:`~strategies.PeerFailure` naming itself (a link down cut it off from a live server;
a crash names only the dead) joins the same way, asking every ``IDLE_POLL`` seconds until
its link is back or the run stops; its servers carry on without it meanwhile.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale
from strategies.base import Program, ShardedServers, Strategy
from strategies.checks import PeerFailure
from strategies.compression import Compression
from strategies.compression.codec import SubProgram, charge
from strategies.context import ServerContext, WorkerContext
from strategies.fields import CompressedIfSet, Servers
from strategies.handles import Handle
from strategies.messages import message_nbytes
from strategies.registry import register

__all__ = ["JOIN", "ParameterServer"]

MODES = ("sync", "async", "ssp")
STALENESS_LR = (None, "inverse")
#: The version tag of a restarted worker's first push: a request for the parameters.
JOIN = -1
#: How long a synchronous server whose workers are all down waits before it looks again.
IDLE_POLL = 0.1


@register
class ParameterServer(ShardedServers, Strategy):
    """Workers push gradients to server shards and pull parameters back.

    Parameters
    ----------
    mode
        ``"sync"``: each update averages one gradient from every worker (bulk synchronous).
        ``"async"``: each gradient is applied on arrival, computed on the parameters its
        worker last pulled. ``"ssp"``: as async, but a worker may run at most ``staleness``
        pushes ahead of the slowest worker before it must wait.
    staleness
        The SSP bound (an integer >= 0); only for ``mode="ssp"``.
    servers
        Number of server ranks (ranks ``0 .. servers-1``), each holding one shard.
    staleness_lr
        ``"inverse"`` scales the learning rate of a gradient of staleness tau by
        ``1 / (1 + tau)`` (Zhang et al., 2016); ``None`` leaves it unchanged.
    compression
        A ``strategies.compression`` scheme for the pushes: each worker sends the encoded
        payload of each shard (with error feedback where the scheme has it), the server
        decodes it; parameters come back uncompressed. PowerSGD needs all-reduces and is
        refused.
    backup_workers
        Only for ``mode="sync"``: a round applies the first ``n - backup_workers`` gradients
        of its ``n`` live workers to arrive (averaged in rank order) and drops the others
        (Chen et al., 2016, "Revisiting Distributed Synchronous SGD"). 0 waits for all.
    timeout
        Only for ``mode="sync"``: seconds after the start of a round at which the server
        applies what has arrived, if anything has (Hivemind); ``None`` waits.

    Examples
    --------
    >>> ParameterServer(mode="ssp", staleness=-1)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: staleness=-1 must be an integer >= 0 or None (the SSP bound)
    >>> ParameterServer(servers=4).check_world(4)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: servers=4 leaves no worker among 4 ranks; use servers < world size
    >>> ParameterServer(mode="async", backup_workers=1)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: backup_workers=1 applies only to mode='sync', not mode='async'
    >>> ParameterServer(backup_workers=3).check_world(4)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: backup_workers=3 leaves no gradient to apply among 3 workers; use backup_workers < 3
    """

    name = "parameter_server"
    global_model = "servers"

    mode: Annotated[str, OneOf(MODES)] = "sync"
    staleness: Annotated[int, Field(ge=0)] | None = Field(None, description="the SSP bound")
    n_servers: Servers = 1
    staleness_lr: Literal["inverse"] | None = None
    compression: CompressedIfSet = None
    backup_workers: Annotated[int, Field(ge=0)] = Field(
        0, description="slowest workers a synchronous round does not wait for"
    )
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        None, description="seconds after which a synchronous round applies what arrived"
    )
    checkpoint_every: Annotated[int, Field(ge=1)] | None = Field(
        None, description="server steps between checkpoints of each shard"
    )

    def __post_init__(self) -> None:
        for name in ("backup_workers", "timeout"):
            value = getattr(self, name)
            if self.mode != "sync" and value not in (0, None):
                raise OptionError(
                    f"{name}={value!r} applies only to mode='sync', not mode={self.mode!r}", name
                )
        if self.mode == "ssp" and self.staleness is None:
            raise OptionError("mode='ssp' needs staleness=<int >= 0>, the SSP bound", "staleness")
        if self.mode != "ssp" and self.staleness is not None:
            raise OptionError(
                f"staleness={self.staleness} applies only to mode='ssp', not mode={self.mode!r}",
                "staleness",
            )
        try:
            self.compression = Compression.parse(self.compression)
        except ValueError as exc:
            raise OptionError(str(exc), "compression") from None
        if self.compression is not None and self.compression.name == "powersgd":
            raise OptionError(
                "compression='powersgd' needs all-reduces (its factors are averaged twice); "
                "a parameter server receives single payloads: use topk, randomk, qsgd, uint8, "
                "fp16, bf16 or signsgd",
                "compression",
            )

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        if self.checkpoint_every is not None and len(self.servers(world_size)) > 1:
            # A worker whose push to one shard failed would push again to all: the live
            # shards would apply its gradient twice.
            raise OptionError(
                f"checkpoint_every={self.checkpoint_every} restores one server's shard; with "
                f"{len(self.servers(world_size))} servers it is not supported yet: use servers=1",
                "checkpoint_every",
            )
        workers = len(self.workers(world_size))
        if self.backup_workers >= workers:
            raise OptionError(
                f"backup_workers={self.backup_workers} leaves no gradient to apply among "
                f"{workers} workers; use backup_workers < {workers}",
                "backup_workers",
            )

    # -- worker ---------------------------------------------------------------------------
    def worker(self, w: WorkerContext) -> Program:
        bounds = shard_bounds(w.numel, len(w.servers))
        codecs = [self._codec(w, b - a, server) for server, (a, b) in zip(w.servers, bounds)]
        # Each server's version as its last reply said: a push is tagged with its server's,
        # so a server that ran ahead of another (backup workers) does not see it as stale.
        versions = [w.version] * len(w.servers)
        # Each server's reply still awaited from a push that failed (a cut link fails the push
        # and leaves its receive posted): the next reply of that server lands there.
        pulls: dict[int, Handle[Any]] = {}
        if w.rejoined:  # a new process: the parameters first, from a push no server applies
            versions = yield from self._rejoin(w, bounds, codecs, versions, pulls, wait=False)
        while not w.done:
            grads = yield w.compute_gradients()
            if codecs[0] is not None:
                yield from charge(w, sum(c.encode_seconds() for c in codecs))
            try:
                versions = yield from self._exchange(w, bounds, codecs, grads, versions, pulls)
            except PeerFailure as failure:
                if not self._rejoins(w, failure):
                    raise
                # The server crashed and comes back from its checkpoint, or this worker's
                # link to it is down: this gradient is lost; once the server answers again,
                # its parameters (a push it does not apply), then on as before.
                versions = yield from self._rejoin(w, bounds, codecs, versions, pulls, wait=True)

    def _rejoins(self, w: WorkerContext, failure: PeerFailure) -> bool:
        """Whether a worker asks its servers again after ``failure`` rather than end the run:
        the failure names the worker itself (the network cut it off from a live server; a
        crash names only the dead), or a server that comes back from its checkpoint."""
        if w.rank in failure.ranks:
            return True
        return self.checkpoint_every is not None and bool(set(failure.ranks) & set(w.servers))

    def _rejoin(
        self,
        w: WorkerContext,
        bounds: list[tuple[int, int]],
        codecs: list[Any],
        versions: list[int],
        pulls: dict[int, Handle[Any]],
        wait: bool,
    ) -> Generator[Handle[Any], Any, list[int]]:
        """The servers' parameters, from a push they do not apply (a restarted worker, or a
        worker whose server crashed or whose link is down); while a server is down or cut
        off, asked again every ``IDLE_POLL`` seconds, until the run stops."""
        zeros = torch.zeros(w.numel, dtype=w.replica.flat.dtype)
        while not w.done:
            if wait:
                yield w.sleep(IDLE_POLL)
                if w.done:
                    break
            wait = True
            join = [JOIN] * len(bounds)
            try:
                return (yield from self._exchange(w, bounds, codecs, zeros, join, pulls))
            except PeerFailure as failure:
                if not self._rejoins(w, failure):
                    raise
        return versions

    def _exchange(
        self,
        w: WorkerContext,
        bounds: list[tuple[int, int]],
        codecs: list[Any],
        grads: torch.Tensor,
        versions: list[int],
        pulls: dict[int, Handle[Any]],
    ) -> Generator[Handle[Any], Any, list[int]]:
        """Push ``grads`` (tagged ``versions``) to the servers, load their replies; returns
        the servers' versions. A reply is awaited on ``pulls``' receive from its server where
        one is still posted."""
        pushes = [
            w.comm.send(
                grads[a:b] if codec is None else codec.encode(grads[a:b]),
                dst=server,
                header={"version": version},
            )
            for server, (a, b), codec, version in zip(w.servers, bounds, codecs, versions)
        ]
        for server, (a, b) in zip(w.servers, bounds):
            if server not in pulls or pulls[server].done:
                pulls[server] = w.comm.recv(torch.empty(b - a, dtype=grads.dtype), src=server)
        replies = (yield w.comm.wait_all(pushes + [pulls[s] for s in w.servers]))[len(pushes) :]
        pulls.clear()
        versions = [int(reply.header["version"]) for reply in replies]
        w.load_parameters(torch.cat([reply.tensors[0] for reply in replies]), min(versions))
        return versions

    def _codec(self, ctx: Any, numel: int, server: int) -> Any:
        if self.compression is None:
            return None
        return self.compression.codec(ctx, numel=numel, shapes=[(numel,)], salt=f"shard{server}")

    # -- server ---------------------------------------------------------------------------
    def _lr_scale(self, staleness: int) -> float:
        return staleness_lr_scale(staleness) if self.staleness_lr == "inverse" else 1.0

    def _buffers(self, s: ServerContext, codec: Any) -> list[torch.Tensor]:
        if codec is None:
            return [torch.empty(s.numel, dtype=s.shard.param.dtype)]
        return codec.buffers()

    def _decoded(self, s: ServerContext, codec: Any, payload: list[torch.Tensor]) -> SubProgram:
        """A sub-program: the pushed gradient, decoded (its decode time charged)."""
        if codec is None:
            return payload[0]
        yield from charge(s, codec.decode_seconds())
        return codec.decode(payload)

    def _log_ratio(self, s: ServerContext, codec: Any) -> None:
        """What a push weighs against raw float32, on the first server at evaluations."""
        if codec is not None and s.index == 0 and s.is_eval_step():
            s.log(compression_ratio=message_nbytes(codec.buffers()) / (4 * s.numel))

    def _reply(self, s: ServerContext, dst: int) -> Handle[None]:
        return s.comm.send(s.parameters(), dst=dst, header={"version": s.version})

    def server(self, s: ServerContext) -> Program:
        if s.rejoined and self.checkpoint_every is not None:
            yield s.load_checkpoint()  # the shard as it was at its last checkpoint
        if self.mode == "sync":
            yield from self._sync_server(s)
        else:
            yield from self._async_server(s)

    def _checkpoint(self, s: ServerContext) -> Program:
        """Every ``checkpoint_every`` steps the shard is written (the server waits for it)."""
        if self.checkpoint_every is not None and s.step % self.checkpoint_every == 0:
            yield s.save_checkpoint()

    def _sync_server(self, s: ServerContext) -> Program:
        codec = self._codec(s, s.numel, s.rank)
        pending: dict[int, Handle[Any]] = {}  # each worker's posted receive, maybe from a round ago
        dead: set[int] = set()  # workers whose crash this server detected (until they join)
        late: dict[int, Handle[None]] = {}  # replies to stale pushes, in flight
        while not s.done:
            # Receive from each worker in rank order and sum in rank order: the sum is then
            # fixed, which makes this bitwise equal to an all-reduce mean, and NCCL (no
            # receive-from-any) works. A dead worker's receive is posted too: it fails at once
            # while the worker is down, and takes its join push once it restarted.
            for r in s.workers:
                if r not in pending:
                    pending[r] = s.comm.recv(self._buffers(s, codec), src=r)
            expected = [r for r in s.workers if r not in dead]
            pushes = yield from self._gather(s, codec, pending, dead, expected, late)
            if not pushes:  # every worker is down: look again later
                yield s.sleep(self.timeout or IDLE_POLL)
                continue
            decoded: list[torch.Tensor] = []
            for push in pushes:
                decoded.append((yield from self._decoded(s, codec, push.tensors)))
            grads = reduce_tensors(decoded, "mean")
            staleness = max(max(s.version - push.header["version"] for push in pushes), 0)
            s.apply(grads, staleness=staleness, lr_scale=self._lr_scale(staleness))
            self._log_ratio(s, codec)
            yield from self._checkpoint(s)
            replies = [self._reply(s, push.src) for push in pushes]
            try:
                yield s.comm.wait_all(replies)
            except PeerFailure:  # a worker crashed since its push: the others' replies go on
                for push, reply in zip(pushes, replies):
                    yield from _settle(reply, dead, push.src)

    def _gather(
        self,
        s: ServerContext,
        codec: Any,
        pending: dict[int, Handle[Any]],
        dead: set[int],
        expected: list[int],
        late: dict[int, Handle[None]],
    ) -> Generator[Handle[Any], Any, list[Any]]:
        """A sub-program: this round's pushes (tagged with the server's version), in rank
        order, once all but ``backup_workers`` of the live ``expected`` workers have pushed,
        or the ``timeout`` passed with at least one. Stale and join pushes are answered at once
        with the current parameters; a worker whose receive fails is marked ``dead``."""
        fresh: dict[int, Any] = {}
        dropped = 0
        deadline = None if self.timeout is None else s.sleep(self.timeout)
        timed_out = False
        while True:
            live = [r for r in expected if r not in dead]
            if fresh and (len(fresh) >= len(live) - self.backup_workers or timed_out):
                break
            ranks = [r for r in s.workers if r in pending]
            if not ranks:
                break
            waits = [pending[r] for r in ranks]
            if deadline is not None and not timed_out:
                waits.append(deadline)
            try:
                index, push = yield s.comm.wait_any(waits)
            except PeerFailure as failure:
                for r in failure.ranks:
                    if r in pending and pending[r].done:
                        del pending[r]
                        dead.add(r)
                continue
            if index == len(ranks):
                timed_out = True
                continue
            src = ranks[index]
            del pending[src]
            dead.discard(src)
            if int(push.header["version"]) == s.version:
                fresh[src] = push
                continue
            # Stale (computed before the last update) or a join: not applied; the worker gets
            # the current parameters now, and this server receives its next push.
            dropped += int(push.header["version"]) != JOIN
            if src in late:
                yield from _settle(late.pop(src), dead, src)
            late[src] = self._reply(s, src)
            pending[src] = s.comm.recv(self._buffers(s, codec), src=src)
        if dropped:
            s.log(dropped=dropped)
        return [fresh[r] for r in sorted(fresh)]

    def _async_server(self, s: ServerContext) -> Program:
        bound = self.staleness if self.mode == "ssp" else None
        pushes = {r: 0 for r in s.workers}
        dead: set[int] = set()  # workers whose crash this server detected (until they join)
        waiting: list[int] = []
        replies: dict[int, Handle[None]] = {}  # the last reply to each worker, maybe in flight
        codec = self._codec(s, s.numel, s.rank)
        while not s.done:
            # A reply that failed: its worker crashed (the SSP bound forgets it).
            dead.update(r for r, reply in replies.items() if reply.done and reply.failed)
            try:
                src, payload, header = yield s.comm.recv(
                    self._buffers(s, codec), src=_awaited(pushes, waiting, dead)
                )
            except PeerFailure as failure:  # the one worker the others waited for crashed
                dead.update(failure.ranks)
            else:
                if int(header["version"]) == JOIN:  # a restarted worker: the parameters
                    dead.discard(src)
                    waiting = [r for r in waiting if r != src]
                    live = [pushes[r] for r in pushes if r not in dead and r != src]
                    pushes[src] = min(live, default=0)  # it starts level with the slowest
                    if src in replies:
                        yield from _settle(replies.pop(src), set(), src)
                    replies[src] = self._reply(s, src)
                    continue
                grads = yield from self._decoded(s, codec, payload)
                # (a worker's tag is ahead of a server restored from its checkpoint)
                staleness = max(s.version - header["version"], 0)
                s.apply(grads, staleness=staleness, lr_scale=self._lr_scale(staleness))
                self._log_ratio(s, codec)
                yield from self._checkpoint(s)
                pushes[src] += 1
                waiting.append(src)
            waiting = [r for r in waiting if r not in dead]
            # The slowest over the live workers: a dead worker holds nobody back.
            slowest = min((n for r, n in pushes.items() if r not in dead), default=0)
            ready = [r for r in waiting if bound is None or pushes[r] - slowest <= bound]
            if ready:
                # lead: how far ahead of the slowest a released worker is (SSP keeps it <= bound);
                # spread: the widest gap between any two live workers' push counts right now.
                s.log(
                    lead=max(pushes[r] for r in ready) - slowest,
                    spread=max(n for r, n in pushes.items() if r not in dead) - slowest,
                )
                waiting = [r for r in waiting if r not in ready]
                for r in ready:
                    # The server's link sends while it receives the next push; a new reply to a
                    # worker only follows its previous one (already delivered, since the worker
                    # has pushed again after receiving it).
                    if r in replies:
                        yield from _settle(replies[r], dead, r)
                    replies[r] = self._reply(s, r)


def _awaited(pushes: dict[int, int], waiting: list[int], dead: set[int]) -> int | None:
    """The one live worker an SSP server can hear from next, when every other live worker
    waits for its reply: receiving from that worker alone is the same receive (nobody else
    can push) and fails if it crashed, which frees the others. ``None``: any worker."""
    free = [r for r in pushes if r not in dead and r not in waiting]
    return free[0] if len(free) == 1 else None


def _settle(handle: Handle[Any], dead: set[int], rank: int) -> Program:
    """A sub-program: wait for ``handle``; if ``rank`` crashed, mark it ``dead`` instead."""
    try:
        yield handle
    except PeerFailure:
        dead.add(rank)
