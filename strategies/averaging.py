"""The shared maths of parameter-averaging strategies: averaging (optionally compressed),
pseudo-gradients, elastic pulls, fragment merges and AdaComm's period rule.

Pure functions on flat tensors, plus sub-programs that strategies call with ``yield from``
(:func:`group_mean`; with ``fault_tolerance="quorum"``, :func:`heal_with` and
:func:`quorum_mean`), so Local SGD, DiLoCo, Hierarchical and the rest average the same way
in both backends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from typing import Any

import torch

from options.declare import OptionError
from strategies.comm import ALGORITHMS, ALGORITHMS_FOR, Group
from strategies.compression import Compression
from strategies.handles import Handle
from strategies.membership import Quorum
from strategies.shapes import numbers_device

__all__ = [
    "adacomm_period",
    "check_compression",
    "check_quorum",
    "elastic_pull",
    "group_mean",
    "heal_with",
    "log_compression",
    "merge",
    "pseudo_gradient",
    "quorum_mean",
    "drop_round",
    "rewind",
    "take",
]

SubProgram = Generator[Any, Any, torch.Tensor]


def check_compression(
    compression: Any, algorithm: Any, averages_changes: bool = False
) -> Compression | None:
    """Parse ``compression`` and check ``algorithm`` against the collective its payload
    travels by (a sparse or quantised payload is all-gathered), each error one line naming
    the argument. ``averages_changes``: the mean is of parameter changes, which a sign vote
    cannot stand for (it has no magnitude), so ``signsgd`` is refused.

    Examples
    --------
    >>> check_compression("topk", "tree")
    Traceback (most recent call last):
    ...
    options.declare.OptionError: algorithm='tree' cannot carry compression='topk', whose payloads are all-gathered; use one of auto, ring, direct, halving_doubling
    >>> check_compression("signsgd", "auto", averages_changes=True)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: compression='signsgd' averages signs, not magnitudes: it fits gradients (AllReduceSGD, Broadcast, ParameterServer), not the parameter changes this strategy averages
    """
    if algorithm not in ALGORITHMS:
        raise OptionError(
            f"algorithm={algorithm!r} is unknown; use one of {', '.join(ALGORITHMS)}", "algorithm"
        )
    try:
        spec = Compression.parse(compression)
    except ValueError as exc:
        raise OptionError(str(exc), "compression") from None
    if spec is None:
        return None
    if averages_changes and spec.name == "signsgd":
        raise OptionError(
            "compression='signsgd' averages signs, not magnitudes: it fits gradients "
            "(AllReduceSGD, Broadcast, ParameterServer), not the parameter changes this "
            "strategy averages",
            "compression",
        )
    usable = ("auto", *ALGORITHMS_FOR[spec.collective])
    if algorithm not in usable:
        travel = "all-gathered" if spec.collective == "all_gather" else "all-reduced"
        raise OptionError(
            f"algorithm={algorithm!r} cannot carry compression={spec.name!r}, whose payloads "
            f"are {travel}; use one of {', '.join(usable)}",
            "algorithm",
        )
    return spec


def group_mean(
    w: Any,
    tensor: torch.Tensor,
    group: Group | None = None,
    codec: Any = None,
    algorithm: str = "auto",
) -> SubProgram:
    """``mean = yield from group_mean(w, t, group, codec)``: the mean of ``t`` over the group,
    by one all-reduce, or through a compression codec (``strategies.compression``) when one is
    given (its encoded payload is what travels; see ``docs/strategies.md``)."""
    if codec is None:
        return (yield w.comm.all_reduce(tensor, op="mean", group=group, algorithm=algorithm))
    mean = yield from codec.all_reduce(w, tensor, group, algorithm=algorithm)
    log_compression(w, codec)
    return mean


def check_quorum(strategy: Any, workers: int | None = None) -> None:
    """Check a strategy's ``fault_tolerance`` and ``min_replicas`` against each other and,
    given the run's number of ``workers``, against it; each error one line naming the
    option.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> check_quorum(S(fault_tolerance=None, min_replicas=2))
    Traceback (most recent call last):
    ...
    options.declare.OptionError: min_replicas=2 applies only with fault_tolerance='quorum'
    >>> check_quorum(S(fault_tolerance="quorum", min_replicas=5), workers=4)
    Traceback (most recent call last):
    ...
    options.declare.OptionError: min_replicas=5 exceeds the run's 4 workers; use min_replicas <= 4
    """
    if strategy.fault_tolerance is None and strategy.min_replicas != 1:
        raise OptionError(
            f"min_replicas={strategy.min_replicas} applies only with fault_tolerance='quorum'",
            "min_replicas",
        )
    if workers is not None and strategy.min_replicas > workers:
        raise OptionError(
            f"min_replicas={strategy.min_replicas} exceeds the run's {workers} workers; use "
            f"min_replicas <= {workers}",
            "min_replicas",
        )


def quorum_mean(
    w: Any, tensor: torch.Tensor, quorum: Quorum, algorithm: str = "auto"
) -> Handle[torch.Tensor]:
    """A handle for the mean of ``tensor`` over the quorum's members that contribute this
    round: a member that is :attr:`~strategies.membership.Quorum.behind` (healed this round,
    its values a copy of a peer's) sends zeros and is left out of the divisor, as torchft's
    manager does for a healing replica. With no member behind it is one ``mean`` all-reduce
    over the quorum's group, the plain strategy's numbers."""
    behind = quorum.behind
    if not behind:
        return w.comm.all_reduce(tensor, op="mean", group=quorum.group, algorithm=algorithm)
    if w.rank in behind:
        tensor = torch.zeros_like(tensor)
    contributors = len(quorum.members) - len(behind)
    handle = w.comm.all_reduce(tensor, op="sum", group=quorum.group, algorithm=algorithm)
    return handle.then(lambda total: total / contributors)


def take(handle: Handle[Any]) -> Generator[Any, Any, Any]:
    """``value = yield from take(h)``: ``h``'s value, without a ``yield`` when it has
    finished already. A quorum asked for when a round starts has formed by its end, and a
    yield there would let the run's stop (its last step) close the program before the
    round's averaging is issued, which the plain strategy issues: this keeps both the same."""
    if handle.done:
        return handle.value
    return (yield handle)


#: Header fields :func:`heal_with` uses itself (a strategy's own take the prefix ``x.``).
_STEP, _VERSION = "step", "version"


def heal_with(
    w: Any,
    quorum: Quorum,
    extra: torch.Tensor | None,
    extra_numel: int,
    header: dict[str, float] | None = None,
) -> Generator[Any, Any, tuple[torch.Tensor, dict[str, float]] | None]:
    """:func:`strategies.membership.heal` with a strategy's own state beside the worker's:
    the quorum's source broadcasts over the quorum's group its ``w.export()`` (parameters,
    inner optimizer buffers) and ``extra`` (``extra_numel`` values: the last global
    parameters, an outer optimizer's state), then its plain numbers with ``header``'s; a
    member behind restores the first (``w.restore``, counting both in ``heal_bytes``) and
    gets ``(extra, header)`` back to take itself; the others get ``None``. Every member of
    the quorum calls it (nothing is sent when none is behind). ``extra`` is read on the
    source only (pass ``None`` elsewhere).

    A broadcast over the quorum's group, not a send to each member behind: a restarted
    process on ``real`` has no world group to send or receive on (it failed there with
    gloo's "connection closed" at the first heal). The numbers travel as the source's JSON
    (their names too: a member that has not stepped yet may have fewer, e.g. Adam's
    ``step``), its length first; JSON's floats round-trip exactly."""
    behind = quorum.behind
    if not behind:
        return None
    dtype = w.replica.flat.dtype
    numel = w.export_numel() + extra_numel
    # The header is numbers the ranks read back: on the rank's device, or the CPU in a
    # timing-only run (whose meta device holds none).
    host = numbers_device(w.device)
    if w.rank == quorum.source:
        assert extra is not None and extra.numel() == extra_numel
        flat, numbers = w.export()
        fields = {_STEP: w.step, _VERSION: w.version, **numbers}
        fields.update({f"x.{k}": v for k, v in (header or {}).items()})
        payload = torch.cat([flat, extra.to(dtype)]).to(w.device)  # a copy: sent as of now
        said = torch.tensor(list(json.dumps(fields).encode()), dtype=torch.uint8, device=host)
        size = torch.tensor([said.numel()], dtype=torch.int64, device=host)
    else:
        payload = torch.empty(numel, dtype=dtype, device=w.device)
        size = torch.zeros(1, dtype=torch.int64, device=host)
    payload = yield w.comm.broadcast(payload, src=quorum.source, group=quorum.group)
    size = yield w.comm.broadcast(size, src=quorum.source, group=quorum.group)
    if w.rank != quorum.source:
        said = torch.empty(int(size.item()), dtype=torch.uint8, device=host)
    said = yield w.comm.broadcast(said, src=quorum.source, group=quorum.group)
    if w.rank not in behind:
        return None
    fields = json.loads(bytes(said.cpu().tolist()).decode())
    step, version = int(fields.pop(_STEP)), int(fields.pop(_VERSION))
    own = {k[2:]: v for k, v in fields.items() if k.startswith("x.")}
    numbers = {k: v for k, v in fields.items() if not k.startswith("x.")}
    state, more = payload[: w.export_numel()], payload[w.export_numel() :]
    nbytes = float(payload.numel() * payload.element_size())
    w.restore(state, step=step, version=version, numbers=numbers, nbytes=nbytes)
    return more, own


def rewind(w: Any, params: torch.Tensor, step: int) -> None:
    """Roll this worker back to ``params`` at its optimizer step ``step`` (a round that
    failed: the steps since are done again). Its optimizer's buffers stay as they are, as
    torchft's DiLoCo restores only the parameters; the ledger sees the worker restored at
    ``step`` (a ``rejoin`` row, no bytes)."""
    w.load_parameters(params)
    flat, numbers = w.export()
    w.restore(flat, step=step, numbers=numbers)


def drop_round(w: Any, params: torch.Tensor, step: int, fresh: bool) -> None:
    """A round that failed on every member is dropped: its work is lost, and a worker with
    state goes back to ``params`` at step ``step`` (the steps since are undone, and done
    again); a restarted worker that had none (``fresh``) loses only its gradient."""
    if fresh:
        w.lose()
        return
    w.lose(steps=w.step - step, undone=True)
    rewind(w, params, step)


def log_compression(w: Any, codec: Any) -> None:
    """Log the compression ratio achieved so far, on the first worker at evaluation points."""
    if w.index == 0 and w.is_eval_step():
        w.log(compression_ratio=codec.ratio)


def pseudo_gradient(start: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """DiLoCo's outer gradient: how far the inner steps moved, ``start - current``.

    Examples
    --------
    >>> pseudo_gradient(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.5]))
    tensor([ 0.5000, -0.5000])
    """
    return start - current


def elastic_pull(x: torch.Tensor, center: torch.Tensor, alpha: float) -> torch.Tensor:
    """EASGD's elastic step of ``x`` towards ``center``: ``x - alpha (x - center)``.

    Examples
    --------
    >>> elastic_pull(torch.tensor([4.0]), torch.tensor([0.0]), 0.25)
    tensor([3.])
    """
    return x - alpha * (x - center)


def merge(local: torch.Tensor, synced: torch.Tensor, alpha: float) -> torch.Tensor:
    """Streaming DiLoCo's merge of a fragment: keep ``alpha`` of the local values (which
    moved on while the synchronisation was in flight) and take ``1 - alpha`` of the synced.
    ``alpha = 0`` replaces the fragment, as DiLoCo does.

    Examples
    --------
    >>> merge(torch.tensor([2.0]), torch.tensor([0.0]), 0.5)
    tensor([1.])
    """
    if alpha == 0:
        return synced.clone()
    return alpha * local + (1 - alpha) * synced


def adacomm_period(initial_period: int, initial_loss: float, loss: float) -> int:
    """AdaComm's period (Wang and Joshi, 2019): ``ceil(sqrt(loss / initial_loss) *
    initial_period)``, at least 1: long periods while the loss is high, shorter as it falls.

    Examples
    --------
    >>> adacomm_period(16, 2.0, 2.0), adacomm_period(16, 2.0, 0.5), adacomm_period(16, 2.0, 0.0)
    (16, 8, 1)
    """
    if not (initial_loss > 0 and math.isfinite(initial_loss)) or not math.isfinite(loss):
        return initial_period
    # Rounded before the ceiling: the losses come from an all-reduce whose float sum order
    # differs between backends, and a ratio a hair over an integer must not flip the period.
    period = round(math.sqrt(max(loss, 0.0) / initial_loss) * initial_period, 6)
    return max(1, math.ceil(period))
