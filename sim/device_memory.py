"""The simulated device's memory in a run: a worker's peak on the compute model's device,
refused in one line when it does not fit, or recorded and warned about once.

A run whose compute model names a device (``base="flops"`` or ``"roofline"``) estimates
what one worker rank holds at its peak with :func:`devices.peak_memory` (a whole replica:
parameters, gradients, master weights, the run's optimizer state, activations over one
micro-batch; counted on the meta device, nothing allocated) before anything is built or
written. ``compute.memory="check"`` (the default) refuses a rank that does not fit with
:class:`devices.DoesNotFit`'s line, which then also names ``compute.memory='report'``;
``"report"`` times the run anyway and warns once: researchers ask about the data-parallel
dimension of jobs whose sharding (ZeRO, FSDP) or tensor/pipeline parallelism commsim does
not model. Either way the summary records ``peak_memory_gb`` and its parts
(:meth:`devices.MemoryEstimate.summary`) and ``device_memory_gb``.

Only workers are estimated: a parameter server holds a shard of the parameters and its
optimizer state, less than a worker's replica. The optimizer counted is the one a worker's
``apply`` steps (the strategy's first declared, ``TrainingSetup.optimizer``); a strategy's
further optimizers (DiLoCo's outer one) and a custom optimizer factory are not counted (with
a factory, nothing is estimated). Runs whose compute model names no device get nothing new.

Examples
--------
>>> from sim.compute import ComputeModel
>>> from strategies.roles import TrainingSetup
>>> import workloads
>>> setup = TrainingSetup.create("allreduce", workloads.get("gpt2_small"), 2, steps=1,
...                              optimizer="adam")
>>> parts = device_memory(setup, ComputeModel.parse({"base": "flops", "device": "H100"}))
>>> round(parts["peak_memory_gb"], 1), parts["device_memory_gb"]
(8.5, 80.0)
>>> device_memory(setup, ComputeModel.parse(0.01)) is None  # no device, nothing new
True
"""

from __future__ import annotations

import warnings
from typing import Any

from devices.catalog import device as find_device
from devices.memory import DoesNotFit, check_fits, peak_memory

__all__ = ["REPORT_FIX", "device_memory"]

#: The fix a refusal adds to :class:`devices.DoesNotFit`'s own.
REPORT_FIX = "or compute.memory='report' to time its data-parallel dimension anyway"

_SIZED = ("parameter_count", "parameter_bytes", "activation_bytes")


def device_memory(setup: Any, compute: Any) -> dict[str, float] | None:
    """A worker's peak memory on ``compute.device`` as summary entries (GB), or ``None``
    when the compute model names no device, the run has no workers, the workload cannot
    size itself (no ``parameter_count``/``parameter_bytes``/``activation_bytes``) or the
    optimizer is a custom factory.

    Raises
    ------
    devices.DoesNotFit
        With ``compute.memory="check"``, one line: the sizes, the device's memory and the
        fixes, :data:`REPORT_FIX` among them.
    """
    if compute.base not in ("flops", "roofline") or not setup.workers:
        return None
    workload = setup.workload
    if not all(callable(getattr(workload, name, None)) for name in _SIZED):
        return None
    spec = setup.optimizer
    if getattr(spec, "factory", None) is not None:  # devices.memory cannot know its state
        return None
    estimate = peak_memory(workload, optimizer=spec)
    dev = find_device(compute.device)
    try:
        check_fits(estimate, dev)
    except DoesNotFit as exc:
        if compute.memory == "check":
            raise DoesNotFit(f"{exc}; {REPORT_FIX}") from None
        warnings.warn(
            f"{estimate.describe()} and the {dev.name} has {dev.memory_gb:g} GB; timed anyway "
            "(compute.memory='report'): the data-parallel dimension only, as if the state "
            "were sharded or split in a way commsim does not model",
            stacklevel=3,
        )
    return {**estimate.summary(), "device_memory_gb": dev.memory / 1e9}
