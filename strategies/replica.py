"""The local state of one role: a model in flat buffers and the optimizer that updates it.

Communication moves flat tensors (like DDP's buckets), so parameters and gradients live in one
contiguous buffer each and the model's parameters are views into them: flattening is free,
``apply`` is one optimizer step on one tensor, and a parameter server shard is the same
machinery over a slice. Both backends build their role contexts on these classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import Any

import torch
from torch import nn
from torch.optim import optimizer as torch_optimizer

from strategies.optim import OptimizerSpec, ScheduleSpec

__all__ = ["FlatOptimizer", "Objective", "Replica", "supervised"]

# The step hooks torch runs for every optimizer: dicts torch fills and empties in place
# (a torch without them: none), read at every step (see _optimizer_hooks).
_GLOBAL_PRE_HOOKS = getattr(torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS = getattr(torch_optimizer, "_global_optimizer_post_hooks", {})

Batch = tuple[torch.Tensor, torch.Tensor]
#: One micro-batch's loss on a model and the samples it used: ``(model, batches) -> (loss,
#: samples)``, what :meth:`workloads.base.Workload.step_loss` is (``next(batches)`` through the
#: model and the loss for supervised workloads; a rollout of the rank's environments for
#: reinforcement-learning ones).
Objective = Callable[[nn.Module, Iterator[Any]], tuple[torch.Tensor, int]]


def supervised(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Objective:
    """The :data:`Objective` of a supervised loss: the next ``(x, y)`` through the model.

    Examples
    --------
    >>> objective = supervised(nn.functional.mse_loss)
    >>> loss, samples = objective(nn.Linear(2, 1), iter([(torch.ones(3, 2), torch.zeros(3, 1))]))
    >>> samples
    3
    """

    def objective(model: nn.Module, batches: Iterator[Any]) -> tuple[torch.Tensor, int]:
        x, y = next(batches)
        return loss_fn(model(x), y), len(x)

    return objective


class FlatOptimizer:
    """An optimizer stepping one flat parameter tensor in place.

    Parameters
    ----------
    flat
        The parameter buffer; updated in place, so views into it see every step.
    spec, schedule
        The optimizer and learning-rate schedule to build.
    total_steps
        Schedule horizon (for cosine decay).

    Examples
    --------
    >>> p = torch.zeros(3)
    >>> opt = FlatOptimizer(p, OptimizerSpec.parse({"name": "sgd", "lr": 0.5}))
    >>> opt.step(torch.ones(3)); p
    tensor([-0.5000, -0.5000, -0.5000])
    """

    def __init__(
        self,
        flat: torch.Tensor,
        spec: OptimizerSpec,
        schedule: ScheduleSpec | None = None,
        total_steps: int = 1,
    ) -> None:
        self.param = nn.Parameter(flat, requires_grad=flat.requires_grad)  # shares storage
        self.spec = spec
        self.optimizer = spec.build([self.param])
        self.schedule = schedule or ScheduleSpec()
        self.total_steps = max(1, total_steps)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.steps = 0
        self._shapes_only = flat.is_meta  # a timing-only run's (strategies.shapes)
        self._plain_sgd = _plain_sgd(self.optimizer)

    def step(self, grads: torch.Tensor, lr_scale: float = 1.0) -> None:
        """One optimizer step with ``grads`` (flat, same shape as the parameter buffer)."""
        if self._shapes_only and self.steps:
            # A timing-only run: the first step made the state's shapes; later ones change
            # no shape, so they are only counted (a meta step costs ~1 ms of dispatch).
            self.steps += 1
            return
        if self.schedule.name == "constant":  # its factor is 1.0: the same product, no calls
            factor = 1.0 * lr_scale
        else:
            factor = self.schedule.factor(self.steps, self.total_steps) * lr_scale
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        if self._shapes_only and _state_from_template(self):
            # The first step's state, copied from one optimizer of the same spec and shape
            # that took it: at 131,072 ranks the meta step itself was half a run's CPU.
            self.steps += 1
            return
        if self._plain_sgd and not _optimizer_hooks(self.optimizer):
            # What torch's SGD step does for one CPU tensor without momentum or weight decay
            # (its _single_tensor_sgd), minus ~25 us of Python around it per call. On the
            # parameter's data, which autograd does not track: the same kernel as under
            # no_grad, without the ten Python calls of entering and leaving it.
            self.param.data.add_(grads, alpha=-self.optimizer.param_groups[0]["lr"])
            self.steps += 1
            return
        self.param.grad = grads
        self.optimizer.step()
        self.param.grad = None
        self.steps += 1

    def export(self) -> tuple[torch.Tensor, dict[str, float]]:
        """The state a rejoining peer needs, as one flat tensor (the parameters, then each
        full-size buffer the optimizer keeps, momentum or Adam's moments, in name order) and
        plain numbers (its steps, and scalar state such as Adam's step count).

        Examples
        --------
        >>> opt = FlatOptimizer(torch.zeros(2), OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9"))
        >>> opt.step(torch.ones(2)); flat, numbers = opt.export()
        >>> flat.tolist(), numbers
        ([-0.5, -0.5, 1.0, 1.0], {'steps': 1.0})
        >>> other = FlatOptimizer(torch.zeros(2), OptimizerSpec.parse("sgd:lr=0.5,momentum=0.9"))
        >>> other.restore(flat, numbers); other.step(torch.ones(2)); opt.step(torch.ones(2))
        >>> bool(torch.equal(other.param, opt.param))
        True
        """
        state = self.optimizer.state.get(self.param, {})
        buffers = [self.param.detach()]
        numbers = {"steps": float(self.steps)}
        for key in sorted(state):
            value = state[key]
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                buffers.append(value.detach().reshape(-1))
            elif isinstance(value, (torch.Tensor, int, float)):
                numbers[key] = float(value)
        return torch.cat(buffers), numbers

    def export_numel(self) -> int:
        """The length of :meth:`export`'s tensor once the optimizer has stepped (a
        restarted rank, which has not, sizes its receive with it)."""
        probe = FlatOptimizer(torch.zeros(1), self.spec)
        probe.step(torch.zeros(1))
        return self.param.numel() * probe.export()[0].numel()

    def restore(self, flat: torch.Tensor, numbers: Mapping[str, float]) -> None:
        """Take a peer's :meth:`export`: parameters, optimizer buffers, steps."""
        numel = self.param.numel()
        probe = FlatOptimizer(torch.zeros(1), self.spec)
        probe.step(torch.zeros(1))
        keys = sorted(probe.optimizer.state[probe.param])
        with torch.no_grad():
            self.param.copy_(flat[:numel])
        state: dict[str, Any] = {}
        if flat.numel() == numel:  # taken before any step: the optimizer has no state yet
            keys = []
        offset = numel
        for key in keys:
            sample = probe.optimizer.state[probe.param][key]
            if isinstance(sample, torch.Tensor) and sample.dim() > 0:
                state[key] = flat[offset : offset + numel].clone().view_as(self.param)
                offset += numel
            elif key in numbers:
                state[key] = (
                    torch.tensor(numbers[key], dtype=sample.dtype)
                    if isinstance(sample, torch.Tensor)
                    else type(sample)(numbers[key])
                )
        self.optimizer.state[self.param] = state
        self.steps = int(numbers.get("steps", 0))


#: The state one meta step leaves, by the optimizer's spec and the parameter's shape and dtype
#: (a timing-only run has a few distinct ones, stepped by thousands of ranks).
_META_STATES: dict[tuple[str, tuple[int, ...], torch.dtype], dict[str, Any]] = {}


def _state_from_template(opt: FlatOptimizer) -> bool:
    """Give ``opt`` (on meta, about to take its first step) the state its step would leave,
    copied from a template optimizer of the same spec that took one; False (nothing done)
    where that cannot be known: a custom factory, hooks, several parameter groups."""
    spec, param = opt.spec, opt.param
    if spec.factory is not None or _optimizer_hooks(opt.optimizer):
        return False
    if len(opt.optimizer.param_groups) != 1:
        return False
    key = (repr((spec.name, sorted(spec.options.items()))), tuple(param.shape), param.dtype)
    template = _META_STATES.get(key)
    if template is None:
        probe = torch.empty_like(param)
        made = FlatOptimizer(probe, spec)
        made._shapes_only = False  # a real (meta) step: it makes the state
        made.step(torch.empty_like(param))
        template = _META_STATES[key] = dict(made.optimizer.state.get(made.param, {}))
    if template:  # (a stateless optimizer, plain SGD, has no entry, as after its step)
        # Tensors cloned (a CPU step count is each optimizer's own; a meta one holds nothing).
        opt.optimizer.state[param] = {
            k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in template.items()
        }
    return True


def _plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer``'s step on its one flat parameter is exactly
    ``param.add_(grad, alpha=-lr)``: torch's own SGD (not a subclass), no momentum, weight
    decay or maximize, a learning rate that is a number, on the CPU (where torch takes its single-tensor
    path, not foreach or fused).

    Examples
    --------
    >>> p = nn.Parameter(torch.zeros(2))
    >>> _plain_sgd(torch.optim.SGD([p], lr=0.1)), _plain_sgd(torch.optim.SGD([p], momentum=0.9))
    (True, False)
    >>> _plain_sgd(torch.optim.Adam([p]))
    False
    """
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    params = group["params"]
    return (
        len(params) == 1
        and params[0].device.type == "cpu"
        and not params[0].is_sparse
        and group["momentum"] == 0
        and group["weight_decay"] == 0
        and not group["maximize"]
        and not group["differentiable"]
        and not group.get("fused")
        and not group.get("foreach")
        and not isinstance(group["lr"], torch.Tensor)
    )


def _optimizer_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a step hook is registered on ``optimizer`` or on every optimizer (torch's step
    runs them; the plain-SGD path must not skip them)."""
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _GLOBAL_PRE_HOOKS
        or _GLOBAL_POST_HOOKS
    )


class Replica:
    """A model whose parameters and gradients are views into two flat buffers.

    Parameters
    ----------
    model
        The module; its parameters are re-pointed into ``flat`` (buffers such as batch-norm
        statistics stay local and are not communicated).
    spec, schedule, total_steps
        Passed to :class:`FlatOptimizer`; ``spec=None`` builds no optimizer (a worker that
        only computes gradients, as under a parameter server).

    Examples
    --------
    >>> torch.manual_seed(0) is not None
    True
    >>> r = Replica(nn.Linear(2, 1), OptimizerSpec.parse("sgd"))
    >>> r.flat.shape, r.model.weight.data_ptr() == r.flat.data_ptr()
    (torch.Size([3]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        spec: OptimizerSpec | None = None,
        schedule: ScheduleSpec | None = None,
        total_steps: int = 1,
    ) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        numel = sum(p.numel() for p in params)
        first = params[0] if params else torch.zeros(0)
        self.model = model
        self.flat = torch.empty(numel, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                # Autograd accumulates in place into an existing .grad, so the views stay live.
                p.grad = self.grad[offset : offset + n].view_as(p)
                offset += n
        self.optimizer = (
            FlatOptimizer(self.flat, spec, schedule, total_steps) if spec is not None else None
        )

    @cached_property
    def numel(self) -> int:
        """Number of parameters. The flat buffer is made once and loaded in place, so this
        is asked of it once: every step checks a gradient's size against it, and on a
        timing-only run's meta device each tensor call goes through torch's device mode."""
        return self.flat.numel()

    def compute_gradients(
        self,
        batches: Iterator[Any],
        objective: Objective,
        accumulate: int = 1,
    ) -> tuple[torch.Tensor, int, float]:
        """Average the gradient over ``accumulate`` micro-batches, each ``objective(model,
        batches)`` (see :data:`Objective`).

        Returns the flat gradient (a copy the caller owns), the samples used and the mean
        training loss.
        """
        self.grad.zero_()
        samples, total_loss = 0, 0.0
        for _ in range(accumulate):
            loss, used = objective(self.model, batches)
            # Dividing by 1 changes no bit but costs an autograd node per step: skip it.
            (loss / accumulate if accumulate > 1 else loss).backward()
            samples += used
            total_loss += loss.item()
        return self.grad.clone(), samples, total_loss / accumulate

    def apply(self, grads: torch.Tensor, lr_scale: float = 1.0) -> None:
        """One optimizer step with a flat gradient."""
        if self.optimizer is None:
            raise RuntimeError("this replica has no optimizer: its role does not apply updates")
        self.optimizer.step(grads, lr_scale)

    def parameters(self) -> torch.Tensor:
        """A flat copy of the parameters."""
        return self.flat.detach().clone()

    def load(self, flat: torch.Tensor) -> None:
        """Overwrite the parameters with a flat tensor."""
        with torch.no_grad():
            self.flat.copy_(flat)
