"""Sums in gloo's order: the chunk rule and the vectorised sum against a plain reference."""

from __future__ import annotations

import itertools

import pytest
import torch

from strategies.aggregate import reduce_tensors
from strategies.reduction_order import gloo_chunks, gloo_order, reduce_in_order


def _reference(xs: list[torch.Tensor], chunks: list[tuple[int, int]]) -> torch.Tensor:
    """Element by element: the left fold of the contributions in the stated order."""
    n = len(xs)
    flat = [x.reshape(-1) for x in xs]
    out = torch.empty_like(flat[0])
    for c, (start, stop) in enumerate(chunks):
        order = [(c - 1 - k) % n for k in range(n)]  # chunk c starts at c-1, ends at c
        for i in range(start, stop):
            acc = flat[order[0]][i].clone()
            for k in order[1:]:
                acc = acc + flat[k][i]
            out[i] = acc
    return out.reshape(xs[0].shape)


def _spread(n: int, numel: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(numel, generator=g, dtype=torch.float64)
            * torch.exp2(torch.randint(-20, 20, (numel,), generator=g).double())
        ).to(dtype)
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    ("n", "numel", "dtype"),
    list(itertools.product([3, 4, 5, 6], [1, 7, 10, 13, 100], [torch.float32, torch.float64]))
    + [(3, 300_000, torch.float32)],
)
def test_the_sum_adds_each_chunk_in_the_stated_order(
    n: int, numel: int, dtype: torch.dtype
) -> None:
    xs = _spread(n, numel, dtype, seed=n * 1000 + numel)
    got = reduce_in_order(xs, "sum", "gloo")
    chunks = gloo_chunks(numel, n, xs[0].element_size())
    if numel > 1000:  # the reference is per element: check each chunk's ends and middle
        want = reduce_tensors(xs, "sum")
        for c, (start, stop) in enumerate(chunks):
            idx = torch.tensor([start, (start + stop) // 2, stop - 1])
            part = [x[idx] for x in xs]
            order = gloo_order(c, n)
            acc = part[order[0]].clone()
            for k in order[1:]:
                acc = acc + part[k]
            assert torch.equal(got[idx], acc)
        assert not torch.equal(got, want)  # and it is not rank order
        return
    assert torch.equal(got, _reference(xs, chunks))


def test_chunks_are_whole_segments_and_cover_the_buffer() -> None:
    # gloo: 2n segments of ceil(numel / 2n) elements, two per rank (the finding at 3 ranks).
    assert gloo_chunks(10, 3) == [(0, 4), (4, 8), (8, 10)]
    assert gloo_chunks(10, 4) == [(0, 4), (4, 8), (8, 10), (10, 10)]  # not tensor_split's
    assert gloo_chunks(1, 3) == [(0, 1), (1, 1), (1, 1)]
    # past 1 MiB: all-reduce evens out the segments, reduce keeps them at the limit
    assert gloo_chunks(1_200_000, 2) == [(0, 600_000), (600_000, 1_200_000)]
    assert gloo_chunks(1_200_000, 2, kind="reduce") == [(0, 786_432), (786_432, 1_200_000)]
    for numel, n in itertools.product([1, 5, 99, 4097], [2, 3, 5, 8]):
        chunks = gloo_chunks(numel, n)
        assert chunks[0][0] == 0 and chunks[-1][1] == numel
        assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))


def test_mean_is_the_ordered_sum_divided_and_other_rules_keep_rank_order() -> None:
    xs = [torch.tensor([1.0] * 10), torch.tensor([1e8] * 10), torch.tensor([-1e8] * 10)]
    third = torch.tensor(1.0) / 3
    assert torch.equal(
        reduce_in_order(xs, "mean", "gloo"), torch.cat([third.repeat(4), torch.zeros(6)])
    )
    assert torch.equal(reduce_in_order(xs, "sum", "commsim"), reduce_tensors(xs, "sum"))
    assert torch.equal(reduce_in_order(xs, "sum", "nccl"), torch.zeros(10))
    assert torch.equal(reduce_in_order(xs, "max", "gloo"), torch.full((10,), 1e8))
    shaped = [x.reshape(2, 5) for x in xs]
    assert reduce_in_order(shaped, "sum", "gloo").shape == (2, 5)


def test_bad_arguments_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="at least 2 ranks"):
        gloo_chunks(10, 1)
    with pytest.raises(ValueError, match="use all_reduce or reduce"):
        gloo_chunks(10, 3, kind="all_gather")
