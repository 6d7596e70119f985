"""The per-rank codec: state, byte accounting, and how a payload composes with a collective.

A :class:`Codec` is one rank's compressor at one call site (its error-feedback residual, its
random streams, PowerSGD's warm-start ``Q``). Made by
:meth:`strategies.compression.Compression.codec`, it offers the same scheme three ways:

* ``mean = yield from codec.all_reduce(w, tensor, group)``: a sub-program that charges the
  encode time (:mod:`~strategies.compression.cost`), runs the scheme's collectives, charges
  the decode time, and returns the decoded mean over the group;
* ``codec.start(w, tensor, group)``: a handle of the decoded mean, for single-round schemes;
  encodes now, starts one collective and decodes in :meth:`Handle.then` (pure maths, which
  may run in a library thread on ``real``); it charges no compute;
* ``encode`` / ``buffers`` / ``decode``: the point-to-point form, a list of tensors to
  ``send`` and ``recv``, for parameter servers and reduce-to-root strategies.

Two compositions cover the single-round schemes. A :class:`ReducedCodec`'s payload can be
summed as it is (a half-precision cast, values at shared random indices), so it is
*all-reduced*. A :class:`GatheredCodec`'s payload cannot (indices differ per rank, levels
carry per-rank norms), so it is packed into one ``uint8`` tensor and *all-gathered*; every
rank decodes every payload and adds them in rank order (the order ``sim`` and the parameter
server reduce in), then divides by the group size.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from typing import Any, ClassVar

import torch

from strategies.checks import Group
from strategies.compression.cost import CostModel
from strategies.compression.feedback import ErrorFeedback
from strategies.handles import Handle
from strategies.messages import message_nbytes, signature

__all__ = [
    "charge",
    "Codec",
    "GatheredCodec",
    "ReducedCodec",
    "SubProgram",
    "generator",
    "group_size",
    "stream_seed",
]

#: What a codec's collective sub-program yields, receives and returns.
SubProgram = Generator[Handle[Any], Any, torch.Tensor]


def charge(w: Any, seconds: float) -> Generator[Handle[Any], Any, None]:
    """``yield from charge(w, seconds)``: encoding or decoding work on ``w``'s device, by the
    cost model. Nothing is yielded for zero seconds (a free scheme): a zero charge would
    still cost the simulator an event and wait behind the device's queue."""
    if seconds > 0:
        yield w.compute(seconds)


def stream_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (run seed, salt, rank, call counter...).

    Hashing, rather than adding, keeps streams apart: ``(seed=1, rank=0)`` and
    ``(seed=0, rank=1)`` must not share a stream. Stable across processes (unlike ``hash``),
    so every rank of a real run derives the same seed.

    Examples
    --------
    >>> stream_seed(0, "grads", 1) == stream_seed(0, "grads", 1)
    True
    >>> stream_seed(1, 0) == stream_seed(0, 1)
    False
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded with :func:`stream_seed` of ``parts``."""
    return torch.Generator().manual_seed(stream_seed(*parts))


def group_size(w: Any, group: Group | None) -> int:
    """Ranks in ``group`` (``None``: the world)."""
    return int(w.world_size) if group is None else group.size


class Codec(ABC):
    """One rank's compressor for a flat float32 tensor of ``numel`` values.

    Parameters
    ----------
    name
        The scheme's name.
    options
        The scheme's resolved options (``Compression.options``).
    numel
        Values per tensor.
    shapes
        The parameter shapes the flat tensor concatenates (PowerSGD compresses matrices).
    seed, rank, salt
        Seed the codec's random streams: the run's seed, this rank, and the call site.
    cost
        The compute-time model of one encode and decode.
    """

    #: Collective rounds of :meth:`all_reduce`.
    rounds: ClassVar[int] = 1
    #: The collective a payload composes with: ``"all_reduce"`` or ``"all_gather"``.
    collective: ClassVar[str] = "all_reduce"

    def __init__(
        self,
        name: str,
        options: dict[str, Any],
        *,
        numel: int,
        shapes: Sequence[tuple[int, ...]],
        seed: int,
        rank: int,
        salt: str,
        cost: CostModel,
    ) -> None:
        self.name = name
        self.options = options
        self.numel = numel
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.seed = seed
        self.rank = rank
        self.salt = salt
        self.cost = cost
        #: Raw float32 bytes compressed so far, and bytes this rank sent for them.
        self.raw_bytes = 0
        self.sent_bytes = 0
        self.feedback = ErrorFeedback(numel, bool(options.get("error_feedback", False)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} numel={self.numel} salt={self.salt!r}>"

    # -- accounting -----------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        """Bytes sent so far / raw float32 bytes so far (1.0 before any call)."""
        return self.sent_bytes / self.raw_bytes if self.raw_bytes else 1.0

    def _count(self, nbytes: int) -> None:
        self.raw_bytes += 4 * self.numel
        self.sent_bytes += nbytes

    def encode_flops(self) -> float:
        """Matrix-product flops of one encode (0 for element-wise schemes)."""
        return 0.0

    def decode_flops(self) -> float:
        """Matrix-product flops of one decode (0 for element-wise schemes)."""
        return 0.0

    def encode_seconds(self) -> float:
        """Cost-model seconds of one encode of ``numel`` values."""
        return self.cost.encode_seconds(self.numel, self.encode_flops())

    def decode_seconds(self) -> float:
        """Cost-model seconds of one decode of ``numel`` values."""
        return self.cost.decode_seconds(self.numel, self.decode_flops())

    def decodes(self, size: int) -> int:
        """Payloads a rank decodes in one :meth:`all_reduce` over ``size`` ranks."""
        return 1

    # -- checks ---------------------------------------------------------------------------
    def _flat(self, tensor: Any, call: str) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"codec.{call} takes a torch.Tensor, got {type(tensor).__name__}")
        if tensor.numel() != self.numel:
            raise ValueError(
                f"codec.{call} got {tensor.numel()} values but the codec was made for "
                f"{self.numel}; make one codec per tensor size (spec.codec(w, numel=...))"
            )
        if not tensor.is_floating_point():
            raise TypeError(f"codec.{call} takes a floating-point tensor, got {tensor.dtype}")
        return tensor.detach().reshape(-1).to(torch.float32)

    # -- point to point -------------------------------------------------------------------
    def encode(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """The payload of ``tensor`` to ``send`` (error feedback applied and updated)."""
        payload = self._encode(self._flat(tensor, "encode"))
        self._count(message_nbytes(payload))
        return payload

    def decode(self, payload: Sequence[torch.Tensor]) -> torch.Tensor:
        """A payload from :meth:`encode` (any rank's) back to a flat float32 tensor."""
        payload = list(payload)
        if signature(payload) != signature(self.buffers()):
            raise ValueError(
                f"codec.decode got a payload of {signature(payload)} but {self.name} payloads "
                f"of {self.numel} values are {signature(self.buffers())}; decode what encode made"
            )
        return self._decode(payload)

    @abstractmethod
    def buffers(self) -> list[torch.Tensor]:
        """Empty tensors of the payload's shapes and dtypes, to ``recv`` into."""

    @abstractmethod
    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]: ...

    @abstractmethod
    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor: ...

    # -- collectives ----------------------------------------------------------------------
    def start(
        self, w: Any, tensor: torch.Tensor, group: Group | None = None, *, algorithm: str = "auto"
    ) -> Handle[torch.Tensor]:
        """Encode now, start one collective; the handle's value is the decoded mean (float32,
        ``tensor``'s shape). Charges no compute: yield ``w.compute(codec.encode_seconds())``
        first to charge it."""
        flat = self._flat(tensor, "start")
        handle = self._start(w, flat, group, group_size(w, group), algorithm)
        shape = tensor.shape
        if tuple(shape) == (self.numel,):
            return handle
        return handle.then(lambda mean: mean.reshape(shape))

    def all_reduce(
        self, w: Any, tensor: torch.Tensor, group: Group | None = None, *, algorithm: str = "auto"
    ) -> SubProgram:
        """``mean = yield from codec.all_reduce(w, tensor, group)``: the decoded mean over the
        group, with encode and decode time charged to ``w``'s clock."""
        yield from charge(w, self.encode_seconds())
        mean = yield self.start(w, tensor, group, algorithm=algorithm)
        yield from charge(w, self.decode_seconds() * self.decodes(group_size(w, group)))
        return mean

    @abstractmethod
    def _start(
        self, w: Any, flat: torch.Tensor, group: Group | None, size: int, algorithm: str
    ) -> Handle[torch.Tensor]: ...


class ReducedCodec(Codec):
    """A scheme whose payload is all-reduced as it is (the group agrees on its layout)."""

    collective = "all_reduce"

    @abstractmethod
    def _reducible(
        self, flat: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, str, Callable[[torch.Tensor], torch.Tensor]]:
        """``(tensor, op, finish)``: what to all-reduce with which op, and how to turn the
        reduced tensor into the decoded mean."""

    def _start(
        self, w: Any, flat: torch.Tensor, group: Group | None, size: int, algorithm: str
    ) -> Handle[torch.Tensor]:
        tensor, op, finish = self._reducible(flat, size)
        self._count(message_nbytes([tensor]))
        handle = w.comm.all_reduce(tensor, op=op, group=group, algorithm=algorithm)
        return handle.then(finish)


class GatheredCodec(Codec):
    """A scheme whose payloads are all-gathered as one packed ``uint8`` tensor per rank."""

    collective = "all_gather"

    @abstractmethod
    def payload_nbytes(self) -> int:
        """Bytes of one packed payload."""

    def buffers(self) -> list[torch.Tensor]:
        return [torch.empty(self.payload_nbytes(), dtype=torch.uint8)]

    def decodes(self, size: int) -> int:
        return size  # every rank's payload is decoded on every rank

    def _accumulate(self, out: torch.Tensor, packed: torch.Tensor) -> None:
        """Add one rank's decoded payload into ``out`` (sparse schemes scatter instead)."""
        out.add_(self._decode([packed]))

    def combine(self, gathered: Sequence[torch.Tensor]) -> torch.Tensor:
        """The mean of the decoded payloads, added in group order."""
        out = torch.zeros(self.numel, dtype=torch.float32)
        for packed in gathered:
            self._accumulate(out, packed)
        return out.div_(len(gathered))

    def _start(
        self, w: Any, flat: torch.Tensor, group: Group | None, size: int, algorithm: str
    ) -> Handle[torch.Tensor]:
        (packed,) = self._encode(flat)
        self._count(packed.numel())
        handle = w.comm.all_gather(packed, group=group, algorithm=algorithm)
        return handle.then(self.combine)
