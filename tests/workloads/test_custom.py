"""Users' own models and data."""

import numpy as np
import pytest
import torch
from torch import nn

from workloads import Workload, custom


def test_numpy_classification_gets_house_dtypes_and_cross_entropy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    w = custom(lambda: nn.Linear(3, 2), (x, y), (x, y), batch_size=8, partition="by_class")
    assert isinstance(w, Workload)
    assert w.x_train.dtype == torch.float32 and w.y_train.dtype == torch.int64
    model = w.make_model(0)
    out = model(w.x_test)
    torch.testing.assert_close(w.loss(out, w.y_test), nn.functional.cross_entropy(out, w.y_test))
    assert set(w.evaluate(model)) == {"loss", "accuracy"}


def test_regression_defaults_to_mse_without_accuracy():
    x = torch.randn(40, 2, dtype=torch.float64)
    y = x.sum(dim=1, keepdim=True)
    w = custom(lambda: nn.Linear(2, 1), (x, y), (x, y), name="sum", batch_size=4)
    assert w.name == "sum" and w.y_train.dtype == torch.float32
    assert set(w.evaluate(w.make_model(0))) == {"loss"}


def test_user_loss_and_trains():
    x = torch.randn(64, 4)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0])).unsqueeze(1)
    w = custom(lambda: nn.Linear(4, 1), (x, y), (x, y), nn.functional.l1_loss, batch_size=16)
    model = w.make_model(0)
    before = w.evaluate(model)["loss"]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    stream = w.batches(0, 1, 0)
    for _ in range(200):
        xb, yb = next(stream)
        opt.zero_grad()
        w.loss(model(xb), yb).backward()
        opt.step()
    assert w.evaluate(model)["loss"] < 0.3 * before


def test_bad_arguments():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="batch_size=11") as err:
        custom(lambda: nn.Linear(2, 1), (x, x), (x, x), batch_size=11)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="test inputs") as err:
        custom(lambda: nn.Linear(2, 1), (x, x), (x[:0], x[:0]))
    assert "\n" not in str(err.value)
