"""The simulated device's memory: what one rank holds at its peak, and a refusal when that
does not fit.

This is the memory of the GPU a rank stands for, not of the process that simulates it (that
is :mod:`sim.memory`). A data-parallel rank holds a whole replica:

* parameters, ``P`` bytes each (2 in bf16, 4 in fp32);
* gradients, the parameters' dtype;
* master weights, 4 bytes each, when 16-bit parameters are trained with fp32 master copies
  (mixed precision);
* optimizer state, per parameter: SGD none, SGD with momentum one buffer, Adam/AdamW two
  (``exp_avg``, ``exp_avg_sq``; three with ``amsgrad``), Adagrad one, RMSprop one (plus one
  for momentum, one more when centred); each 4 bytes with master weights (fp32 state, as
  mixed-precision training keeps it), else the parameters' own size;
* activations kept for backward, from the workload (:meth:`workloads.Workload.activation_bytes`;
  for transformers the per-layer formula of Korthikanti et al. 2022, see
  :mod:`workloads.transformer`);
* the strategy's own state, in copies of the parameters by name (``strategy_state``:
  DiLoCo's outer parameters and outer momentum, EASGD's centre, error-feedback residuals;
  :meth:`strategies.base.Strategy.worker_state`), each at the optimizer state's size (4 bytes
  with master weights, as those implementations keep them in fp32, else the parameters').

Mixed-precision Adam is 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter, ZeRO's ``16 Psi``
(Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models", section 3.1). Not counted: the framework's workspace, communication buffers (DDP's
buckets) and fragmentation, which take a few GB on a real GPU.

Examples
--------
>>> m = training_memory(7e9, activation_bytes=10e9, optimizer="adam", param_bytes=2)
>>> m.bytes_per_parameter, round(m.gb)
(16.0, 122)
>>> check_fits(m, "B200")
>>> check_fits(m, "H100")
Traceback (most recent call last):
...
devices.memory.DoesNotFit: model needs 122 GB per rank (parameters 14, gradients 14, master weights 28, optimizer state 56 (adam), activations 10) and the H100 has 80 GB; ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devices.catalog import DEVICES, Device, device
from options.declare import OptionError
from options.spec import did_you_mean

__all__ = [
    "OPTIMIZER_STATES",
    "DoesNotFit",
    "MemoryEstimate",
    "check_fits",
    "optimizer_states",
    "peak_memory",
    "training_memory",
]

#: Buffers per parameter each optimizer keeps, with its default options.
OPTIMIZER_STATES: dict[str, int] = {
    "sgd": 0,
    "momentum": 1,  # SGD with momentum
    "adam": 2,
    "adamw": 2,
    "adagrad": 1,
    "rmsprop": 1,
}


class DoesNotFit(ValueError):
    """A rank's training state is larger than its device's memory (one line, with fixes)."""


class _Sized(Protocol):
    """What :func:`peak_memory` reads from a workload."""

    name: str

    def parameter_count(self) -> int: ...

    def parameter_bytes(self) -> int: ...

    def activation_bytes(self) -> int: ...


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank holds at its peak, by part.

    Attributes
    ----------
    parameters, gradients, master, optimizer, activations : float
        Bytes of each part (``master``: fp32 master weights; 0 without).
    optimizer_name : str
        The optimizer whose state ``optimizer`` counts.
    model : str
        What is trained, for messages.
    """

    parameters: float
    gradients: float
    master: float
    optimizer: float
    activations: float
    optimizer_name: str = "sgd"
    model: str = "model"
    n_parameters: float = 0.0
    #: What to change when activations are what does not fit.
    activation_hint: str = "a smaller batch_size"
    #: Bytes of the strategy's own state (:func:`training_memory`'s ``strategy_state``).
    strategy: float = 0.0
    #: What :attr:`strategy` holds, by name, for messages.
    strategy_names: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        """Bytes in all."""
        return (
            self.parameters
            + self.gradients
            + self.master
            + self.optimizer
            + self.activations
            + self.strategy
        )

    @property
    def gb(self) -> float:
        """:attr:`total` in (decimal) GB, the unit device memory is sold in."""
        return self.total / 1e9

    @property
    def bytes_per_parameter(self) -> float:
        """Bytes of state per parameter, activations left out (16 for mixed-precision Adam,
        plus a strategy's own)."""
        state = self.parameters + self.gradients + self.master + self.optimizer + self.strategy
        return state / self.n_parameters if self.n_parameters else 0.0

    def describe(self) -> str:
        """One line: the total and each part, in GB.

        >>> training_memory(1e9, 2e9, optimizer="sgd", param_bytes=4).describe()
        'model needs 10 GB per rank (parameters 4, gradients 4, activations 2)'
        """
        parts = [f"parameters {_gb(self.parameters)}", f"gradients {_gb(self.gradients)}"]
        if self.master:
            parts.append(f"master weights {_gb(self.master)}")
        if self.optimizer:
            parts.append(f"optimizer state {_gb(self.optimizer)} ({self.optimizer_name})")
        parts.append(f"activations {_gb(self.activations)}")
        if self.strategy:
            names = f" ({', '.join(self.strategy_names)})" if self.strategy_names else ""
            parts.append(f"strategy state {_gb(self.strategy)}{names}")
        said = ", ".join(parts)
        return f"{self.model} needs {_gb(self.total)} GB per rank ({said})"

    def summary(self) -> dict[str, float]:
        """The parts in GB, as a run's summary records them (``peak_memory_gb`` the total)."""
        return {
            "peak_memory_gb": self.gb,
            "memory_parameters_gb": self.parameters / 1e9,
            "memory_gradients_gb": self.gradients / 1e9,
            "memory_master_gb": self.master / 1e9,
            "memory_optimizer_gb": self.optimizer / 1e9,
            "memory_activations_gb": self.activations / 1e9,
            "memory_strategy_gb": self.strategy / 1e9,
        }


def _gb(nbytes: float) -> str:
    """GB to a few significant figures: ``'1,129'``, ``'80'``, ``'0.5'``."""
    gb = nbytes / 1e9
    if gb >= 10:
        return f"{gb:,.0f}"
    return f"{gb:.2g}"


def optimizer_states(optimizer: Any) -> tuple[str, int]:
    """``(name, buffers per parameter)`` of an optimizer given as a name (``"adam"``,
    ``"sgd:momentum=0.9"`` as far as the name goes, ``"momentum"``), a mapping
    (``{"name": "sgd", "momentum": 0.9}``), or anything with ``name`` and ``options``
    (``strategies.optim.OptimizerSpec``).

    Examples
    --------
    >>> optimizer_states("adamw"), optimizer_states({"name": "sgd", "momentum": 0.9})
    (('adamw', 2), ('momentum', 1))
    >>> optimizer_states({"name": "adam", "amsgrad": True}), optimizer_states(None)
    (('adam', 3), ('sgd', 0))
    >>> optimizer_states("adma")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: optimizer='adma' is unknown; did you mean 'adam'? use one of sgd, momentum, adam, adamw, adagrad, rmsprop
    """
    if optimizer is None:
        return "sgd", 0
    if isinstance(optimizer, Mapping):
        options = dict(optimizer)
        name = str(options.pop("name", "sgd"))
    elif isinstance(optimizer, str):
        name, _, _ = optimizer.partition(":")
        options = {}
    elif hasattr(optimizer, "name"):
        name, options = str(optimizer.name), dict(getattr(optimizer, "options", {}) or {})
    else:
        raise OptionError(
            f"optimizer={optimizer!r} must be a name like 'adam' or a mapping with a name",
            "optimizer",
        )
    name = name.lower()
    if name not in OPTIMIZER_STATES:
        raise OptionError(
            f"optimizer={name!r} is unknown{did_you_mean(name, OPTIMIZER_STATES) or ';'} use one "
            f"of {', '.join(OPTIMIZER_STATES)}",
            "optimizer",
        )
    states = OPTIMIZER_STATES[name]
    if name == "sgd" and options.get("momentum"):
        name, states = "momentum", 1
    elif name in ("adam", "adamw") and options.get("amsgrad"):
        states += 1
    elif name == "rmsprop":
        states += bool(options.get("momentum")) + bool(options.get("centered"))
    return name, states


def training_memory(
    n_parameters: float,
    activation_bytes: float,
    *,
    optimizer: Any = "adam",
    param_bytes: int = 2,
    master_weights: bool | None = None,
    model: str = "model",
    activation_hint: str = "a smaller batch_size",
    strategy_state: Mapping[str, float] | None = None,
) -> MemoryEstimate:
    """One rank's peak memory for a whole replica of ``n_parameters`` parameters.

    Parameters
    ----------
    n_parameters : float
        The model's parameter count.
    activation_bytes : float
        Bytes kept for backward over one micro-batch.
    optimizer
        A name or spec (:func:`optimizer_states`).
    param_bytes : int
        Bytes per parameter (and per gradient): 2 for bf16/fp16, 4 for fp32.
    master_weights : bool, optional
        fp32 master copies of 16-bit parameters (and fp32 optimizer state). Default: exactly
        when ``param_bytes < 4``, as mixed-precision training does.
    model : str
        A name for messages.
    activation_hint : str
        What to change when activations are what does not fit.
    strategy_state : mapping of str to float, optional
        The strategy's own state, in copies of the parameters by name (``{"outer
        parameters": 1, "outer optimizer state": 1}``), each at the optimizer state's bytes.

    Examples
    --------
    DiLoCo's outer parameters and Nesterov momentum over mixed-precision AdamW: 8 more bytes
    a parameter.

    >>> m = training_memory(1e9, 0, optimizer="adamw", param_bytes=2,
    ...                     strategy_state={"outer parameters": 1, "outer optimizer state": 1})
    >>> m.bytes_per_parameter, m.describe()
    (24.0, 'model needs 24 GB per rank (parameters 2, gradients 2, master weights 4, optimizer state 8 (adamw), activations 0, strategy state 8 (outer parameters, outer optimizer state))')
    """
    if master_weights is None:
        master_weights = param_bytes < 4
    name, states = optimizer_states(optimizer)
    state_bytes = 4 if master_weights else param_bytes
    copies = {k: float(v) for k, v in (strategy_state or {}).items()}
    if any(not v >= 0 for v in copies.values()):
        raise ValueError(f"strategy_state={dict(copies)!r} must count copies >= 0")
    return MemoryEstimate(
        parameters=n_parameters * param_bytes,
        gradients=n_parameters * param_bytes,
        master=n_parameters * 4 if master_weights else 0.0,
        optimizer=n_parameters * states * state_bytes,
        activations=float(activation_bytes),
        optimizer_name=name,
        model=model,
        n_parameters=float(n_parameters),
        activation_hint=activation_hint,
        strategy=n_parameters * state_bytes * sum(copies.values()),
        strategy_names=tuple(name for name, n in copies.items() if n),
    )


def peak_memory(
    workload: _Sized,
    *,
    optimizer: Any = "adam",
    master_weights: bool | None = None,
    strategy_state: Mapping[str, float] | None = None,
) -> MemoryEstimate:
    """:func:`training_memory` of a workload: its parameter count and dtype, and its
    activations over one micro-batch (all counted on PyTorch's meta device: nothing is
    allocated, whatever the model's size), with a strategy's own state."""
    return training_memory(
        workload.parameter_count(),
        workload.activation_bytes(),
        optimizer=optimizer,
        param_bytes=workload.parameter_bytes(),
        master_weights=master_weights,
        model=workload.name,
        activation_hint=getattr(workload, "activation_hint", "a smaller batch_size"),
        strategy_state=strategy_state,
    )


def check_fits(estimate: MemoryEstimate, on: str | Device) -> None:
    """Nothing when ``estimate`` fits the device's memory; else :class:`DoesNotFit`, one line
    with the sizes and what would make it fit."""
    dev = device(on)
    if estimate.total <= dev.memory:
        return
    fixes = []
    if estimate.activations and estimate.total - estimate.activations <= dev.memory:
        fixes.append(f"{estimate.activation_hint} (activations)")
    if estimate.optimizer and estimate.total - estimate.optimizer <= dev.memory:
        fixes.append("optimizer='sgd' (no optimizer state)")
    if estimate.strategy and estimate.total - estimate.strategy <= dev.memory:
        fixes.append("a strategy that keeps no state of its own, e.g. allreduce (strategy state)")
    bigger = sorted(
        (d for d in DEVICES.values() if d.memory >= estimate.total), key=lambda d: d.memory
    )
    if bigger:
        fixes.append(f"a device with more memory ({', '.join(d.name for d in bigger)})")
    fixes.append("a smaller model (a data-parallel rank holds a whole replica)")
    raise DoesNotFit(
        f"{estimate.describe()} and the {dev.name} has {_gb(dev.memory)} GB; "
        f"use {'; or '.join(fixes)}"
    )
