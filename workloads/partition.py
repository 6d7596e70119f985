"""Splitting a training set across workers: the maths as pure functions.

Every function takes a seeded ``numpy.random.Generator`` and returns one sorted ``int64`` index
array per worker. Shards are disjoint; ``iid`` and ``by_class`` cover every sample exactly once
and ``dirichlet`` does too (its repair step moves samples, it never duplicates or drops them).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PARTITIONS", "by_class", "dirichlet", "iid", "label_distribution"]

#: Names accepted by ``Workload(partition=...)``.
PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "by_class")


def iid(n_samples: int, n_workers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then cut into ``n_workers`` shards whose sizes differ by at most one.

    Examples
    --------
    >>> shards = iid(10, 3, np.random.default_rng(0))
    >>> [len(s) for s in shards]
    [4, 3, 3]
    >>> sorted(np.concatenate(shards).tolist()) == list(range(10))
    True
    """
    _check_workers(n_samples, n_workers)
    return [np.sort(s) for s in np.array_split(rng.permutation(n_samples), n_workers)]


def by_class(labels: np.ndarray, n_workers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label and give each worker a contiguous run of classes.

    The label-sorted index list is cut into ``n_workers`` near-equal pieces, so with 10 classes
    and 5 workers each worker holds two whole classes, and with 20 workers each class is split
    between two workers. Samples are shuffled within a class first, so which samples of a split
    class each worker gets depends on the seed.

    Examples
    --------
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> [labels[s].tolist() for s in by_class(labels, 3, np.random.default_rng(0))]
    [[0, 0], [1, 1], [2, 2]]
    """
    labels = np.asarray(labels)
    _check_workers(len(labels), n_workers)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    return [np.sort(s) for s in np.array_split(order, n_workers)]


def dirichlet(
    labels: np.ndarray,
    n_workers: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Non-iid label skew: each class is split across workers by a ``Dir(alpha)`` draw.

    This is the scheme of Hsu et al. (2019), "Measuring the effects of non-identical data
    distribution": small ``alpha`` gives each worker a few dominant classes, large ``alpha``
    approaches ``iid``. A single draw can leave a worker with fewer than ``min_size`` samples
    (often, for small alpha and many workers), and rejection-resampling then rarely terminates,
    so the draw is repaired instead: each short shard is topped up with random samples taken
    from the currently largest shard. The repair is seeded like the draw, moves as few samples as
    needed, and mostly preserves the skew (donors are the big, dominant-class shards).

    Examples
    --------
    >>> labels = np.repeat(np.arange(4), 25)
    >>> shards = dirichlet(labels, 4, 0.1, np.random.default_rng(0), min_size=5)
    >>> min(len(s) for s in shards) >= 5, sum(len(s) for s in shards)
    (True, 100)
    """
    labels = np.asarray(labels)
    _check_workers(len(labels), n_workers)
    if not alpha > 0:
        raise ValueError(f"alpha={alpha} must be > 0; use e.g. alpha=0.5 (smaller = more skewed)")
    if min_size * n_workers > len(labels):
        raise ValueError(
            f"min_size={min_size} x n_workers={n_workers} exceeds {len(labels)} samples; "
            "lower min_size or n_workers"
        )
    parts: list[list[np.ndarray]] = [[] for _ in range(n_workers)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        share = rng.dirichlet(np.full(n_workers, float(alpha)))
        cuts = (np.cumsum(share)[:-1] * len(members)).astype(np.int64)
        for worker, piece in enumerate(np.split(members, cuts)):
            parts[worker].append(piece)
    shards = [np.concatenate(p) for p in parts]
    _top_up(shards, min_size, rng)
    return [np.sort(s) for s in shards]


def _top_up(shards: list[np.ndarray], min_size: int, rng: np.random.Generator) -> None:
    """Move random samples from the largest shard into each shard below ``min_size``."""
    while True:
        sizes = np.array([len(s) for s in shards])
        short = int(np.argmin(sizes))
        need = min_size - sizes[short]
        if need <= 0:
            return
        donor = int(np.argmax(sizes))
        take = min(need, sizes[donor] - min_size)  # > 0 because sum(sizes) >= n * min_size
        moved = rng.permutation(sizes[donor])
        shards[short] = np.concatenate([shards[short], shards[donor][moved[:take]]])
        shards[donor] = shards[donor][moved[take:]]


def label_distribution(labels: np.ndarray, shards: list[np.ndarray], n_classes: int) -> np.ndarray:
    """Per-worker class frequencies, shape ``(n_workers, n_classes)``; rows sum to 1.

    Useful for measuring skew, e.g. the mean total-variation distance of the rows from the
    global class distribution.

    Examples
    --------
    >>> labels = np.array([0, 0, 1, 1])
    >>> label_distribution(labels, [np.array([0, 1]), np.array([2, 3])], 2)
    array([[1., 0.],
           [0., 1.]])
    """
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[s], minlength=n_classes) for s in shards])
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def _check_workers(n_samples: int, n_workers: int) -> None:
    if not 1 <= n_workers <= n_samples:
        raise ValueError(
            f"n_workers={n_workers} must be in 1..{n_samples} (the training-set size); "
            "use fewer workers or a larger dataset"
        )
