"""Decentralised gossip SGD: synchronous D-PSGD and asynchronous AD-PSGD over a graph.

Every worker keeps its own replica (the global model is their average). After each
optimizer step a worker mixes its parameters with its graph neighbours':

* ``mode="sync"`` (D-PSGD, Lian et al. 2017): all workers exchange parameters with every
  neighbour and load ``sum_j W[i, j] x_j`` (mixing weights from :mod:`strategies.mixing`);
  one global barrier per step in effect, deterministic, bitwise equal in ``sim`` and ``real``.
* ``mode="async"`` (AD-PSGD, Lian et al. 2018): workers on one side of a bipartite graph
  (*active*) each average with one random neighbour on the other side (*passive*),
  ``x_i, x_j <- (x_i + x_j) / 2``; passive workers keep a receive posted and answer while they
  compute. No barrier, so no deadlock under rendezvous sends: only actives initiate, and
  a passive worker always has a receive posted for them. Each active averages while its
  next gradient computes (on the parameters read before averaging, as in the paper; both
  backends compute beside communication); a passive worker runs at most ``max_lead`` steps
  ahead of the actives it hears from.

Graph nodes are worker indices (``w.index``); messages go to ``w.workers[j]``. Which graph,
its weights, its checks and the facts logged about it are :mod:`strategies.gossip_graph`'s.

Crashes (``sim``; docs/strategies.md): an exchange with a crashed neighbour fails with
:class:`~strategies.PeerFailure` once the crash is detected; the worker mixes over the
neighbours it heard from and adds the missing ones' weights to its own (the row stays
stochastic and ``W`` symmetric over the live workers, with no agreement needed). A restarted
worker (``w.rejoined``) takes its live neighbours' parameters (mean) and step before it
trains again. A neighbour cut off by a link down (``sim``) fails the same way: an active
AD-PSGD worker goes without averaging that round (keeping its receive posted for that
peer's late reply), and a passive one whose active neighbours are all gone (crashed or cut
off) is paced by nobody until one is heard again.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from options.declare import OneOf, OptionError
from strategies.base import Program, Strategy
from strategies.checks import PeerFailure
from strategies.context import WorkerContext
from strategies.gossip_graph import GRAPHS, WEIGHTS, GossipGraph, Round, user_graph
from strategies.graphs import Adjacency, bipartition
from strategies.handles import Handle
from strategies.mixing import mix
from strategies.registry import register

__all__ = ["GRAPHS", "MODES", "WEIGHTS", "Gossip"]

MODES = ("sync", "async")
#: How many steps a passive AD-PSGD worker may run ahead of the newest step it has heard
#: from an active neighbour.
DEFAULT_MAX_LEAD = 2


@register
class Gossip(Strategy):
    """Gossip SGD: each worker applies its own gradient, then mixes parameters with its
    neighbours on a communication graph.

    Parameters
    ----------
    graph
        ``"ring"``, ``"torus"`` (2-D, near-square), ``"exponential"`` (``i +- 2**k``),
        ``"one_peer_exponential"`` (time-varying, one peer per step; Ying et al. 2021),
        ``"complete"``, ``"topology"`` (the network's host graph, where the backend knows it),
        or a graph of your own over worker indices ``0..n-1`` (a ``networkx.Graph``, an
        adjacency mapping or a list of edges).
    mode
        ``"sync"`` (D-PSGD) or ``"async"`` (AD-PSGD; needs a bipartite graph: a ring or
        torus of even sides, or your own).
    weights
        ``"metropolis"`` (Metropolis-Hastings, the default for ``"sync"``) or ``"uniform"``
        (``1 / (1 + degree)``, regular graphs only). Only for ``mode="sync"``: AD-PSGD always
        averages a pair with weights 1/2.
    max_lead
        Only for ``mode="async"`` (default 2): a passive worker starts a gradient only while
        it is fewer than ``max_lead`` steps ahead of the newest step an active neighbour has
        sent it (8 bytes on each request); ``math.inf`` lets it run free. AD-PSGD's analysis
        assumes bounded staleness, and the bound means the same in both backends: a passive
        worker, which answers while it computes, outruns the active ones wherever an
        exchange costs more than a gradient (stragglers or slow links in ``sim``; on
        ``real``, a small model on an oversubscribed machine, whose ranks wait for the CPU
        to answer).

    Logs ``lambda2`` (second largest eigenvalue modulus of the mixing matrix; for the
    one-peer graph, of one period's product), ``spectral_gap`` (``1 - lambda2``), ``degree``
    (the largest) and, for ``"async"``, ``active`` (workers that initiate averaging), once at
    the start from worker 0.

    Examples
    --------
    >>> Gossip(graph="torus", weights="uniform")
    Gossip(graph='torus', mode='sync', weights='uniform', max_lead=None)
    >>> Gossip(mode="async")
    Gossip(graph='ring', mode='async', weights=None, max_lead=2)
    >>> Gossip(graph="star")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: graph='star' is unknown; use one of ring, torus, exponential, one_peer_exponential, complete, topology, or pass a graph object
    >>> Gossip(mode="async").check_world(5)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: mode='async' needs a bipartite graph to split workers into active and passive ones; graph='ring' over 5 workers is not: the graph is not bipartite (it has an odd cycle: neighbours 2 and 3 fall on the same side); pick a graph with two sides, e.g. a ring of an even number of workers
    """

    name = "gossip"

    graph: Any = Field(
        "ring", description=f"one of {', '.join(map(repr, GRAPHS))}, or a graph object"
    )
    mode: Annotated[str, OneOf(MODES)] = "sync"
    weights: Annotated[str, OneOf(WEIGHTS)] | None = Field(
        None, description="'metropolis' with mode='sync'"
    )
    max_lead: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=math.inf)] | None = Field(
        None,
        description="steps a passive worker may run ahead of the active ones, math.inf: "
        f"unbounded; {DEFAULT_MAX_LEAD} with mode='async'",
    )

    def __post_init__(self) -> None:
        try:
            user = user_graph(self.graph)
        except (ValueError, TypeError) as exc:
            raise OptionError(str(exc), "graph") from None
        if user is not None:
            # run.json gets the edges, which rebuild the same graph: Gossip(graph=edges).
            self.graph = [[i, j] for i, nbrs in user.items() for j in nbrs if i < j]
        if self.mode == "async":
            if self.weights is not None:
                raise OptionError(
                    f"weights={self.weights!r} applies only to mode='sync'; mode='async' "
                    "averages pairs with weights 1/2",
                    "weights",
                )
            if self.graph == "one_peer_exponential":
                raise OptionError(
                    "graph='one_peer_exponential' changes every step, which mode='async' "
                    "(no common step) cannot follow; use mode='sync' or a fixed graph",
                    "graph",
                )
            if self.max_lead is None:
                self.max_lead = DEFAULT_MAX_LEAD
        elif self.max_lead is not None:
            raise OptionError(
                f"max_lead={self.max_lead!r} applies only to mode='async'", "max_lead"
            )
        elif self.weights is None:
            self.weights = "metropolis"
        # What the programs mix over; the options above are its whole description.
        self._graph = GossipGraph(
            self.graph if user is None else "custom", user, self.mode, self.weights
        )
        if user is not None:
            try:
                self._graph.validate(user, len(user))
            except ValueError as exc:
                raise OptionError(str(exc), "graph") from None

    # -- the graph (strategies.gossip_graph) -------------------------------------------------
    def adjacency(
        self, n: int, t: int = 0, host_graph: Mapping[int, Any] | None = None
    ) -> Adjacency:
        """The graph over ``n`` workers at step ``t`` (only the one-peer graph changes);
        ``host_graph`` is the network's (over worker indices) for ``graph="topology"``."""
        return self._graph.adjacency(n, t, host_graph)

    def mixing_matrix(self, adj: Adjacency) -> torch.Tensor:
        """The weights ``W`` (float64) this strategy mixes with on ``adj``."""
        return self._graph.mixing_matrix(adj)

    def check_world(self, world_size: int) -> None:
        super().check_world(world_size)
        try:
            self._graph.check(len(self.workers(world_size)))
        except ValueError as exc:  # said as the option it is about (strategy.graph)
            raise OptionError(str(exc), "graph") from None

    # -- programs ---------------------------------------------------------------------------
    def worker(self, w: WorkerContext) -> Program:
        graphs = self._graph.schedule(w.workers, w.host_graph)
        if w.index == 0:
            w.log(**self._graph.facts(graphs))
        if self.mode == "sync":
            yield from self._sync(w, graphs)
        else:
            yield from self._async(w, graphs[0])

    def _sync(self, w: WorkerContext, graphs: list[Adjacency]) -> Program:
        rounds = self._graph.rounds(graphs, w.index)
        if w.rejoined and not (yield from _rejoin_sync(w, rounds)):
            return  # no live neighbour to take a state from
        while not w.done:
            grads = yield w.compute_gradients()
            w.apply(grads)
            # Every worker has applied w.step steps here: they agree on the round.
            plan = rounds[(w.step - 1) % len(rounds)]
            mine = w.parameters()
            # Post every send and receive, then wait on them together: sends are rendezvous.
            sends = [w.comm.send(mine, dst=w.workers[j]) for j in plan.targets]
            recvs = [w.comm.recv(torch.empty_like(mine), src=w.workers[j]) for j in plan.sources]
            try:
                received = (yield w.comm.wait_all(sends + recvs))[len(sends) :]
                weights = plan.weights
            except PeerFailure:  # a neighbour crashed: mix over those that answered
                received, weights = yield from _survivors(plan, recvs)
            theirs = [message.tensors[0] for message in received]
            w.load_parameters(mix(mine, theirs, weights))
            for message in received:
                if "join" in message.header:  # a restarted neighbour: tell it the step
                    yield w.comm.send(torch.zeros(0), dst=message.src, header={"step": w.step})

    def _async(self, w: WorkerContext, adj: Adjacency) -> Program:
        active, _ = bipartition(adj)
        if w.index in active:
            yield from self._active(w, adj[w.index])
        else:
            yield from self._passive(w, adj[w.index])

    def _active(self, w: WorkerContext, peers: tuple[int, ...]) -> Program:
        # Seeded by the run and the rank: the same choices in every run with this seed.
        rng = np.random.default_rng([w.seed, w.rank])
        if w.rejoined and not (yield from _rejoin_active(w, peers, rng)):
            return  # no live neighbour to take a state from
        # A peer's reply still awaited from an exchange whose send failed (a link cut off:
        # the receive stays posted, and that peer's next reply lands there).
        replies: dict[int, Handle[Any]] = {}
        while not w.done:
            mine = w.parameters()
            # The gradient at the parameters read now.
            waits: list[Handle[Any]] = [w.compute_gradients()]
            if peers:  # (a world of one worker has nobody to average with)
                peer = w.workers[peers[int(rng.integers(len(peers)))]]
                # Average while the gradient computes, as AD-PSGD's communication thread does.
                tag = {"step": w.step}  # paces the passive worker (max_lead)
                waits.append(w.comm.send(mine, dst=peer, header=tag))
                if peer not in replies or replies[peer].done:
                    replies[peer] = w.comm.recv(torch.empty_like(mine), src=peer)
                waits.append(replies[peer])
            try:
                done = yield w.comm.wait_all(waits)
            except PeerFailure:  # the peer crashed or is cut off: no averaging this round
                w.apply((yield waits[0]))
                continue
            if peers:
                w.load_parameters(mix(mine, [done[2].tensors[0]], (0.5, 0.5)))
            w.apply(done[0])

    def _passive(self, w: WorkerContext, peers: tuple[int, ...]) -> Program:
        template = w.parameters()
        request = w.comm.recv(torch.empty_like(template), src=None)
        # A restarted worker computes nothing before it has taken an active neighbour's state.
        restored = not w.rejoined
        grads: Handle[torch.Tensor] | None = w.compute_gradients() if restored else None
        heard = 0  # the newest step an active neighbour has told us about
        lead = math.inf if self.max_lead is None else self.max_lead
        # Active neighbours whose message failed (crashed, or cut off by a link down), until
        # one is heard from again: with every neighbour gone, nobody paces this worker, and it
        # trains alone, as a D-PSGD worker with no neighbour left does.
        gone: set[int] = set()
        neighbours = {w.workers[j] for j in peers}
        while not w.done:
            # The request first: when both are ready, the active worker waiting on the
            # exchange goes on at once, and the gradient is applied after.
            try:
                index, value = yield w.comm.wait_any(
                    [request] if grads is None else [request, grads]
                )
            except PeerFailure as failure:  # its sender crashed or is cut off
                gone.update(r for r in failure.ranks if r != w.rank)
                request = w.comm.recv(torch.empty_like(template), src=None)
                if neighbours <= gone:
                    lead = math.inf
                if restored and grads is None and w.step < heard + lead:
                    grads = w.compute_gradients()
                continue
            if index == 1:
                w.apply(value)
                grads = None
            else:
                src, (theirs,), header = value
                heard = max(heard, int(header["step"]))
                if src in gone:  # back: it paces this worker again
                    gone.discard(src)
                    lead = math.inf if self.max_lead is None else self.max_lead
                request = w.comm.recv(torch.empty_like(template), src=None)
                if not restored:  # a new process: the active's model and step are its state
                    _restore(w, theirs, int(header["step"]))
                    restored = True
                joining = "join" in header  # a restarted active asks for this model
                mine = w.parameters()
                try:
                    # The active worker posted its receive with its send: this completes.
                    if joining:
                        yield w.comm.send(mine, dst=src, header={"step": w.step})
                    else:
                        yield w.comm.send(mine, dst=src)
                except PeerFailure:  # it crashed since: no average
                    continue
                if not joining:
                    # The same two tensors, added in the other order: IEEE addition commutes,
                    # so both workers hold bitwise the same average.
                    w.load_parameters(mix(mine, [theirs], (0.5, 0.5)))
            if restored and grads is None and w.step < heard + lead:
                grads = w.compute_gradients()


def _survivors(
    plan: Round, recvs: list[Handle[Any]]
) -> Generator[Any, Any, tuple[list[Any], tuple[float, ...]]]:
    """A sub-program after a failed exchange: the messages that arrived (in source order) and
    the row of weights over them, the missing neighbours' weights added to the own one."""
    received, weights, own = [], [], plan.weights[0]
    for weight, recv in zip(plan.weights[1:], recvs):
        try:
            received.append((yield recv))
            weights.append(weight)
        except PeerFailure:
            own += weight
    return received, (own, *weights)


def _restore(w: WorkerContext, parameters: torch.Tensor, step: int, messages: int = 1) -> None:
    """Take ``parameters`` at ``step`` as this (restarted) worker's state, received in
    ``messages`` messages of their size; its optimizer's buffers start from zero."""
    flat, numbers = w.export()
    flat = flat.clone()
    flat[: w.numel] = parameters
    w.restore(
        flat,
        step=step,
        numbers=numbers,
        nbytes=float(messages * parameters.numel() * parameters.element_size()),
    )


def _rejoin_sync(w: WorkerContext, rounds: list[Round]) -> Generator[Any, Any, bool]:
    """A sub-program for a restarted D-PSGD worker. It receives its live neighbours' messages
    of their current round (on a time-varying graph, the first message's sender tells which
    round that is), sends each target back its own parameters (or, to a target it did not
    hear from, the mean of what it heard), tagged ``join``: a neighbour mixes with itself and
    replies with its step. Then it takes the mean at the smallest of those steps. False if no
    neighbour answered."""
    template = w.parameters()
    got: dict[int, Any] = {}
    plan = rounds[0]
    if len(rounds) > 1:
        first = yield w.comm.recv(torch.empty_like(template), src=None)
        sender = w.workers.index(first.src)
        matches = [r for r in rounds if sender in r.sources]
        if len(matches) != 1:
            raise ValueError(
                f"rank {w.rank} restarted, but worker {sender} is its neighbour in "
                f"{len(matches)} rounds of the graph, so it cannot tell which round it is in; "
                "use a fixed graph or no restart"
            )
        plan, got[first.src] = matches[0], first
    recvs = [
        (w.workers[j], w.comm.recv(torch.empty_like(template), src=w.workers[j]))
        for j in plan.sources
        if w.workers[j] not in got
    ]
    for src, recv in recvs:
        try:
            got[src] = yield recv
        except PeerFailure:
            continue
    if not got:
        return False
    mean = torch.stack([m.tensors[0] for m in got.values()]).mean(dim=0)
    targets = [w.workers[k] for k in plan.targets]
    backs = [
        w.comm.send(got[k].tensors[0] if k in got else mean, dst=k, header={"join": 1})
        for k in targets
    ]
    steps = [w.comm.recv(torch.zeros(0), src=k) for k in targets]
    stepped = []
    for back, step in zip(backs, steps):
        try:
            yield back
            stepped.append(int((yield step).header["step"]))
        except PeerFailure:
            continue
    if not stepped:
        return False
    _restore(w, mean, min(stepped), messages=len(got))
    return True


def _rejoin_active(
    w: WorkerContext, peers: tuple[int, ...], rng: np.random.Generator
) -> Generator[Any, Any, bool]:
    """A sub-program for a restarted AD-PSGD active worker: it asks random live peers (a
    ``join`` exchange: the passive one does not average) for their parameters and step.
    False if none is alive."""
    mine = w.parameters()
    for j in rng.permutation(len(peers)):
        peer = w.workers[peers[int(j)]]
        send = w.comm.send(mine, dst=peer, header={"step": w.step, "join": 1})
        recv = w.comm.recv(torch.empty_like(mine), src=peer)
        try:
            _, reply = yield w.comm.wait_all([send, recv])
        except PeerFailure:
            continue
        _restore(w, reply.tensors[0], int(reply.header["step"]))
        return True
    return False
