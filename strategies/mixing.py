"""Gossip mixing weights: with what weights neighbours average.

A mixing matrix ``W`` (float64) over a graph of :mod:`strategies.graphs` has ``W[i, j] > 0``
only for ``j in adj[i]`` or ``j == i``; gossip replaces ``x_i`` by ``sum_j W[i, j] x_j``.
Doubly stochastic weights keep the mean of the replicas unchanged, and the distance to
consensus shrinks by a factor of at most ``second_eigenvalue(W) ** 2`` per mixing step (for
symmetric ``W``). :func:`mix` computes the weighted sum in one fixed order so both backends
produce bitwise equal parameters.

This module is pure maths on torch tensors: it imports neither networkx nor a backend.

Examples
--------
>>> from strategies.graphs import ring
>>> W = metropolis_hastings(ring(4))
>>> check_doubly_stochastic(W)
>>> round(second_eigenvalue(W), 6)
0.333333
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from strategies.graphs import degrees, is_symmetric, out_neighbours

__all__ = [
    "check_doubly_stochastic",
    "metropolis_hastings",
    "mix",
    "second_eigenvalue",
    "uniform",
]


# -- weights --------------------------------------------------------------------------------
def _regular_degree(adj: Mapping[int, Sequence[int]]) -> int | None:
    """``d`` if every node has ``d`` in-neighbours and ``d`` out-neighbours, else None."""
    ins, outs = set(degrees(adj).values()), set(degrees(out_neighbours(adj)).values())
    return next(iter(ins)) if len(ins) == 1 and ins == outs else None


def _weights(adj: Mapping[int, Sequence[int]], weight: Any) -> torch.Tensor:
    n = len(adj)
    # On the CPU whatever the default device (a timing-only run's is meta): its numbers are read.
    W = torch.zeros(n, n, dtype=torch.float64, device="cpu")
    for i, nbrs in adj.items():
        for j in nbrs:
            W[i, j] = weight(i, j)
        # The diagonal takes the rest, so each row sums to one exactly as the row is built.
        W[i, i] = 1.0 - float(W[i].sum())
    return W


def metropolis_hastings(adj: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """Metropolis-Hastings weights: ``W[i, j] = 1 / (1 + max(d_i, d_j))`` for neighbours,
    the rest of each row on the diagonal. Symmetric and doubly stochastic on any undirected
    graph, with no global knowledge but the neighbours' degrees.

    A directed graph is accepted when every node has ``d`` in- and ``d`` out-neighbours
    (the one-peer exponential graph): the rule then gives ``1 / (1 + d)``, doubly stochastic.

    Examples
    --------
    >>> from strategies.graphs import from_edges
    >>> metropolis_hastings(from_edges([(0, 1), (1, 2)]))
    tensor([[0.6667, 0.3333, 0.0000],
            [0.3333, 0.3333, 0.3333],
            [0.0000, 0.3333, 0.6667]], dtype=torch.float64)
    """
    if is_symmetric(adj):
        deg = degrees(adj)
        return _weights(adj, lambda i, j: 1.0 / (1 + max(deg[i], deg[j])))
    d = _regular_degree(adj)
    if d is None:
        raise ValueError(
            "adjacency is directed and not regular; Metropolis-Hastings weights need an "
            "undirected graph (or one where every node has d in- and d out-neighbours)"
        )
    return _weights(adj, lambda i, j: 1.0 / (1 + d))


def uniform(adj: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """Equal weights ``1 / (1 + d)`` for oneself and each of ``d`` neighbours, for a regular
    graph (every node with ``d`` in- and ``d`` out-neighbours), where they are doubly
    stochastic.

    Examples
    --------
    >>> from strategies.graphs import from_edges, ring
    >>> uniform(ring(3))[0]
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    >>> uniform(from_edges([(0, 1), (1, 2)]))
    Traceback (most recent call last):
    ...
    ValueError: weights='uniform' needs a regular graph (every worker with the same number of neighbours); degrees here are [1, 2]; use weights='metropolis'
    """
    d = _regular_degree(adj)
    if d is None:
        found = sorted(set(degrees(adj).values()))
        raise ValueError(
            "weights='uniform' needs a regular graph (every worker with the same number of "
            f"neighbours); degrees here are {found}; use weights='metropolis'"
        )
    return _weights(adj, lambda i, j: 1.0 / (1 + d))


def check_doubly_stochastic(W: torch.Tensor, atol: float | None = None) -> None:
    """Raise ``ValueError`` unless ``W`` is square, non-negative, and its rows and columns
    each sum to one (within ``atol``: by default 1e-9 for float64, 1e-5 for other dtypes,
    whose own rounding is larger).

    Examples
    --------
    >>> check_doubly_stochastic(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    >>> check_doubly_stochastic(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    Traceback (most recent call last):
    ...
    ValueError: W is not doubly stochastic: column 0 sums to 1.5; use metropolis_hastings(adjacency) for weights that are
    """
    if W.dim() != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W has shape {tuple(W.shape)}; a mixing matrix is square")
    if atol is None:
        atol = 1e-9 if W.dtype == torch.float64 else 1e-5
    W = W.double()
    if (W < -atol).any():
        i, j = (W < -atol).nonzero()[0].tolist()
        raise ValueError(f"W is not doubly stochastic: W[{i}, {j}] = {float(W[i, j]):g} < 0")
    for axis, what in ((1, "row"), (0, "column")):
        sums = W.sum(dim=axis)
        bad = ((sums - 1).abs() > atol).nonzero()
        if len(bad):
            k = int(bad[0])
            raise ValueError(
                f"W is not doubly stochastic: {what} {k} sums to {float(sums[k]):.6g}; use "
                "metropolis_hastings(adjacency) for weights that are"
            )


def second_eigenvalue(W: torch.Tensor) -> float:
    """The largest modulus of ``W``'s eigenvalues other than the consensus eigenvalue 1
    (one copy of the eigenvalue closest to 1 is set aside). Gossip with ``W`` contracts the
    distance to consensus by ``second_eigenvalue(W) ** 2`` per step at worst (symmetric
    ``W``); ``1 - second_eigenvalue(W)`` is the spectral gap.

    Examples
    --------
    >>> second_eigenvalue(torch.full((4, 4), 0.25)) < 1e-12  # complete averaging
    True
    >>> second_eigenvalue(torch.eye(2))  # no mixing
    1.0
    """
    if W.shape[0] < 2:
        return 0.0
    values = torch.linalg.eigvals(W.double())
    consensus = int((values - 1).abs().argmin())
    rest = torch.cat([values[:consensus], values[consensus + 1 :]])
    return float(rest.abs().max())


# -- mixing ---------------------------------------------------------------------------------
def mix(
    own: torch.Tensor, neighbours: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """``weights[0] * own + weights[1] * neighbours[0] + ...``, added strictly in that order
    (each product rounded, then added), so the result is the same bits wherever it runs.

    Parameters
    ----------
    own
        This worker's parameters.
    neighbours
        The neighbours' parameters, in a fixed order (gossip uses ascending index).
    weights
        One weight for ``own``, then one per neighbour: a row of the mixing matrix.

    Examples
    --------
    >>> mix(torch.tensor([3.0]), [torch.tensor([0.0]), torch.tensor([6.0])], [1/3, 1/3, 1/3])
    tensor([3.])
    >>> mix(torch.tensor([1.0]), [torch.tensor([2.0])], [1.0])
    Traceback (most recent call last):
    ...
    ValueError: weights has 1 entries for 2 tensors; give one weight for own, then one per neighbour
    """
    if len(weights) != len(neighbours) + 1:
        raise ValueError(
            f"weights has {len(weights)} entries for {len(neighbours) + 1} tensors; give one "
            "weight for own, then one per neighbour"
        )
    out = own * float(weights[0])
    for tensor, weight in zip(neighbours, weights[1:]):
        # Multiply then add as two operations: a fused multiply-add would round differently
        # on builds or code paths that have it.
        out += tensor * float(weight)
    return out
