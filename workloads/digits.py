"""The 8x8 handwritten digits (1797 images, 10 classes) with an MLP or a small conv net.

The data ship inside the package (``workloads/data/digits.npz``, 1500 train / 297 test, a fixed
stratified split; provenance and licence in ``workloads/data/README.md``) and load once per
process. Pixels are scaled from 0..16 to 0..1.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch
from torch import Tensor, nn

from options.declare import declared
from workloads.base import Workload
from workloads.fields import Alpha, BatchSize, Count, Partition

__all__ = ["cnn_digits", "load_digits", "mlp_digits"]


@functools.cache
def load_digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)``: float32 ``(n, 64)`` in [0, 1] and int64 labels.

    Cached: every workload in the process shares these tensors, so do not modify them in place.

    Examples
    --------
    >>> x_train, y_train, x_test, y_test = load_digits()
    >>> tuple(x_train.shape), tuple(x_test.shape), y_train.dtype, float(x_train.max())
    ((1500, 64), (297, 64), torch.int64, 1.0)
    """
    with (
        resources.files("workloads").joinpath("data/digits.npz").open("rb") as f,
        np.load(f) as data,
    ):
        arrays = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return (
        torch.from_numpy(arrays["x_train"].astype(np.float32) / 16.0),
        torch.from_numpy(arrays["y_train"].astype(np.int64)),
        torch.from_numpy(arrays["x_test"].astype(np.float32) / 16.0),
        torch.from_numpy(arrays["y_test"].astype(np.int64)),
    )


# Module-level factories (bound with functools.partial) keep workloads picklable, so a
# launcher can ship one to spawned processes.
def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _cnn(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * 4 * 4, 10),
    )


@declared
def mlp_digits(
    *,
    hidden: Count = 64,
    batch_size: BatchSize = 32,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
) -> Workload:
    """A one-hidden-layer ReLU MLP (64 -> ``hidden`` -> 10) on the flattened digits.

    Examples
    --------
    >>> w = mlp_digits(batch_size=16)
    >>> w.make_model(seed=0)(w.x_test[:2]).shape
    torch.Size([2, 10])
    """
    x_train, y_train, x_test, y_test = load_digits()
    return Workload(
        "mlp_digits",
        functools.partial(_mlp, hidden),
        (x_train, y_train),
        (x_test, y_test),
        nn.functional.cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
    )


@declared
def cnn_digits(
    *,
    channels: Count = 16,
    batch_size: BatchSize = 32,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
) -> Workload:
    """Two 3x3 convolutions, a 2x2 max-pool and a linear head on ``(1, 8, 8)`` images.

    Examples
    --------
    >>> w = cnn_digits()
    >>> tuple(w.x_train.shape)
    (1500, 1, 8, 8)
    >>> w.make_model(seed=0)(w.x_test[:2]).shape
    torch.Size([2, 10])
    """
    x_train, y_train, x_test, y_test = load_digits()

    return Workload(
        "cnn_digits",
        functools.partial(_cnn, channels),
        (x_train.view(-1, 1, 8, 8), y_train),
        (x_test.view(-1, 1, 8, 8), y_test),
        nn.functional.cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
    )
