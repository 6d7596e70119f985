"""The communication graph of gossip SGD: which graph over ``n`` workers at step ``t``.

:class:`~strategies.gossip.Gossip` is the algorithm (D-PSGD, AD-PSGD); this module is what it
mixes over: a named graph (:data:`GRAPHS`, built by :mod:`strategies.graphs`), the user's own,
or the network's host graph (``"topology"``); its mixing weights (:mod:`strategies.mixing`);
the checks that it fits the run (the weights exist on it, and ``mode="async"`` can split it
into active and passive sides); each worker's part of a mixing step (:class:`Round`); and the
facts a run logs about it (``lambda2``, ``spectral_gap``, ``degree``, ``active``).

Errors are ``ValueError`` with the sentence the user reads: the strategy says them as the
option they are about (``strategy.graph``).

Examples
--------
>>> graph = GossipGraph("ring")
>>> graph.adjacency(4)
{0: (1, 3), 1: (0, 2), 2: (1, 3), 3: (0, 2)}
>>> graph.rounds(graph.schedule(range(4)), 0)
[Round(sources=(1, 3), targets=(1, 3), weights=(0.3333333333333333, 0.3333333333333333, 0.3333333333333333))]
>>> GossipGraph("ring", mode="async").check(5)
Traceback (most recent call last):
...
ValueError: mode='async' needs a bipartite graph to split workers into active and passive ones; graph='ring' over 5 workers is not: the graph is not bipartite (it has an odd cycle: neighbours 2 and 3 fall on the same side); pick a graph with two sides, e.g. a ring of an even number of workers
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from strategies.graphs import (
    Adjacency,
    bipartition,
    complete,
    degrees,
    exponential,
    from_edges,
    one_peer_exponential,
    one_peer_period,
    out_neighbours,
    ring,
    torus,
)
from strategies.mixing import metropolis_hastings, second_eigenvalue, uniform

__all__ = ["GRAPHS", "WEIGHTS", "GossipGraph", "Round", "user_graph"]

GRAPHS = ("ring", "torus", "exponential", "one_peer_exponential", "complete", "topology")
WEIGHTS = ("metropolis", "uniform")

_STATIC: dict[str, Callable[[int], Adjacency]] = {
    "ring": ring,
    "torus": torus,
    "exponential": exponential,
    "complete": complete,
}
_WEIGHTS: dict[str, Callable[[Adjacency], torch.Tensor]] = {
    "metropolis": metropolis_hastings,
    "uniform": uniform,
}


def user_graph(graph: Any) -> Adjacency | None:
    """``None`` for a graph named by a string of :data:`GRAPHS`, else the user's graph (a
    ``networkx.Graph``, an adjacency mapping or a list of edges) as an adjacency.

    Raises ``ValueError`` for an unknown name or a graph that is not one (``TypeError`` where
    :func:`~strategies.graphs.from_edges` cannot read it at all).

    Examples
    --------
    >>> user_graph("torus") is None, user_graph([(0, 1), (1, 2)])
    (True, {0: (1,), 1: (0, 2), 2: (1,)})
    >>> user_graph("star")
    Traceback (most recent call last):
    ...
    ValueError: graph='star' is unknown; use one of ring, torus, exponential, one_peer_exponential, complete, topology, or pass a graph object
    """
    if isinstance(graph, str):
        if graph not in GRAPHS:
            raise ValueError(
                f"graph={graph!r} is unknown; use one of {', '.join(GRAPHS)}, or pass a graph "
                "object"
            )
        return None
    return from_edges(graph)


@dataclass(frozen=True)
class Round:
    """One worker's part of one mixing step: whom it receives from (ascending: the fixed
    order of :func:`~strategies.mixing.mix`), whom it sends to, and its row of weights
    (its own weight first)."""

    sources: tuple[int, ...]
    targets: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class GossipGraph:
    """The graph a gossip strategy mixes over, as its options say it.

    Parameters
    ----------
    graph
        A name of :data:`GRAPHS`; ignored where ``user`` is given.
    user
        The user's own graph over worker indices (from :func:`user_graph`), or ``None``.
    mode
        ``"sync"`` mixes with ``weights``; ``"async"`` averages pairs across the two sides of
        the graph, so it must be bipartite (its Metropolis weights are only logged).
    weights
        A name of :data:`WEIGHTS` (``mode="sync"``).

    Examples
    --------
    >>> one_peer = GossipGraph("one_peer_exponential")
    >>> [one_peer.adjacency(4, t) for t in range(2)]
    [{0: (1,), 1: (2,), 2: (3,), 3: (0,)}, {0: (2,), 1: (3,), 2: (0,), 3: (1,)}]
    >>> facts = one_peer.facts(one_peer.schedule(range(4)))  # one period averages exactly
    >>> round(facts["lambda2"], 12), facts["degree"]
    (0.0, 1.0)
    >>> GossipGraph("topology").schedule([3, 5, 7], {3: (5,), 5: (3, 7), 7: (5,)})
    [{0: (1,), 1: (0, 2), 2: (1,)}]
    """

    graph: str = "ring"
    user: Adjacency | None = None
    mode: str = "sync"
    weights: str | None = "metropolis"

    def label(self, n: int) -> str:
        """How errors name the graph: ``graph='ring' over 4 workers``."""
        return f"graph={'custom' if self.user is not None else self.graph!r} over {n} workers"

    def adjacency(
        self, n: int, t: int = 0, host_graph: Mapping[int, Any] | None = None
    ) -> Adjacency:
        """The graph over ``n`` workers at step ``t`` (only the one-peer graph changes);
        ``host_graph`` is the network's (over worker indices) for ``graph="topology"``."""
        if self.user is not None:
            if len(self.user) != n:
                raise ValueError(
                    f"graph has {len(self.user)} nodes but the run has {n} workers; pass a "
                    f"graph over worker indices 0..{n - 1}"
                )
            return self.user
        if self.graph == "one_peer_exponential":
            return one_peer_exponential(n, t)
        if self.graph == "topology":
            if host_graph is None:
                raise ValueError(
                    "graph='topology' needs the network's host graph, which this backend "
                    "does not know (w.host_graph is None); pass a named graph such as "
                    "graph='ring', or your own graph"
                )
            try:
                return from_edges(host_graph, n)
            except ValueError as exc:
                raise ValueError(f"graph='topology': the hosts' {exc}") from None
        try:
            return _STATIC[self.graph](n)
        except ValueError as exc:
            raise ValueError(f"graph={self.graph!r}: {exc}") from None

    def mixing_matrix(self, adj: Adjacency) -> torch.Tensor:
        """The weights ``W`` (float64) the strategy mixes with on ``adj``."""
        if self.mode == "async":  # not mixed with; the graph's Metropolis weights, to log
            return metropolis_hastings(adj)
        try:
            return _WEIGHTS[str(self.weights)](adj)
        except ValueError as exc:
            raise ValueError(f"{self.label(len(adj))}: {exc}") from None

    def validate(self, adj: Adjacency, n: int) -> None:
        """Raise ``ValueError`` unless the strategy can mix over ``adj``: its weights exist
        there and, for ``mode="async"``, it has two sides."""
        self.mixing_matrix(adj)
        if self.mode == "async":
            try:
                bipartition(adj)
            except ValueError as exc:
                raise ValueError(
                    "mode='async' needs a bipartite graph to split workers into active and "
                    f"passive ones; {self.label(n)} is not: {exc}"
                ) from None

    def check(self, n: int) -> None:
        """:meth:`validate` the graph over ``n`` workers before the run, where it is known
        then (the host graph of ``"topology"`` is only known once the run starts)."""
        if self.graph != "topology" or self.user is not None:
            self.validate(self.adjacency(n), n)

    def schedule(
        self, workers: Sequence[int], host_graph: Mapping[int, Iterable[int]] | None = None
    ) -> list[Adjacency]:
        """The graphs of one period (one graph unless it varies in time), validated, over
        the indices of ``workers`` (ranks); ``host_graph`` is the network's, over ranks."""
        n = len(workers)
        host = _over_indices(host_graph, workers) if self.graph == "topology" else None
        period = one_peer_period(n) if self.graph == "one_peer_exponential" else 1
        graphs = [self.adjacency(n, t, host) for t in range(period)]
        self.validate(graphs[0], n)
        return graphs

    def rounds(self, graphs: Sequence[Adjacency], i: int) -> list[Round]:
        """Worker ``i``'s part of the mixing step on each graph of :meth:`schedule`."""
        rounds = []
        for adj in graphs:
            W = self.mixing_matrix(adj)
            sources = adj[i]
            row = (float(W[i, i]), *(float(W[i, j]) for j in sources))
            rounds.append(Round(sources, out_neighbours(adj)[i], row))
        return rounds

    def facts(self, graphs: Sequence[Adjacency]) -> dict[str, float]:
        """What a run logs about the graph: ``lambda2`` (second largest eigenvalue modulus of
        the mixing matrix; of one period's product for a time-varying graph),
        ``spectral_gap``, ``degree`` (the largest) and, for ``"async"``, ``active``."""
        # On the CPU whatever the default device (a timing-only run's is meta): it is read.
        product = torch.eye(len(graphs[0]), dtype=torch.float64, device="cpu")
        for adj in graphs:  # one period of a time-varying graph mixes as this product
            product = self.mixing_matrix(adj) @ product
        lambda2 = second_eigenvalue(product)
        values = {
            "lambda2": lambda2,
            "spectral_gap": 1.0 - lambda2,
            "degree": float(max(degrees(graphs[0]).values(), default=0)),
        }
        if self.mode == "async":
            values["active"] = float(len(bipartition(graphs[0])[0]))
        return values


def _over_indices(
    host_graph: Mapping[int, Iterable[int]] | None, workers: Sequence[int]
) -> dict[int, list[int]] | None:
    """``host_graph`` (over ranks) over worker indices, or None."""
    if host_graph is None:
        return None
    index = {rank: i for i, rank in enumerate(workers)}
    return {
        index[r]: [index[s] for s in peers if s in index]
        for r, peers in host_graph.items()
        if r in index
    }
