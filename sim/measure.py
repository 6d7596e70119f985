"""Timing the workload here: what a compute model's ``"measure"`` stands for.

A worker's forward/backward (and update) on one micro-batch, and a parameter server's step
(averaging the workers' gradients, then its update), each the median of a few repeats.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["measure_server_step", "measure_step_time"]


def measure_step_time(
    workload: Any, seed: int = 0, repeats: int = 10, update: bool = False
) -> float:
    """Median wall time of one forward/backward on one micro-batch of ``workload`` (its
    ``step_loss``: a reinforcement-learning workload's includes its rollout) (and an
    SGD update of the parameters, with ``update``: a worker's whole step)."""
    import torch

    model = workload.make_model(seed)
    batches = workload.stream(0, 1, seed)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        # The workload's own step: a batch's forward/backward, or a rollout and its loss.
        workload.step_loss(model, batches)[0].backward()
        if update:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-1e-3)
        if i >= 2:  # the first passes pay for allocation and dispatch caches
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_server_step(workload: Any, workers: int, seed: int = 0, repeats: int = 10) -> float:
    """Median wall time of a parameter server's step here: averaging ``workers`` flat
    gradients of ``workload``'s model and one SGD update of its flat parameters."""
    import torch

    model = workload.make_model(seed)
    numel = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(seed)
    grads = [torch.randn(numel, generator=generator) for _ in range(max(1, workers))]
    params = torch.zeros(numel)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        average = torch.stack(grads).sum(0).div_(len(grads))
        params.add_(average, alpha=-0.1)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return float(np.median(times))
