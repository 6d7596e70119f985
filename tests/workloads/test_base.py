"""The Workload contract that sim/ and real/ rely on, checked on small synthetic data."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from workloads import Workload

N, D, C = 120, 5, 3


def make(batch_size=8, partition="iid", alpha=0.5, **kwargs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    y = torch.arange(N) % C
    return Workload(
        "toy",
        lambda: nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, C)),
        (x, y),
        (x[:30], y[:30]),
        nn.functional.cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        **kwargs,
    )


def take(stream, k):
    return list(itertools.islice(stream, k))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "by_class"])
def test_same_arguments_identical_stream_other_rank_differs(scheme):
    w = make(partition=scheme)
    a, b = take(w.batches(1, 4, seed=7), 20), take(w.batches(1, 4, seed=7), 20)
    for (xa, ya), (xb, yb) in zip(a, b):
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    other = take(w.batches(2, 4, seed=7), 20)
    assert not all(torch.equal(xa, xo) for (xa, _), (xo, _) in zip(a, other))


def test_stream_is_rebuilt_identically_by_a_fresh_workload():
    a, b = take(make().batches(0, 3, 1), 12), take(make().batches(0, 3, 1), 12)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))


def test_batches_come_from_own_shard_fixed_size_reshuffled_per_epoch():
    w = make(batch_size=8)
    shard = w.partition(3, seed=0)[2]  # 40 samples -> 5 full batches per epoch
    rows = {tuple(w.x_train[i].tolist()): int(i) for i in shard}
    epochs = []
    for epoch in range(3):
        batches = take(w.batches(2, 3, seed=0), 5 * (epoch + 1))[5 * epoch :]
        assert all(x.shape == (8, D) and y.shape == (8,) for x, y in batches)
        idx = [rows[tuple(r.tolist())] for x, _ in batches for r in x]
        assert sorted(idx) == sorted(shard.tolist())  # 40 = 5 * 8: nothing dropped
        epochs.append(idx)
    assert epochs[0] != epochs[1] != epochs[2]


def test_drop_last_keeps_every_batch_full():
    w = make(batch_size=7)  # shards of 40: 5 full batches, 5 samples dropped per epoch
    assert all(len(x) == 7 for x, _ in take(w.batches(0, 3, 0), 30))


def test_make_model_deterministic_and_leaves_global_rng_alone():
    w = make()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = w.make_model(1), w.make_model(1), w.make_model(2)
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_evaluate_keys_and_restores_mode():
    w = make()
    model = w.make_model(0)
    first = w.evaluate(model)  # dropout off in eval: repeated calls agree
    assert set(first) == {"loss", "accuracy"} and 0 <= first["accuracy"] <= 1
    assert model.training
    assert w.evaluate(model) == first
    model.eval()
    w.evaluate(model)
    assert not model.training


def test_evaluate_regression_has_no_accuracy():
    x = torch.randn(20, 2)
    w = Workload(
        "reg",
        lambda: nn.Linear(2, 1),
        (x, x[:, :1]),
        (x, x[:, :1]),
        nn.functional.mse_loss,
        batch_size=4,
    )
    assert set(w.evaluate(w.make_model(0))) == {"loss"}


def test_flops_of_a_linear_model_match_closed_form():
    # Forward 2*i*o*b; backward computes only the weight gradient (inputs need none), so the
    # step is 2x the forward, not 3x. With inputs requiring grad it would be 3x.
    i, o, b = 12, 4, 16
    x, y = torch.randn(64, i), torch.randint(0, o, (64,))
    w = Workload(
        "lin", lambda: nn.Linear(i, o), (x, y), (x, y), nn.functional.cross_entropy, batch_size=b
    )
    assert w.flops_per_step() == 2 * (2 * i * o * b)
    assert w.flops_per_step() is w.flops_per_step()  # cached


@pytest.mark.parametrize("name", ["quadratic", "logistic_regression", "mlp_digits", "cnn_digits"])
def test_flops_counted_on_meta_equal_a_real_replicas(name):
    """flops_per_step now counts on the meta device; every shipped workload's number is the
    one a real replica gave (regression: the old path built the model on the CPU)."""
    import workloads
    from workloads.base import count_flops

    w = workloads.get(name)
    x, y = w.x_train[: w.batch_size], w.y_train[: w.batch_size]
    assert w.flops_per_step() == count_flops(w.loss, w.make_model(seed=0), x, y) > 0


def test_flops_fall_back_to_a_real_replica_when_a_model_cannot_run_on_meta():
    i, o, b = 12, 4, 16
    x, y = torch.randn(64, i), torch.randint(0, o, (64,))
    weight = torch.randn(o, i)  # made outside the factory: stays on the CPU under meta

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(weight.clone())

        def forward(self, x):
            return x @ self.w.t()

    w = Workload("fixed", Fixed, (x, y), (x, y), nn.functional.cross_entropy, batch_size=b)
    assert w.flops_per_step() == 2 * (2 * i * o * b)


def test_sizes_on_meta():
    i, o = 12, 4
    x, y = torch.randn(64, i), torch.randint(0, o, (64,))
    w = Workload(
        "lin", lambda: nn.Linear(i, o), (x, y), (x, y), nn.functional.cross_entropy, batch_size=8
    )
    assert all(p.is_meta for p in w.meta_model().parameters())
    assert (w.parameter_count(), w.parameter_bytes()) == (i * o + o, 4)
    # Saved for backward: the input (for the weight gradient), log_softmax's output, and
    # nll_loss's targets (int64) and total weight (one float).
    assert w.activation_bytes() == 8 * i * 4 + 8 * o * 4 + 8 * 8 + 4


def test_partition_is_cached_but_returns_copies():
    w = make()
    a = w.partition(4, 0)
    a[0][:] = -1
    assert (w.partition(4, 0)[0] >= 0).all()


def test_dirichlet_shards_hold_a_full_batch():
    w = make(batch_size=10, partition="dirichlet", alpha=0.01)
    assert min(len(s) for s in w.partition(12, seed=3)) >= 10
    assert all(len(x) == 10 for x, _ in take(w.batches(11, 12, 3), 5))


def test_data_dtypes_and_repr():
    w = make(partition="dirichlet", alpha=0.25)
    assert w.x_train.dtype == torch.float32 and w.y_train.dtype == torch.int64
    assert repr(w) == (
        "Workload(name='toy', batch_size=8, partition='dirichlet(alpha=0.25)', "
        "n_train=120, n_test=30)"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": -3}, "batch_size=-3"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"batch_size": 121}, "batch_size=121"),
        ({"partition": "random"}, "partition='random'"),
        ({"alpha": 0}, "alpha=0"),
        ({"alpha": -1.0}, "alpha=-1.0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        make(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_data_and_label_free_partition():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="train inputs") as err:
        Workload("bad", lambda: nn.Linear(2, 1), (x, x[:5]), (x, x), nn.functional.mse_loss)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="partition='by_class' needs 1-D integer") as err:
        Workload(
            "reg",
            lambda: nn.Linear(2, 1),
            (x, x),
            (x, x),
            nn.functional.mse_loss,
            batch_size=2,
            partition="by_class",
        )
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("rank", "n_workers", "match"),
    [
        (4, 4, "rank=4"),
        (-1, 4, "rank=-1"),
        (0, 0, "n_workers=0"),
        (0, 121, "n_workers=121"),
        (0, 20, "batch_size=8 exceeds rank 0's shard of 6"),
    ],
)
def test_bad_batches_arguments(rank, n_workers, match):
    with pytest.raises(ValueError, match=match) as err:
        make().batches(rank, n_workers, seed=0)
    assert "\n" not in str(err.value)


def test_partition_indices_are_int64_arrays():
    shards = make(partition="by_class").partition(5, 0)
    assert all(isinstance(s, np.ndarray) and s.dtype == np.int64 for s in shards)
