"""The one ``Workload`` object: model factory + data + loss + evaluation + partitioning.

Every builder (``quadratic``, ``mlp_digits``, ...) returns a ``Workload`` (or a small subclass
adding theory attributes). Runtimes use only the methods below, so a user's own model and data
work everywhere by constructing a ``Workload`` directly (see ``workloads.custom``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from workloads import partition as _partition

__all__ = ["Workload", "count_flops"]

#: Evaluate in chunks so a large held-out set never needs one giant activation tensor.
_EVAL_CHUNK = 4096


class Workload:
    """A training problem that ``sim`` and ``real`` can split across workers.

    Parameters
    ----------
    name : str
        Label used in results.
    model_factory : callable
        ``() -> nn.Module``; called under a seeded, forked RNG by ``make_model``.
    train, test : (Tensor, Tensor)
        ``(inputs, targets)`` with equal first dimensions. Held-out metrics use ``test``.
    loss_fn : callable
        ``(output, target) -> scalar Tensor``, the mean over the batch.
    batch_size : int
        Samples per worker per micro-batch.
    partition : {"iid", "dirichlet", "by_class"}
        How ``partition()`` splits the train set (stored as ``partition_scheme``; maths in
        ``workloads.partition``); the last two need 1-D integer class targets.
    alpha : float
        Dirichlet concentration (only for ``partition="dirichlet"``); smaller is more skewed.
    accuracy : bool, optional
        Report ``argmax(output, -1) == target`` accuracy; default: targets are integers.

    Examples
    --------
    >>> x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    >>> w = Workload("toy", lambda: nn.Linear(3, 2), (x, y), (x, y),
    ...              nn.functional.cross_entropy, batch_size=8, partition="by_class")
    >>> [len(s) for s in w.partition(n_workers=4, seed=0)]
    [10, 10, 10, 10]
    >>> xb, yb = next(w.batches(rank=1, n_workers=4, seed=0))
    >>> tuple(xb.shape), tuple(yb.shape)
    ((8, 3), (8,))
    >>> sorted(w.evaluate(w.make_model(seed=0)))
    ['accuracy', 'loss']
    """

    name: str
    batch_size: int
    partition_scheme: str
    alpha: float
    model_factory: Callable[[], nn.Module]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    has_accuracy: bool
    #: The registry name and arguments it was built from (set by ``workloads.get``), or None.
    spec: dict[str, Any] | None = None
    #: The evaluation's headline metric, a key of :meth:`evaluate`'s result, and its direction:
    #: ``"loss"``, lower is better, for supervised workloads; reinforcement-learning workloads
    #: report the policy's mean episodic ``"return"``, higher is better. Targets
    #: (``target_loss``, ``target_return``), time to target, summaries and plots follow it.
    metric: ClassVar[str] = "loss"
    maximize: ClassVar[bool] = False
    #: Whether workers can collect experience and learn from others' (reinforcement
    #: learning: ``strategies.context.Experiences``), besides computing gradients.
    collects_experience: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        model_factory: Callable[[], nn.Module],
        train: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor],
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        *,
        batch_size: int = 32,
        partition: str = "iid",
        alpha: float = 0.5,
        accuracy: bool | None = None,
    ) -> None:
        for label, (x, y) in (("train", train), ("test", test)):
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(
                    f"{label} inputs ({len(x)}) and targets ({len(y)}) must be equally long "
                    "and non-empty; pass matching tensors"
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} must be a positive int; e.g. 32")
        if batch_size > len(train[0]):
            raise ValueError(
                f"batch_size={batch_size} exceeds the {len(train[0])} training samples; "
                "lower batch_size"
            )
        if partition not in _partition.PARTITIONS:
            raise ValueError(
                f"partition={partition!r} is unknown; use one of {', '.join(_partition.PARTITIONS)}"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"alpha={alpha} must be > 0; e.g. alpha=0.5 (smaller = more skewed)")
        y_train = train[1]
        is_classes = y_train.ndim == 1 and not torch.is_floating_point(y_train)
        if partition != "iid" and not is_classes:
            raise ValueError(
                f"partition={partition!r} needs 1-D integer class targets, which {name!r} lacks; "
                "use partition='iid'"
            )
        self.name = name
        self.batch_size = int(batch_size)
        self.partition_scheme = partition
        self.alpha = float(alpha)
        self.model_factory = model_factory
        self.loss_fn = loss_fn
        self.x_train, self.y_train = train
        self.x_test, self.y_test = test
        self.has_accuracy = (not torch.is_floating_point(y_train)) if accuracy is None else accuracy
        # Empty for label-free workloads, whose non-iid schemes were rejected above.
        self._labels: np.ndarray = y_train.numpy() if is_classes else np.empty(0, dtype=np.int64)
        self._shards: dict[tuple[int, int], list[np.ndarray]] = {}
        self._flops: float | None = None
        self._sizes: tuple[int, int] | None = None
        self._activations: int | None = None

    def __repr__(self) -> str:
        scheme = self.partition_scheme
        if scheme == "dirichlet":
            scheme += f"(alpha={self.alpha:g})"
        return (
            f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size}, "
            f"partition={scheme!r}, n_train={len(self.x_train)}, n_test={len(self.x_test)})"
        )

    def config(self) -> dict[str, Any]:
        """What a results file records: the registry name and arguments it was built from.

        Workloads built directly rather than by ``workloads.get`` record their main settings.
        """
        if self.spec is not None:
            return dict(self.spec)
        return {
            "name": self.name,
            "batch_size": self.batch_size,
            "partition": self.partition_scheme,
            "alpha": self.alpha,
        }

    def make_model(self, seed: int) -> nn.Module:
        """A freshly initialised model, identical for equal seeds; global RNG is untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model_factory()

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the batch."""
        return self.loss_fn(output, target)

    def step_loss(self, model: nn.Module, batches: Iterator[Any]) -> tuple[Tensor, int]:
        """One micro-batch's loss on ``model`` and the samples it used: the next batch of
        ``batches`` (a stream from :meth:`stream`) through the model and :meth:`loss`. What a
        worker's gradient is the gradient of (reinforcement-learning workloads collect a
        rollout here instead)."""
        x, y = next(batches)
        # A tensor's len() is five Python calls (torch's __len__ and its checks); its first
        # dimension is the same number.
        return self.loss(model(x), y), x.shape[0] if isinstance(x, Tensor) else len(x)

    def stream(
        self, rank: int, n_workers: int, seed: int, device: torch.device | None = None
    ) -> Iterator[Any]:
        """What worker ``rank`` of ``n_workers`` draws its micro-batches from, on ``device``:
        :meth:`batches`, drawn on the CPU and moved there (the same numbers on any device)."""
        batches = self.batches(rank, n_workers, seed)
        if device is None or device.type == "cpu":
            return batches
        return (
            (x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in batches
        )

    def partition(self, n_workers: int, seed: int) -> list[np.ndarray]:
        """Indices into the train set for each worker, by the configured scheme.

        Deterministic for ``(n_workers, seed)``; every shard is non-empty, and for
        ``"dirichlet"`` holds at least ``batch_size`` samples whenever an even split would
        (see ``workloads.partition.dirichlet`` for how short draws are repaired).
        """
        return [s.copy() for s in self._split(n_workers, seed)]

    def _split(self, n_workers: int, seed: int) -> list[np.ndarray]:
        """The cached shards themselves (not copies: callers must not modify them)."""
        key = (n_workers, seed)
        if key not in self._shards:
            rng = np.random.default_rng(seed)
            n = len(self.x_train)
            if self.partition_scheme == "iid":
                shards = _partition.iid(n, n_workers, rng)
            elif self.partition_scheme == "by_class":
                shards = _partition.by_class(self._labels, n_workers, rng)
            else:
                min_size = max(1, min(self.batch_size, n // max(n_workers, 1)))
                shards = _partition.dirichlet(self._labels, n_workers, self.alpha, rng, min_size)
            self._shards[key] = shards
        return self._shards[key]

    def batches(self, rank: int, n_workers: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Infinite stream of ``(x, y)`` micro-batches of exactly ``batch_size`` for ``rank``.

        Each epoch reshuffles the worker's shard with a generator seeded by
        ``(seed, rank, epoch)`` and drops the incomplete last batch, so equal arguments give
        identical streams and every batch has the same size.
        """
        # Only this rank's shard is copied: copying every worker's, once per rank, made a
        # run's set-up quadratic in its ranks.
        shards = self._split(n_workers, seed)  # validates n_workers first
        if not 0 <= rank < n_workers:
            raise ValueError(f"rank={rank} must be in 0..{n_workers - 1}; pass a valid rank")
        shard = shards[rank].copy()
        if len(shard) < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds rank {rank}'s shard of {len(shard)} "
                f"samples (n_workers={n_workers}); lower batch_size or n_workers"
            )
        return self._stream(torch.from_numpy(shard), rank, seed)

    def _stream(self, shard: Tensor, rank: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        # Gather the worker's data once, then once per epoch; batches are views of that
        # epoch's tensor, so a step costs a slice, not an index_select.
        x_shard, y_shard = self.x_train[shard], self.y_train[shard]
        b = self.batch_size
        n_full = len(shard) // b * b
        epoch = 0
        while True:
            order = np.random.default_rng([seed, rank, epoch]).permutation(len(shard))[:n_full]
            order_t = torch.from_numpy(order)
            x_epoch, y_epoch = x_shard[order_t], y_shard[order_t]
            for start in range(0, n_full, b):
                yield x_epoch[start : start + b], y_epoch[start : start + b]
            epoch += 1

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out ``{"loss", "accuracy"}`` (accuracy only for classification)."""
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters(), torch.empty(0)).device
            n = len(self.x_test)
            loss_sum = correct = 0.0
            for start in range(0, n, _EVAL_CHUNK):
                x = self.x_test[start : start + _EVAL_CHUNK].to(device)
                y = self.y_test[start : start + _EVAL_CHUNK].to(device)
                out = model(x)
                loss_sum += float(self.loss(out, y)) * len(x)
                if self.has_accuracy:
                    correct += float((out.argmax(-1) == y).float().mean()) * len(x)
        finally:
            model.train(was_training)
        metrics = {"loss": loss_sum / n}
        if self.has_accuracy:
            metrics["accuracy"] = correct / n
        return metrics

    def meta_model(self) -> nn.Module:
        """The model built on PyTorch's meta device: shapes and dtypes, no storage, whatever
        its size (a 70B-parameter model builds in a fraction of a second)."""
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = self.model_factory()
        return model

    def meta_batch(self) -> tuple[Tensor, Tensor]:
        """One micro-batch's ``(inputs, targets)`` on the meta device: its true shapes and
        dtypes, nothing allocated."""
        b = self.batch_size
        return self.x_train[:b].to("meta"), self.y_train[:b].to("meta")

    def parameter_count(self) -> int:
        """Parameters of the model (counted on the meta device)."""
        if self._sizes is None:
            self._measure_sizes()
        assert self._sizes is not None
        return self._sizes[0]

    def parameter_bytes(self) -> int:
        """Bytes per parameter (the largest, if dtypes are mixed): 4 in fp32, 2 in bf16."""
        if self._sizes is None:
            self._measure_sizes()
        assert self._sizes is not None
        return self._sizes[1]

    def _measure_sizes(self) -> None:
        params = list(self.meta_model().parameters())
        size = max((p.element_size() for p in params), default=4)
        self._sizes = (sum(p.numel() for p in params), size)

    def activation_bytes(self) -> int:
        """Bytes autograd keeps for backward over one micro-batch (cached).

        Counted on the meta device: every tensor the forward pass and the loss save for
        backward, each storage once, the parameters themselves left out. That is what eager
        PyTorch keeps for this model as written (no activation recomputation, no fused
        kernels); subclasses may give a published formula instead
        (:class:`workloads.transformer.TokenLM`).
        """
        if self._activations is None:
            model = self.meta_model()
            x, y = self.meta_batch()
            params = {p.untyped_storage()._cdata for p in model.parameters()}
            saved: dict[int, int] = {}

            def pack(t: Tensor) -> Tensor:
                storage = t.untyped_storage()
                if storage._cdata not in params:
                    saved[storage._cdata] = storage.nbytes()
                return t

            with torch.random.fork_rng(devices=[]):
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    self.loss(model(x), y)
            self._activations = sum(saved.values())
        return self._activations

    def flops_per_step(self) -> float:
        """FLOPs of one forward + backward on one micro-batch (``FlopCounterMode``; cached).

        Counted on the meta device, so a model of any size costs no arithmetic and no memory;
        a model that cannot run there (one whose factory ignores the device, say) is counted
        on a real replica instead, with the same result.

        Only the ops FlopCounterMode knows (matmuls, convolutions) count. The data input needs
        no gradient, so the first layer's backward computes only its weight gradient: a lone
        ``Linear(i, o)`` costs ``2*i*o*batch`` forward plus the same backward, not 3x forward.
        """
        if self._flops is None:
            try:
                self._flops = count_flops(self.loss, self.meta_model(), *self.meta_batch())
            except (NotImplementedError, RuntimeError, TypeError, ValueError):
                x, y = self.x_train[: self.batch_size], self.y_train[: self.batch_size]
                self._flops = count_flops(self.loss, self.make_model(seed=0), x, y)
        return self._flops


def count_flops(
    loss: Callable[[Tensor, Tensor], Tensor], model: nn.Module, x: Tensor, y: Tensor
) -> float:
    """FLOPs ``FlopCounterMode`` counts in one forward, ``loss`` and backward of ``model``
    (on the meta device when the model and batch are there)."""
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        loss(model(x), y).backward()
    return float(counter.get_total_flops())
