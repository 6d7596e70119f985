"""``random_regular``: hosts wired directly as a random d-regular graph (an expander)."""

from __future__ import annotations

import networkx as nx

from topologies.limits import check_size, estimate
from topologies.model import (
    DEFAULT_BANDWIDTH,
    DEFAULT_LATENCY,
    HOST,
    TopologyError,
    new_topology,
    require_int,
    validate,
)

__all__ = ["random_regular"]


def random_regular(
    n: int,
    degree: int,
    seed: int = 0,
    bandwidth: str | float = DEFAULT_BANDWIDTH,
    latency: str | float = DEFAULT_LATENCY,
) -> nx.Graph:
    """Return ``n`` hosts where each links directly to ``degree`` others, chosen at random.

    The same ``seed`` always gives the same graph (networkx's ``random_regular_graph``). Hosts
    are the ints ``0..n-1`` and rank ``i`` is host ``i``.

    Parameters
    ----------
    n : int
        Number of hosts, >= 1.
    degree : int
        Links per host: ``0 <= degree < n`` and ``n * degree`` even.
    seed : int
        Random seed.
    bandwidth, latency : str or float
        Every link's capacity (bytes/s or a unit string) and latency (seconds or a unit string).

    Raises
    ------
    TopologyError
        If no such graph exists, or the drawn graph is disconnected (try another seed).

    Examples
    --------
    >>> g = random_regular(8, 3, seed=1)
    >>> g.number_of_edges(), set(dict(g.degree).values())
    (12, {3})
    >>> nx.utils.graphs_equal(g, random_regular(8, 3, seed=1))
    True
    """
    n = require_int("n", n, 1)
    degree = require_int("degree", degree, 0)
    seed = require_int("seed", seed, 0)
    check_size("random_regular", {"n": n, "degree": degree}, estimate(n, 0, n * degree // 2))
    if degree >= n or (n * degree) % 2:
        raise TopologyError(
            f"no {degree}-regular graph on n={n} hosts: degree must be < n and n * degree even",
            "degree",
        )
    drawn = nx.random_regular_graph(degree, n, seed=seed)
    if not nx.is_connected(drawn):
        raise TopologyError(
            f"random_regular(n={n}, degree={degree}, seed={seed}) is "
            "disconnected; try another seed or a larger degree",
            "seed",
        )
    g = new_topology(
        "random_regular", n=n, degree=degree, seed=seed, bandwidth=bandwidth, latency=latency
    )
    for i in range(n):
        g.add_node(i, kind=HOST, rank=i)
    for u, v in sorted(tuple(sorted(e)) for e in drawn.edges):
        g.add_edge(u, v, bandwidth=g.graph["bandwidth"], latency=g.graph["latency"])
    return validate(g)
