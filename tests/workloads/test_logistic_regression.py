"""Synthetic multinomial logistic regression."""

import pytest
import torch

from workloads import logistic_regression


def test_seeded_data_and_dtypes():
    a, b = logistic_regression(data_seed=4), logistic_regression(data_seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, logistic_regression(data_seed=5).x_train)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert (len(a.x_train), len(a.x_test)) == (2000, 500)


def test_labels_use_every_class_roughly_evenly():
    w = logistic_regression(n_classes=4)
    counts = torch.bincount(w.y_train, minlength=4)
    assert counts.min() > 0.1 * len(w.y_train)


def test_trains_beyond_chance():
    w = logistic_regression(n_classes=3, separation=4.0)
    model = w.make_model(0)
    before = w.evaluate(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stream = w.batches(0, 1, 0)
    for _ in range(150):
        x, y = next(stream)
        opt.zero_grad()
        w.loss(model(x), y).backward()
        opt.step()
    after = w.evaluate(model)
    assert after["loss"] < 0.7 * before["loss"]
    assert after["accuracy"] > 0.6  # chance is 1/3


def test_flops_closed_form():
    # a single Linear on data that needs no gradient: forward + weight gradient
    assert logistic_regression(n_features=20, n_classes=2, batch_size=32).flops_per_step() == (
        2 * (2 * 20 * 2 * 32)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 0}, "n_train=0"),
        ({"n_features": 0}, "n_features=0"),
        ({"n_classes": 1}, "n_classes=1"),
        ({"partition": "dirichlet", "alpha": 0}, "alpha=0"),
        ({"batch_size": 5000}, "batch_size=5000"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        logistic_regression(**kwargs)
    assert "\n" not in str(err.value)
