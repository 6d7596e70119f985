"""Bring your own model and data: ``custom(...)`` wraps them as a ``Workload``.

Tensors or numpy arrays are accepted and normalised to the house dtypes (floating data to
float32, integer targets to int64) so they index and batch like the built-in workloads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from workloads.base import Workload

__all__ = ["custom"]


def _as_tensor(data: Any) -> Tensor:
    t = torch.as_tensor(data).cpu()
    return t.float() if torch.is_floating_point(t) else t.long()


def custom(
    model_factory: Callable[[], nn.Module],
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    name: str = "custom",
    batch_size: int = 32,
    partition: str = "iid",
    alpha: float = 0.5,
    accuracy: bool | None = None,
) -> Workload:
    """A ``Workload`` from your own model factory, data and loss.

    Parameters
    ----------
    model_factory : callable
        ``() -> nn.Module``, building the model with torch's global RNG (``make_model`` seeds
        and forks it, so initialisation is reproducible and the caller's RNG is untouched).
    train, test : (inputs, targets)
        Tensors or arrays; the first dimension indexes samples.
    loss_fn : callable, optional
        ``(output, target) -> mean loss``; default cross-entropy for integer targets, else
        mean squared error.
    name, batch_size, partition, alpha, accuracy
        As for ``Workload``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((64, 4))
    >>> y = (x[:, 0] > 0).astype(int)
    >>> w = custom(lambda: nn.Linear(4, 2), (x, y), (x, y), batch_size=8)
    >>> w.x_train.dtype, w.y_train.dtype, w.flops_per_step()
    (torch.float32, torch.int64, 256.0)
    """
    x_train, y_train = _as_tensor(train[0]), _as_tensor(train[1])
    x_test, y_test = _as_tensor(test[0]), _as_tensor(test[1])
    if loss_fn is None:
        is_float = torch.is_floating_point(y_train)
        loss_fn = nn.functional.mse_loss if is_float else nn.functional.cross_entropy
    return Workload(
        name,
        model_factory,
        (x_train, y_train),
        (x_test, y_test),
        loss_fn,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        accuracy=accuracy,
    )
