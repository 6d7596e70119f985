"""Least squares with a known optimum, for checking strategies against convergence theory.

The objective is ``f(x) = 0.5 * ||A x - b||^2 / N``. ``A`` is built from random orthogonal
factors so the Hessian ``A^T A / N`` has eigenvalues spread geometrically from ``1 / kappa`` to
``1``: smoothness ``L = 1`` and strong convexity ``mu = 1 / kappa`` up to float32 rounding (the
exact values are exposed). ``evaluate`` reports the full training objective, because theory is
about that finite sum; there is no held-out set.
"""

from __future__ import annotations

import functools
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from options.declare import OptionError, declared
from workloads.base import Workload
from workloads.fields import Alpha, BatchSize, Count, Partition

__all__ = ["Quadratic", "half_mse", "quadratic"]


def half_mse(output: Tensor, target: Tensor) -> Tensor:
    """``0.5 * mean((output - target)^2)``: the least-squares loss, mean over the batch."""
    return 0.5 * (output.reshape(target.shape) - target).square().mean()


class Quadratic(Workload):
    """A ``Workload`` that also knows its optimum.

    Attributes
    ----------
    A, b : Tensor
        The float32 problem data (also ``x_train``, ``y_train``).
    optimum : Tensor
        The minimiser ``x*``, float64, shape ``(dim,)``.
    optimal_loss : float
        ``f(x*)``, computed in float64.
    smoothness, strong_convexity : float
        Largest and smallest eigenvalue of the Hessian ``A^T A / N`` (``L`` and ``mu``).
    """

    A: Tensor
    b: Tensor
    optimum: Tensor
    optimal_loss: float
    smoothness: float
    strong_convexity: float

    def objective(self, x: Tensor) -> float:
        """``f(x)`` in float64 for a parameter vector ``x`` of shape ``(dim,)``."""
        residual = self.A.double() @ x.detach().double().reshape(-1) - self.b.double()
        return 0.5 * float(residual.square().mean())

    def suboptimality(self, model: nn.Module) -> float:
        """``f(w) - f(x*)`` in float64 for the model's weight vector ``w``."""
        return self.objective(nn.utils.parameters_to_vector(model.parameters())) - self.optimal_loss


@declared
def quadratic(
    *,
    n_samples: Count = 256,
    dim: Count = 10,
    condition_number: Annotated[float, Field(ge=1, description="L / mu")] = 10.0,
    noise: Annotated[float, Field(ge=0)] = 0.1,
    batch_size: BatchSize = 32,
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> Quadratic:
    """Least squares ``0.5 * ||A x - b||^2 / N`` with a closed-form optimum.

    Parameters
    ----------
    n_samples, dim : int
        Rows and columns of ``A``; ``n_samples >= dim`` so the optimum is unique.
    condition_number : float
        ``L / mu`` of the Hessian (>= 1).
    noise : float
        Standard deviation of the label noise; 0 makes ``optimal_loss`` zero.
    batch_size, partition, alpha
        As for ``Workload``; only ``partition="iid"`` applies to regression.
    data_seed : int
        Seed of the problem data (model seeds are separate: ``make_model(seed)``).

    Examples
    --------
    >>> q = quadratic(n_samples=100, dim=5, condition_number=4.0)
    >>> round(q.smoothness, 3), round(q.strong_convexity, 3)
    (1.0, 0.25)
    >>> q.objective(q.optimum) == q.optimal_loss
    True
    >>> model = q.make_model(seed=0)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(q.optimum)
    >>> q.suboptimality(model) < 1e-9
    True
    """
    if n_samples < dim:
        raise OptionError(
            f"n_samples={n_samples} must be >= dim={dim}; raise n_samples", "n_samples"
        )
    rng = np.random.default_rng(data_seed)
    u, _ = np.linalg.qr(rng.standard_normal((n_samples, dim)))
    v, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    eigenvalues = np.logspace(0.0, -np.log10(condition_number), dim)
    a64 = (u * np.sqrt(n_samples * eigenvalues)) @ v.T
    b64 = a64 @ rng.standard_normal(dim) + noise * rng.standard_normal(n_samples)
    a, b = torch.from_numpy(a64).float(), torch.from_numpy(b64).float()

    w = Quadratic(
        "quadratic",
        functools.partial(nn.Linear, dim, 1, bias=False),  # picklable, unlike a lambda
        (a, b),
        (a, b),
        half_mse,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
        accuracy=False,
    )
    # The optimum and curvature are those of the float32 data the workers actually see.
    a_d, b_d = a.double(), b.double()
    w.A, w.b = a, b
    w.optimum = torch.linalg.lstsq(a_d, b_d.unsqueeze(-1)).solution.squeeze(-1)
    w.optimal_loss = w.objective(w.optimum)
    hessian_eigs = torch.linalg.eigvalsh(a_d.T @ a_d / n_samples)
    w.smoothness, w.strong_convexity = float(hessian_eigs[-1]), float(hessian_eigs[0])
    return w
