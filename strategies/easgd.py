"""Elastic averaging SGD: workers pulled towards a centre variable that a server holds, the
centre pulled towards the workers (Zhang, Choromanska and LeCun, 2015)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.aggregate import shard_bounds
from strategies.averaging import elastic_pull
from strategies.base import Program, ShardedServers, Strategy
from strategies.context import ServerContext, WorkerContext
from strategies.fields import Period, Servers
from strategies.handles import Handle
from strategies.ledger import consensus_distance
from strategies.registry import register

__all__ = ["EASGD"]

MODES = ("sync", "async")


@register
class EASGD(ShardedServers, Strategy):
    """Workers take ``period`` local steps, then exchange with the centre held by the
    server ranks (``0 .. servers-1``, one shard each): each worker moves by
    ``-alpha (x - c)`` and the centre by ``+alpha (x - c)``, an elastic force both ways.

    The centre's move is an SGD step with learning rate ``alpha`` on the elastic gradient
    ``sum_i (c - x_i)``, so the servers step the declared ``"center"`` optimizer and the
    centre is the global model: a global step is one centre update (in ``"sync"`` mode one
    round of ``period`` local steps on every worker, in ``"async"`` one worker's exchange).
    Workers step their own ``"local"`` optimizer, the one a run's ``optimizer=`` configures.

    Parameters
    ----------
    alpha
        The moving rate (``eta * rho`` in the paper), in ``(0, 1)``; with ``n`` workers in
        ``"sync"`` mode, ``n * alpha < 1`` keeps the centre stable.
    period
        Local steps between exchanges (``tau``).
    mode
        ``"sync"``: the centre waits for every worker (in rank order) and moves once by
        their sum; ``"async"``: it answers each worker as it arrives (the paper's
        asynchronous EASGD).
    servers
        Server ranks, each holding one contiguous shard of the centre.

    In ``"sync"`` mode the first server logs the workers' consensus distance (on its shard)
    at evaluation points. Bytes per worker and exchange: ``4 * numel`` up and ``4 * numel`` down (plus 8 for
    the version in each reply's header).

    Examples
    --------
    >>> EASGD(alpha=0.1, period=4).optimizers["center"]
    {'name': 'sgd', 'lr': 0.1}
    >>> EASGD(alpha=1.5)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: alpha=1.5 must be a number in (0, 1) (the elastic moving rate)
    """

    name = "easgd"
    global_model = "servers"
    optimizers: dict[str, Any] = {"center": {"name": "sgd", "lr": 0.1}, "local": None}

    alpha: Annotated[float, Field(gt=0, lt=1, description="the elastic moving rate")] = 0.1
    period: Period = 4
    mode: Annotated[str, OneOf(MODES)] = "sync"
    n_servers: Servers = 1

    def __post_init__(self) -> None:
        self.optimizers = {"center": {"name": "sgd", "lr": float(self.alpha)}, "local": None}

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        workers = world_size - self.n_servers
        if self.mode == "sync" and workers * self.alpha >= 1:
            raise OptionError(
                f"alpha={self.alpha:g} with {workers} workers moves the centre past them "
                f"(n * alpha = {workers * self.alpha:g} >= 1); use alpha < {1 / workers:.3g}",
                "alpha",
            )

    def worker_state(self) -> dict[str, float]:
        """The centre a worker pulls and holds for its elastic step, and the state of the
        ``local`` optimizer it steps (the first declared, ``center``, is the servers').

        >>> EASGD().worker_state()
        {'centre': 1.0, 'local': 1.0}
        """
        return {"centre": 1.0, "local": 1.0}

    def worker(self, w: WorkerContext) -> Program:
        # Steps this worker's own model in place. The run's lr schedule spans the local
        # steps a worker takes: `period` per centre update (sync), or per `n` of them (async).
        share = 1 if self.mode == "sync" else len(w.workers)
        local = w.make_optimizer("local", horizon=max(1, w.total_steps * self.period // share))
        bounds = shard_bounds(w.numel, len(w.servers))
        local_steps = 0
        while not w.done:
            grads = yield w.compute_gradients()
            local.step(grads)
            local_steps += 1
            if local_steps % self.period:
                continue
            x = w.parameters()
            pushes = [w.comm.send(x[a:b], dst=s) for s, (a, b) in zip(w.servers, bounds)]
            pulls = [w.comm.recv(torch.empty(b - a), src=s) for s, (a, b) in zip(w.servers, bounds)]
            replies = (yield w.comm.wait_all(pushes + pulls))[len(pushes) :]
            center = torch.cat([reply.tensors[0] for reply in replies])
            w.load_parameters(
                elastic_pull(x, center, self.alpha), version=replies[0].header["version"]
            )

    def server(self, s: ServerContext) -> Program:
        if self.mode == "sync":
            yield from self._sync(s)
        else:
            yield from self._async(s)

    def _reply(self, s: ServerContext, center: torch.Tensor, dst: int) -> Handle[None]:
        return s.comm.send(center, dst=dst, header={"version": s.version})

    def _sync(self, s: ServerContext) -> Program:
        while not s.done:
            # Rank order: the sum's order is fixed, so both backends add alike.
            got = yield s.comm.wait_all(
                [s.comm.recv(torch.empty(s.numel), src=r) for r in s.workers]
            )
            center = s.parameters()
            replies = [self._reply(s, center, r) for r in s.workers]  # c before it moves
            force = torch.zeros_like(center)
            for message in got:
                force += center - message.tensors[0]
            s.apply(force)  # c <- c - alpha * sum_i (c - x_i)
            if s.index == 0 and s.is_eval_step():  # how far apart the workers are
                s.log(consensus=consensus_distance([m.tensors[0] for m in got]))
            yield s.comm.wait_all(replies)

    def _async(self, s: ServerContext) -> Program:
        replies: dict[int, Handle[None]] = {}
        while not s.done:
            src, (x,), _ = yield s.comm.recv(torch.empty(s.numel), src=None)
            center = s.parameters()
            if src in replies:  # one reply to a worker at a time: its last was delivered
                yield replies[src]
            replies[src] = self._reply(s, center, src)
            s.apply(center - x)  # c <- c + alpha (x - c), with the centre this worker saw
