"""Timing-only runs: a run's time, bytes and breakdown without its numbers.

``sim.run(..., timing_only=True)`` runs the strategy unchanged with the model's parameters,
gradients and payloads on PyTorch's meta device (:mod:`strategies.shapes`): every payload
has its true size and no storage, so memory stays flat in the ranks and a model larger
than this machine's memory can be timed on thousands of ranks. Nothing is computed, so:

* a gradient takes the compute model's time (seconds, or ``base="flops"`` from the
  workload's FLOPs); ``base="measure"`` (and ``server="measure"``) is refused: it times real
  steps on a real replica, which is the memory a timing-only run avoids, and this machine's
  time says nothing of the cluster's; measure in a full run and pass its seconds;
* there are no evaluation rows, so a target (``target_loss``, ``target_return``) is
  refused, as is a strategy whose decisions read numbers
  (:meth:`strategies.base.Strategy.reads_values`);
* the summary adds ``step_time``, simulated seconds per global step; the result has no
  parameters.

The simulated clock and bytes do not depend on the numbers, so a timing-only run and a full
run of the same configuration take the same steps at the same times with the same bytes.
"""

from __future__ import annotations

import math
import traceback
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from runs import RunResult
from sim.compute import ComputeModel
from strategies.shapes import META

__all__ = [
    "check_timing_compute",
    "check_timing_only",
    "check_timing_workload",
    "real_tensors",
    "shapes_only",
    "timing_result",
    "value_read",
]


def check_timing_only(timing_only: Any, target_loss: Any, *, target_return: Any = None) -> None:
    """Refuse, in one line, what a timing-only run cannot do.

    Examples
    --------
    >>> check_timing_only(True, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: target_loss needs losses; timing_only computes none; drop one
    >>> check_timing_only("yes", None)
    Traceback (most recent call last):
    ...
    ValueError: timing_only='yes' must be True or False
    """
    if not isinstance(timing_only, bool):
        raise ValueError(f"timing_only={timing_only!r} must be True or False")
    if timing_only and target_loss is not None:
        raise ValueError("target_loss needs losses; timing_only computes none; drop one")
    if timing_only and target_return is not None:
        raise ValueError("target_return needs returns; timing_only computes none; drop one")


def check_timing_compute(timing_only: bool, compute: ComputeModel) -> None:
    """Refuse a compute model that times real steps in a timing-only run.

    Examples
    --------
    >>> check_timing_compute(True, ComputeModel.parse("measure"))
    Traceback (most recent call last):
    ...
    ValueError: compute.base='measure' times real steps on a real replica; timing_only computes none; give seconds (from a full run's measure) or base='flops'
    """
    if not timing_only:
        return
    for name, value in (("base", compute.base), ("server", compute.server)):
        if value == "measure":
            raise ValueError(
                f"compute.{name}='measure' times real steps on a real replica; timing_only "
                "computes none; give seconds (from a full run's measure)"
                + (" or base='flops'" if name == "base" else "")
            )


def check_timing_workload(timing_only: bool, workload: Any) -> None:
    """Refuse a workload whose gradient needs numbers to exist: a reinforcement-learning
    workload acts in its environments with its policy's actions, which meta tensors do not
    have.

    Examples
    --------
    >>> import workloads
    >>> check_timing_workload(True, workloads.cartpole())
    Traceback (most recent call last):
    ...
    ValueError: workload 'cartpole' acts in environments with its policy's actions, which a timing-only run has no numbers for; run it in full (timing_only=False)
    """
    if timing_only and getattr(workload, "collects_experience", False):
        raise ValueError(
            f"workload {workload.name!r} acts in environments with its policy's actions, "
            "which a timing-only run has no numbers for; run it in full (timing_only=False)"
        )


#: What torch says when a meta tensor's value is read (``x.item()``, ``float(x)``,
#: ``x.tolist()``, ``x.numpy()``) or mixed with a tensor of numbers.
_META_READS = ("meta tensor", "meta device", "expected device meta")


def value_read(error: BaseException) -> str | None:
    """The one line a timing-only run fails with when a program read a value its tensors
    do not have (None: ``error`` is not that), naming where.

    Examples
    --------
    >>> try:
    ...     torch.empty(2, device="meta").sum().item()
    ... except RuntimeError as error:
    ...     print(value_read(error))  # doctest: +ELLIPSIS
    timing_only: ... reads a value of a tensor that has a shape only (Tensor.item() cannot be called on meta tensors); a timing-only run computes none: drop timing_only, or have the strategy's reads_values() say why it needs numbers
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not any(marker in text for marker in _META_READS):
        return None
    origin = error
    while origin.__cause__ is not None:  # SimPy re-raises a process's error as a copy
        origin = origin.__cause__
    frames = [
        f
        for f in traceback.extract_tb(origin.__traceback__)
        if not Path(f.filename).is_relative_to(_TORCH)
    ]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "a program"
    return (
        f"timing_only: {where} reads a value of a tensor that has a shape only ({text}); "
        "a timing-only run computes none: drop timing_only, or have the strategy's "
        "reads_values() say why it needs numbers"
    )


#: torch's own files (a value read is reported at the first frame outside them).
_TORCH = Path(torch.__file__).parent


def shapes_only(timing_only: bool) -> AbstractContextManager[Any]:
    """Where tensors made without a device go during a run: the meta device in a timing-only
    run (a strategy's own buffers, ``torch.zeros(n)``, then have shapes only), else as
    before."""
    return META if timing_only else nullcontext()


def real_tensors(timing_only: bool) -> AbstractContextManager[Any]:
    """Real tensors inside :func:`shapes_only` (the workload's FLOPs are counted on them)."""
    return torch.device("cpu") if timing_only else nullcontext()


def timing_result(result: RunResult) -> None:
    """A timing-only run's result: ``step_time`` (simulated seconds per global step) in the
    summary, and no parameters (they have shapes, no values)."""
    steps = result.summary["steps"]
    result.summary["step_time"] = result.summary["time"] / steps if steps else math.nan
    result.parameters = None
