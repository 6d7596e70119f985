"""The bundled digits data and the MLP / CNN workloads built on it."""

import hashlib
from importlib import resources

import numpy as np
import pytest
import torch

from workloads import cnn_digits, load_digits, mlp_digits

SHA256 = {  # from workloads/data/README.md
    "x_train": "c27a7f962708cae9edee7f95ef87fb6e339fd97063cadc5d8404f406a61043ab",
    "y_train": "aa596277834c208b4b3e8ee6663f7fafd3a18ab14e930d8172c6fc5f84414b35",
    "x_test": "4a5af014b67bc9c16d822c556f8fef8d6b41101cf8075dc5f82af40c6625a786",
    "y_test": "dd07fb3f90ba4f2a873c5420d541b50e73e0415e5d6cb460742344cb608508af",
}


def train(workload, steps, lr, seed=0):
    model = workload.make_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = workload.batches(0, 1, seed)
    for _ in range(steps):
        x, y = next(stream)
        opt.zero_grad()
        workload.loss(model(x), y).backward()
        opt.step()
    return model


def test_bundled_file_matches_provenance_note():
    path = resources.files("workloads").joinpath("data/digits.npz")
    with path.open("rb") as f, np.load(f) as data:
        for key, digest in SHA256.items():
            assert data[key].dtype == np.uint8
            assert hashlib.sha256(data[key].tobytes()).hexdigest() == digest
        assert data["x_train"].max() == 16
        assert len(data["x_train"]) + len(data["x_test"]) == 1797


def test_loaded_once_with_house_dtypes():
    assert load_digits() is load_digits()
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert (x_train.shape, x_test.shape) == ((1500, 64), (297, 64))
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) == 1.0
    assert set(y_test.tolist()) == set(range(10))
    assert mlp_digits().x_train.data_ptr() == cnn_digits().x_train.data_ptr()  # shared


def test_mlp_reaches_high_accuracy_quickly():
    w = mlp_digits(batch_size=32)
    model = train(w, steps=150, lr=1e-2)
    metrics = w.evaluate(model)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["accuracy"] > 0.85


def test_cnn_trains():
    w = cnn_digits(channels=8, batch_size=32)
    before = w.evaluate(w.make_model(0))
    after = w.evaluate(train(w, steps=100, lr=1e-2))
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.8


@pytest.mark.parametrize("build", [mlp_digits, cnn_digits])
def test_flops_positive_and_scale_with_batch(build):
    small, big = build(batch_size=8).flops_per_step(), build(batch_size=16).flops_per_step()
    assert small > 0
    assert big == 2 * small


def test_mlp_flops_closed_form():
    # first layer: fwd + weight grad (2 * 2*64*h*b); second: fwd + weight + input grad (3x).
    h, b = 64, 32
    assert mlp_digits(hidden=h, batch_size=b).flops_per_step() == 4 * 64 * h * b + 6 * h * 10 * b


@pytest.mark.parametrize("scheme", ["dirichlet", "by_class"])
def test_non_iid_partitions_work(scheme):
    w = mlp_digits(partition=scheme, alpha=0.1)
    shards = w.partition(16, seed=0)
    assert sum(len(s) for s in shards) == 1500
    x, y = next(w.batches(15, 16, seed=0))
    assert x.shape == (32, 64)


@pytest.mark.parametrize(
    ("build", "kwargs", "match"),
    [
        (mlp_digits, {"hidden": 0}, "hidden=0"),
        (cnn_digits, {"channels": 0}, "channels=0"),
        (mlp_digits, {"batch_size": 0}, "batch_size=0"),
        (cnn_digits, {"partition": "shards"}, "partition='shards'"),
        (mlp_digits, {"partition": "dirichlet", "alpha": -0.5}, "alpha=-0.5"),
    ],
)
def test_bad_arguments(build, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        build(**kwargs)
    assert "\n" not in str(err.value)


def test_too_many_workers_for_the_dataset():
    with pytest.raises(ValueError, match="n_workers=1501") as err:
        mlp_digits().partition(1501, seed=0)
    assert "\n" not in str(err.value)
