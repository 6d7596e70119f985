"""Parameter servers: synchronous (BSP), asynchronous (ASP) and stale-synchronous (SSP).

Workers push gradients tagged with the model version they were computed on and pull fresh
parameters; servers hold contiguous shards of the flat model, so each push is split across
them. The version tag travels in the message header (8 bytes, charged in both backends), so
the server can measure every gradient's staleness.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale
from strategies.base import Program, ShardedServers, Strategy
from strategies.compression import Compression
from strategies.compression.codec import SubProgram, charge
from strategies.context import ServerContext, WorkerContext
from strategies.fields import CompressedIfSet, Servers
from strategies.handles import Handle
from strategies.messages import message_nbytes
from strategies.registry import register

__all__ = ["ParameterServer"]

MODES = ("sync", "async", "ssp")
STALENESS_LR = (None, "inverse")


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
    """

    name = "parameter_server"
    global_model = "servers"

    mode: Annotated[str, OneOf(MODES)] = "sync"
    staleness: Annotated[int, Field(ge=0)] | None = Field(None, description="the SSP bound")
    n_servers: Servers = 1
    staleness_lr: Literal["inverse"] | None = None
    compression: CompressedIfSet = None

    def __post_init__(self) -> None:
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

    # -- worker ---------------------------------------------------------------------------
    def worker(self, w: WorkerContext) -> Program:
        bounds = shard_bounds(w.numel, len(w.servers))
        codecs = [self._codec(w, b - a, server) for server, (a, b) in zip(w.servers, bounds)]
        while not w.done:
            grads = yield w.compute_gradients()
            tag = {"version": w.version}
            if codecs[0] is not None:
                yield from charge(w, sum(c.encode_seconds() for c in codecs))
            pushes = [
                w.comm.send(
                    grads[a:b] if codec is None else codec.encode(grads[a:b]),
                    dst=server,
                    header=tag,
                )
                for server, (a, b), codec in zip(w.servers, bounds, codecs)
            ]
            pulls = [
                w.comm.recv(torch.empty(b - a, dtype=grads.dtype), src=server)
                for server, (a, b) in zip(w.servers, bounds)
            ]
            replies = (yield w.comm.wait_all(pushes + pulls))[len(pushes) :]
            version = min(reply.header["version"] for reply in replies)
            w.load_parameters(torch.cat([reply.tensors[0] for reply in replies]), version)

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
        if self.mode == "sync":
            yield from self._sync_server(s)
        else:
            yield from self._async_server(s)

    def _sync_server(self, s: ServerContext) -> Program:
        codec = self._codec(s, s.numel, s.rank)
        while not s.done:
            # Receive from each worker in rank order: the sum order is then fixed, which makes
            # this bitwise equal to an all-reduce mean, and NCCL (no receive-from-any) works.
            pushes = yield s.comm.wait_all(
                [s.comm.recv(self._buffers(s, codec), src=r) for r in s.workers]
            )
            decoded: list[torch.Tensor] = []
            for push in pushes:
                decoded.append((yield from self._decoded(s, codec, push.tensors)))
            grads = reduce_tensors(decoded, "mean")
            staleness = max(s.version - push.header["version"] for push in pushes)
            s.apply(grads, staleness=staleness, lr_scale=self._lr_scale(staleness))
            self._log_ratio(s, codec)
            yield s.comm.wait_all([self._reply(s, r) for r in s.workers])

    def _async_server(self, s: ServerContext) -> Program:
        bound = self.staleness if self.mode == "ssp" else None
        pushes = {r: 0 for r in s.workers}
        waiting: list[int] = []
        replies: dict[int, Handle[None]] = {}  # the last reply to each worker, maybe in flight
        codec = self._codec(s, s.numel, s.rank)
        while not s.done:
            src, payload, header = yield s.comm.recv(self._buffers(s, codec), src=None)
            grads = yield from self._decoded(s, codec, payload)
            staleness = s.version - header["version"]
            s.apply(grads, staleness=staleness, lr_scale=self._lr_scale(staleness))
            self._log_ratio(s, codec)
            pushes[src] += 1
            waiting.append(src)
            slowest = min(pushes.values())
            ready = [r for r in waiting if bound is None or pushes[r] - slowest <= bound]
            if ready:
                # lead: how far ahead of the slowest a released worker is (SSP keeps it <= bound);
                # spread: the widest gap between any two workers' push counts right now.
                s.log(
                    lead=max(pushes[r] for r in ready) - slowest,
                    spread=max(pushes.values()) - slowest,
                )
                waiting = [r for r in waiting if r not in ready]
                for r in ready:
                    # The server's link sends while it receives the next push; a new reply to a
                    # worker only follows its previous one (already delivered, since the worker
                    # has pushed again after receiving it).
                    if r in replies:
                        yield replies[r]
                    replies[r] = self._reply(s, r)
