"""Multinomial logistic regression on synthetic, seeded data: convex, but with real labels.

Inputs are standard normal; labels are *sampled* from ``softmax(x @ W_true * separation)``,
so the data truly follow the model and the Bayes accuracy is below one (tune ``separation``).
Having class labels, it supports every partition scheme.
"""

from __future__ import annotations

import functools
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

from options.declare import declared
from workloads.base import Workload
from workloads.fields import Alpha, BatchSize, Count, Partition

__all__ = ["logistic_regression"]


@declared
def logistic_regression(
    *,
    n_train: Count = 2000,
    n_test: Count = 500,
    n_features: Count = 20,
    n_classes: Annotated[int, Field(ge=2)] = 2,
    separation: float = 2.0,
    batch_size: BatchSize = 32,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> Workload:
    """A linear softmax classifier (``nn.Linear``) trained with cross-entropy.

    Parameters
    ----------
    n_train, n_test : int
        Sizes of the train and held-out sets.
    n_features, n_classes : int
        Input dimension and number of classes (>= 2).
    separation : float
        Scale of the true logits; larger is easier (higher Bayes accuracy).
    batch_size, partition, alpha
        As for ``Workload``.
    data_seed : int
        Seed of the data (model seeds are separate: ``make_model(seed)``).

    Examples
    --------
    >>> w = logistic_regression(n_classes=3, partition="dirichlet", alpha=0.3)
    >>> w
    Workload(name='logistic_regression', batch_size=32, partition='dirichlet(alpha=0.3)', ...)
    >>> w.x_train.dtype, w.y_train.dtype, int(w.y_train.max())
    (torch.float32, torch.int64, 2)
    """
    rng = np.random.default_rng(data_seed)
    weights = rng.standard_normal((n_features, n_classes)) * separation / np.sqrt(n_features)
    x = rng.standard_normal((n_train + n_test, n_features))
    logits = x @ weights
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    # Inverse-CDF sampling: one uniform per row, no per-sample Python loop.
    y = (rng.random((len(x), 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    y = np.minimum(y, n_classes - 1)  # cumsum can end a hair below 1.0
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    return Workload(
        "logistic_regression",
        functools.partial(nn.Linear, n_features, n_classes),  # picklable, unlike a lambda
        (x_t[:n_train], y_t[:n_train]),
        (x_t[n_train:], y_t[n_train:]),
        nn.functional.cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
    )
