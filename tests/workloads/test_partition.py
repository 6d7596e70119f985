"""Partition maths: coverage, disjointness, determinism, and Dirichlet skew vs alpha."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads import partition

LABELS = np.repeat(np.arange(10), 50)


def _assert_disjoint_cover(shards, n):
    joined = np.concatenate(shards)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    assert all(len(s) > 0 for s in shards)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_iid_disjoint_cover_balanced(n, data):
    workers = data.draw(st.integers(1, n))
    shards = partition.iid(n, workers, np.random.default_rng(data.draw(st.integers(0, 9))))
    _assert_disjoint_cover(shards, n)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 5), min_size=1, max_size=120), data=st.data())
def test_by_class_disjoint_cover_contiguous(labels, data):
    labels = np.array(labels)
    workers = data.draw(st.integers(1, len(labels)))
    shards = partition.by_class(labels, workers, np.random.default_rng(0))
    _assert_disjoint_cover(shards, len(labels))
    # Contiguous classes: worker k's labels all lie at or above worker k-1's.
    for before, after in zip(shards, shards[1:]):
        assert labels[before].max() <= labels[after].min()


def test_by_class_whole_classes_when_workers_divide_classes():
    shards = partition.by_class(LABELS, 5, np.random.default_rng(0))
    assert [sorted(set(LABELS[s].tolist())) for s in shards] == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
    ]


@settings(max_examples=40, deadline=None)
@given(
    workers=st.integers(1, 40),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 1000),
    min_size=st.integers(1, 12),
)
def test_dirichlet_disjoint_cover_min_size(workers, alpha, seed, min_size):
    shards = partition.dirichlet(LABELS, workers, alpha, np.random.default_rng(seed), min_size)
    _assert_disjoint_cover(shards, len(LABELS))
    assert min(len(s) for s in shards) >= min_size


@pytest.mark.parametrize("fn", ["iid", "by_class", "dirichlet"])
def test_same_seed_same_shards_other_seed_differs(fn):
    def run(seed):
        rng = np.random.default_rng(seed)
        if fn == "iid":
            return partition.iid(len(LABELS), 7, rng)
        if fn == "by_class":
            return partition.by_class(LABELS, 7, rng)
        return partition.dirichlet(LABELS, 7, 0.5, rng, min_size=10)

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def _mean_tv_from_global(alpha, workers=8, seeds=range(6)):
    glob = np.bincount(LABELS) / len(LABELS)
    tv = []
    for seed in seeds:
        shards = partition.dirichlet(LABELS, workers, alpha, np.random.default_rng(seed), 10)
        dist = partition.label_distribution(LABELS, shards, 10)
        tv.append(0.5 * np.abs(dist - glob).sum(axis=1).mean())
    return float(np.mean(tv))


def test_dirichlet_skew_shrinks_as_alpha_grows():
    skews = [_mean_tv_from_global(a) for a in (0.05, 0.5, 5.0, 500.0)]
    assert skews == sorted(skews, reverse=True)
    assert skews[0] > 0.5  # a few dominant classes per worker
    assert skews[-1] < 0.1  # close to iid


def test_label_distribution_rows_sum_to_one():
    shards = partition.iid(len(LABELS), 4, np.random.default_rng(0))
    dist = partition.label_distribution(LABELS, shards, 10)
    assert dist.shape == (4, 10)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda rng: partition.iid(5, 0, rng), "n_workers=0"),
        (lambda rng: partition.iid(5, 6, rng), "n_workers=6"),
        (lambda rng: partition.by_class(LABELS, 501, rng), "n_workers=501"),
        (lambda rng: partition.dirichlet(LABELS, 4, 0.0, rng), "alpha=0.0"),
        (lambda rng: partition.dirichlet(LABELS, 4, float("nan"), rng), "alpha=nan"),
        (lambda rng: partition.dirichlet(LABELS, 4, 1.0, rng, min_size=200), "min_size=200"),
    ],
)
def test_bad_arguments_raise_one_line(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call(np.random.default_rng(0))
    assert "\n" not in str(err.value)
