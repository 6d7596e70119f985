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

``compute.zero`` (1 or 2) shards the estimate as ZeRO's stages do (Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", section 5.1): stage 1
divides the optimizer state and the fp32 master weights by the number of workers ``N``,
stage 2 the gradients too, so that mixed-precision Adam (``K = 12`` bytes of master weights
and state a parameter) takes ``4 Psi + K Psi / N`` and ``2 Psi + (2 + K) Psi / N`` bytes for
``Psi`` parameters. Only ``allreduce`` takes it: its workers all-reduce every step's gradient,
and ZeRO-1/2's reduce-scatter of gradients and all-gather of updated parameters move the same
bytes as a ring all-reduce, so the run itself is unchanged. ZeRO-3 (parameters sharded,
gathered for each layer's forward and backward) changes the communication and is not modelled.

Servers (a parameter server's, EASGD's) are estimated each for its shard
(:func:`server_memory`: the shard, the shard it receives, master weights, the optimizer's
state), refused or warned about as a worker is, and recorded as ``server_memory_gb`` (the
largest). The optimizer counted for a worker is the one its ``apply`` steps (the strategy's
first declared, ``TrainingSetup.optimizer``; none where the servers step it); with a custom
optimizer factory nothing is estimated. What a strategy keeps beyond that is its own part,
``memory_strategy_gb`` (:func:`strategy_state`, from
:meth:`strategies.base.Strategy.worker_state`): DiLoCo's and Streaming DiLoCo's outer
parameters and their outer optimizer's state (Nesterov momentum: one copy), EASGD's centre
and its workers' ``local`` optimizer, compression's error-feedback residuals; all-reduce,
local SGD, gossip and a parameter server's workers keep none. Runs whose compute model names
no device get nothing new.

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
>>> diloco = TrainingSetup.create("diloco", workloads.get("gpt2_small"), 2, steps=1,
...                               optimizer="adam")
>>> strategy_state(diloco)
{'outer parameters': 1.0, 'outer optimizer state': 1.0}
>>> parts = device_memory(diloco, ComputeModel.parse({"base": "flops", "device": "H100"}))
>>> parts["memory_strategy_gb"] == parts["memory_optimizer_gb"]  # 8 bytes a parameter each
True
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from devices.catalog import device as find_device
from devices.memory import (
    DoesNotFit,
    MemoryEstimate,
    check_fits,
    optimizer_states,
    peak_memory,
    training_memory,
)
from options.declare import OptionError
from strategies.aggregate import shard_bounds

__all__ = [
    "REPORT_FIX",
    "ZERO_STRATEGIES",
    "device_memory",
    "server_memory",
    "strategy_state",
    "zero_sharded",
]

#: Strategies whose workers all-reduce every step's gradient: ZeRO-1/2 shard their state at
#: the same bytes on the wire.
ZERO_STRATEGIES = ("allreduce",)

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
    _check_zero(setup, compute)
    if compute.base not in ("flops", "roofline") or not setup.workers:
        return None
    workload = setup.workload
    if not all(callable(getattr(workload, name, None)) for name in _SIZED):
        return None
    spec = setup.optimizer
    if getattr(spec, "factory", None) is not None:  # devices.memory cannot know its state
        return None
    workers = len(setup.workers)
    # A worker of a strategy whose servers hold the global model steps none of the run's
    # optimizers on its replica (strategies.roles gives it none; EASGD's local one is its
    # strategy state): the servers keep that state, each for its shard (server_memory).
    stepped = spec if setup.strategy.global_model != "servers" else "sgd"
    whole = peak_memory(workload, optimizer=stepped, strategy_state=strategy_state(setup))
    estimate = zero_sharded(whole, compute.zero, workers)
    dev = find_device(compute.device)
    try:
        check_fits(estimate, dev)
    except DoesNotFit as exc:
        if compute.memory == "check":
            fixes = f"{_zero_fix(setup, compute, whole, dev)}; {REPORT_FIX}"
            raise DoesNotFit(f"{exc}{fixes}") from None
        warnings.warn(
            f"{estimate.describe()} and the {dev.name} has {dev.memory_gb:g} GB; timed anyway "
            "(compute.memory='report'): the data-parallel dimension only, as if the state "
            "were sharded or split in a way commsim does not model",
            stacklevel=3,
        )
    servers = _servers_memory(setup, compute, dev)
    return {**estimate.summary(), "device_memory_gb": dev.memory / 1e9, **servers}


def server_memory(setup: Any, rank: int) -> MemoryEstimate:
    """What server ``rank`` holds at its peak: its shard of the parameters (as
    :func:`strategies.aggregate.shard_bounds` deals them), the gradient (or, for EASGD, the
    worker's parameters) it receives for that shard, fp32 master weights of 16-bit
    parameters, and the state of the optimizer it steps (the strategy's first declared:
    a parameter server's, EASGD's ``center``); no activations, no strategy state.

    Examples
    --------
    >>> from strategies.roles import TrainingSetup
    >>> import workloads
    >>> setup = TrainingSetup.create("parameter_server:servers=2", workloads.get("gpt2_small"),
    ...                              4, steps=1, optimizer="adam")
    >>> m = server_memory(setup, 1)
    >>> m.n_parameters * 2 == workloads.get("gpt2_small").parameter_count(), m.activations
    (True, 0.0)
    >>> m.describe().split(" (")[0]
    "server rank 1's shard of gpt2_small needs 1 GB per rank"
    """
    servers = list(setup.servers)
    workload = setup.workload
    start, stop = shard_bounds(workload.parameter_count(), len(servers))[servers.index(rank)]
    return training_memory(
        stop - start,
        0,
        optimizer=setup.optimizer,
        param_bytes=workload.parameter_bytes(),
        model=f"server rank {rank}'s shard of {workload.name}",
    )


def _servers_memory(setup: Any, compute: Any, dev: Any) -> dict[str, float]:
    """``{"server_memory_gb": ...}``, the largest server's peak (shards differ by a parameter
    at most), or nothing for a strategy without servers; a server that does not fit is
    refused (``compute.memory="check"``) or warned about once (``"report"``)."""
    servers = list(setup.servers)
    if not servers:
        return {}
    sizes = shard_bounds(setup.workload.parameter_count(), len(servers))
    largest = max(range(len(servers)), key=lambda i: sizes[i][1] - sizes[i][0])
    estimate = server_memory(setup, servers[largest])
    if estimate.total > dev.memory:
        # The shard shrinks with more servers: the fewest whose largest shard fits.
        per_parameter = estimate.total / max(estimate.n_parameters, 1.0)
        needed = math.ceil(setup.workload.parameter_count() * per_parameter / dev.memory)
        line = (
            f"{estimate.describe()} and the {dev.name} has {dev.memory_gb:g} GB; use "
            f"servers={max(needed, len(servers) + 1)} (a smaller shard on each server)"
        )
        if estimate.optimizer:
            line += "; or optimizer='sgd' (no optimizer state)"
        if compute.memory == "check":
            raise DoesNotFit(f"{line}; {REPORT_FIX}")
        warnings.warn(f"{line}; timed anyway (compute.memory='report')", stacklevel=4)
    return {"server_memory_gb": estimate.gb}


def strategy_state(setup: Any) -> dict[str, float]:
    """What each of the run's workers keeps of its own, in copies of its parameters by name:
    the strategy's :meth:`~strategies.base.Strategy.worker_state`, where a name of one of its
    optimizers becomes that optimizer's state as the run configures it (``"<name> optimizer
    state"``: its buffers per parameter; none for plain SGD, so no entry)."""
    out: dict[str, float] = {}
    for name, copies in setup.strategy.worker_state().items():
        spec = setup.optimizers.get(name)
        if spec is None:
            out[name] = float(copies)
            continue
        if getattr(spec, "factory", None) is not None:  # its state cannot be known
            continue
        _, buffers = optimizer_states(spec)
        if buffers:
            out[f"{name} optimizer state"] = float(copies) * buffers
    return out


def zero_sharded(estimate: MemoryEstimate, stage: int, workers: int) -> MemoryEstimate:
    """``estimate`` with ZeRO's ``stage`` over ``workers`` data-parallel ranks: 1 shards the
    optimizer state and master weights, 2 the gradients too; 0 leaves it as it is.

    Examples
    --------
    The paper's Figure 1: 7.5 B parameters, mixed-precision Adam, 64 ranks (120 GB, then
    31.4 GB, then 16.6 GB):

    >>> from devices import training_memory
    >>> m = training_memory(7.5e9, 0, optimizer="adam", param_bytes=2)
    >>> [round(zero_sharded(m, stage, 64).gb, 1) for stage in (0, 1, 2)]
    [120.0, 31.4, 16.6]
    >>> zero_sharded(m, 2, 64).model
    'model with ZeRO-2 over 64 workers'
    """
    if not stage:
        return estimate
    return dataclasses.replace(
        estimate,
        master=estimate.master / workers,
        optimizer=estimate.optimizer / workers,
        gradients=estimate.gradients / workers if stage >= 2 else estimate.gradients,
        model=f"{estimate.model} with ZeRO-{stage} over {workers} workers",
    )


def _check_zero(setup: Any, compute: Any) -> None:
    """Refuse, in one line, a ZeRO stage where it means nothing: without a device, or for a
    strategy whose workers do not all-reduce every step's gradient."""
    if not compute.zero:
        return
    if compute.base not in ("flops", "roofline"):
        raise OptionError(
            f"compute.zero={compute.zero} shards the device's memory estimate, and "
            f"compute.base={compute.base!r} names no device; set base='flops' or 'roofline' "
            "with a device, or zero=0",
            "zero",
        )
    name = setup.strategy.name
    if name not in ZERO_STRATEGIES:
        raise OptionError(
            f"compute.zero={compute.zero}: ZeRO shards the state of workers that all-reduce "
            f"every step's gradient ({', '.join(ZERO_STRATEGIES)}), and strategy {name} does "
            "not; set zero=0",
            "zero",
        )


def _zero_fix(setup: Any, compute: Any, whole: MemoryEstimate, dev: Any) -> str:
    """``"; or compute.zero=N (...)"`` when a higher ZeRO stage than the run's would make a
    worker's ``whole`` (unsharded) estimate fit."""
    workers = len(setup.workers)
    if setup.strategy.name not in ZERO_STRATEGIES or workers < 2:
        return ""
    for stage in range(compute.zero + 1, 3):
        if zero_sharded(whole, stage, workers).total <= dev.memory:
            return (
                f"; or compute.zero={stage} (ZeRO-{stage}: the same bytes on the wire as "
                "all-reduce)"
            )
    return ""
