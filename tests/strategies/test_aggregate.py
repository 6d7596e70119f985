import pytest
import torch

from strategies.aggregate import reduce_tensors, shard_bounds, staleness_lr_scale


def test_reduce_sums_in_list_order_like_a_python_loop():
    tensors = [torch.randn(100, generator=torch.Generator().manual_seed(i)) for i in range(7)]
    expected = tensors[0].clone()
    for t in tensors[1:]:
        expected = expected + t
    assert torch.equal(reduce_tensors(tensors, "sum"), expected)
    assert torch.equal(reduce_tensors(tensors, "mean"), expected / 7)


def test_reduce_max_min_and_does_not_alias_inputs():
    a, b = torch.tensor([1.0, 5.0]), torch.tensor([3.0, 2.0])
    assert reduce_tensors([a, b], "max").tolist() == [3.0, 5.0]
    assert reduce_tensors([a, b], "min").tolist() == [1.0, 2.0]
    assert a.tolist() == [1.0, 5.0]


def test_reduce_errors_name_the_argument():
    with pytest.raises(ValueError, match="op='prod'"):
        reduce_tensors([torch.zeros(1)], "prod")
    with pytest.raises(ValueError, match="tensors is empty"):
        reduce_tensors([], "sum")


@pytest.mark.parametrize("numel,shards", [(10, 3), (7, 7), (100, 1), (1001, 8)])
def test_shard_bounds_match_tensor_split(numel, shards):
    pieces = torch.tensor_split(torch.arange(numel), shards)
    assert shard_bounds(numel, shards) == [(int(p[0]), int(p[-1]) + 1) for p in pieces]


def test_shard_bounds_errors():
    with pytest.raises(ValueError, match="shards=0"):
        shard_bounds(10, 0)
    with pytest.raises(ValueError, match="use fewer servers"):
        shard_bounds(3, 4)


def test_staleness_scale():
    assert [staleness_lr_scale(t) for t in (0, 1, 4)] == [1.0, 0.5, 0.2]
    with pytest.raises(ValueError, match="staleness=-1"):
        staleness_lr_scale(-1)
