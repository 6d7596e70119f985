"""Multinomial logistic regression on synthetic, seeded data: convex, but with real labels.

Inputs are standard normal; labels are *sampled* from ``softmax(x @ W_true * separation)``,
so the data truly follow the model and the Bayes accuracy is below one (tune ``separation``).
Having class labels, it supports every partition scheme.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from workloads.base import Workload

__all__ = ["logistic_regression"]


def logistic_regression(
    *,
    n_train: int = 2000,
    n_test: int = 500,
    n_features: int = 20,
    n_classes: int = 2,
    separation: float = 2.0,
    batch_size: int = 32,
    partition: str = "iid",
    alpha: float = 0.5,
    data_seed: int = 0,
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
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train={n_train} and n_test={n_test} must be >= 1; e.g. 2000 and 500")
    if n_features < 1:
        raise ValueError(f"n_features={n_features} must be >= 1; e.g. 20")
    if n_classes < 2:
        raise ValueError(f"n_classes={n_classes} must be >= 2; e.g. 2")
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
