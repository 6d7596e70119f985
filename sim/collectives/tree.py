"""Tree algorithms: binomial trees (MPI style) and NCCL's double binary tree.

Binomial trees on ranks relative to the root (``v = (i - root) mod n``) take
``ceil(log2 n)`` rounds: in broadcast round ``k`` every ``v < 2**k`` sends the whole buffer to
``v + 2**k``; reduce mirrors it; gather/scatter move only the blocks of the subtree below.

The all-reduce is a double binary tree: two in-order binary trees in which (almost) every rank
is a leaf of one and an inner node of the other; each carries half the buffer, reduced up the
tree then broadcast down, pipelined in chunks (:func:`sim.collectives.ring.pipeline_chunks`).
The two trees run as two concurrent channels.
"""

from __future__ import annotations

import math

import numpy as np

from sim.collectives.ring import pipeline_chunks
from sim.collectives.schedule import Schedule, Step

__all__ = ["all_reduce", "binary_tree", "broadcast", "gather", "reduce", "scatter"]


def _rounds(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def broadcast(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Binomial broadcast: ``ceil(log2 n)`` rounds of the whole buffer.

    >>> s = broadcast(5, 1.0)
    >>> s.n_steps, [s.step(k).dst.tolist() for k in range(s.n_steps)]
    (3, [[1], [2, 3], [4]])
    """
    v = np.arange(n)

    def step(k: int) -> Step:
        live = v[(v < 2**k) & (v + 2**k < n)]
        return Step(n, (live + root) % n, (live + 2**k + root) % n, nbytes)

    return Schedule(n, _rounds(n), step)


def _up(n: int, root: int, size) -> Schedule:
    v = np.arange(n)

    def step(k: int) -> Step:
        live = v[v % 2 ** (k + 1) == 2**k]
        return Step(n, (live + root) % n, (live - 2**k + root) % n, size(live, k))

    return Schedule(n, _rounds(n), step)


def reduce(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Binomial reduce to ``root`` (broadcast reversed).

    >>> [reduce(4, 1.0).step(k).src.tolist() for k in range(2)]
    [[1, 3], [2]]
    """
    return _up(n, root, lambda live, k: nbytes)


def gather(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Binomial gather of ``nbytes / n`` per rank to ``root``; subtrees forward their blocks.

    >>> gather(4, 8.0).step(1).nbytes.tolist()
    [4.0]
    """
    return _up(n, root, lambda live, k: np.minimum(2**k, n - live) * (nbytes / n))


def scatter(n: int, nbytes: float, root: int = 0) -> Schedule:
    """Binomial scatter of ``nbytes / n`` per rank from ``root`` (gather reversed)."""
    rounds = _rounds(n)
    v = np.arange(n)

    def step(k: int) -> Step:
        bit = 2 ** (rounds - 1 - k)
        live = v[(v % (2 * bit) == 0) & (v + bit < n)]
        blocks = np.minimum(bit, n - live - bit)
        return Step(n, (live + root) % n, (live + bit + root) % n, blocks * (nbytes / n))

    return Schedule(n, rounds, step)


def binary_tree(n: int) -> np.ndarray:
    """Parent of each position in the in-order binary tree over ``0..n-1`` (-1 at the root).

    Position ``p`` (1-based ``p+1``) has as many trailing zero bits as its height, so odd
    1-based positions are the leaves.

    >>> binary_tree(5).tolist()
    [1, 3, 1, -1, 3]
    """
    parent = np.full(n, -1, dtype=np.int64)
    stack = [(1, n, 0)]
    while stack:
        lo, hi, up = stack.pop()
        if lo > hi:
            continue
        bit = 1 << (hi.bit_length() - 1)
        while (hi // bit) * bit < lo:
            bit >>= 1
        top = (hi // bit) * bit
        parent[top - 1] = up - 1
        stack += [(lo, top - 1, top), (top + 1, hi, top)]
    return parent


def _tree_all_reduce(n: int, nbytes: float, rank_of: np.ndarray, chunks: int | None) -> Schedule:
    parent = binary_tree(n)
    depth = np.zeros(n, dtype=np.int64)
    order = []  # positions sorted root first, so parents get their depth before children
    frontier = [int(np.flatnonzero(parent < 0)[0])]
    children: list[list[int]] = [[] for _ in range(n)]
    for p, q in enumerate(parent.tolist()):
        if q >= 0:
            children[q].append(p)
    while frontier:
        order += frontier
        frontier = [c for p in frontier for c in children[p]]
    for p in order[1:]:
        depth[p] = depth[parent[p]] + 1
    height = np.zeros(n, dtype=np.int64)
    for p in reversed(order[1:]):
        height[parent[p]] = max(height[parent[p]], height[p] + 1)
    top = int(height.max())
    chunks = pipeline_chunks(nbytes) if chunks is None else chunks
    size = nbytes / chunks
    kids = np.flatnonzero(parent >= 0)
    up_h, up_to = height[kids], parent[kids]
    down_d = depth[up_to]

    def step(s: int) -> Step:
        up = kids[(s - up_h >= 0) & (s - up_h < chunks)]
        c = s - top - down_d
        down = kids[(c >= 0) & (c < chunks)]
        src = np.concatenate((up, parent[down]))
        dst = np.concatenate((parent[up], down))
        return Step(n, rank_of[src], rank_of[dst], size)

    return Schedule(n, 2 * top + chunks - 1 if n > 1 else 0, step)


def all_reduce(
    n: int, nbytes: float, channels: int = 2, chunks: int | None = None
) -> list[Schedule]:
    """Double binary tree all-reduce: ``channels`` channels of ``nbytes / channels`` each.

    The second tree mirrors the first (rank ``n-1-p``) when ``n`` is even and shifts it by one
    otherwise, as NCCL does, so leaves of one tree are inner nodes of the other. Channel ``c``
    runs tree ``c mod 2``: NCCL's duplicated channels carry the two trees, and a call on one
    channel runs the first tree alone. Each channel is pipelined in ``chunks`` pieces
    (default :func:`~sim.collectives.ring.pipeline_chunks` of its share).

    >>> [c.n_steps for c in all_reduce(4, 8.0)]
    [4, 4]
    >>> [c.step(0).nbytes.tolist() for c in all_reduce(4, 8.0, channels=1)]
    [[8.0, 8.0]]
    """
    pos = np.arange(n)
    second = n - 1 - pos if n % 2 == 0 else (pos + 1) % n
    trees = (pos, second)
    size = nbytes / channels
    return [_tree_all_reduce(n, size, trees[c % 2], chunks) for c in range(channels)]
