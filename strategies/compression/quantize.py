"""Quantisation: ``qsgd`` (stochastic levels, unbiased) and ``uint8`` (min-max, nearest).

``qsgd`` (Alistarh et al., 2017) sends the tensor's L2 norm and, per value, a signed level
``l`` in ``-s..s`` (``s = levels``) drawn so that ``E[norm * l / s] = x``: with
``a = |x| / norm * s``, the level is ``floor(a) + 1`` with probability ``a - floor(a)``, else
``floor(a)``. Levels travel as int8 (so ``levels <= 127``): ``numel + 4`` bytes. Draws come
from a per-rank generator seeded from the run's seed, the rank and the call site's salt, so
runs reproduce and ranks' rounding errors are independent (which is what averages them out).

``uint8`` scales the tensor's ``[min, max]`` onto ``0..255`` and rounds to nearest: the
error of a value is at most ``scale / 2`` with ``scale = (max - min) / 255``; ``min`` and
``scale`` travel as float32: ``numel + 8`` bytes. Biased (rounding to nearest), but
deterministic.

Both payloads differ per rank (their own norm or range), so they are all-gathered.

Examples
--------
>>> from strategies.compression.cost import CostModel
>>> codec = UInt8Codec("uint8", {}, numel=3, shapes=[(3,)], seed=0, rank=0, salt="",
...                    cost=CostModel(0.0, 0.0))
>>> codec.decode(codec.encode(torch.tensor([0.0, 1.0, 2.55])))
tensor([0.0000, 1.0000, 2.5500])
"""

from __future__ import annotations

from typing import Any

import torch

from strategies.compression.codec import GatheredCodec, generator
from strategies.compression.packing import layout_nbytes, unpack

__all__ = ["QSGDCodec", "UInt8Codec"]


class QSGDCodec(GatheredCodec):
    """Norm (float32) and signed stochastic levels (int8), packed, all-gathered."""

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        self.levels = int(options["levels"])
        self.layout = [(1, torch.float32), (self.numel, torch.int8)]
        # Per rank: each rank's rounding must be independent of the others'.
        self.generator = generator(self.seed, self.rank, self.salt, "qsgd")

    def payload_nbytes(self) -> int:
        return layout_nbytes(self.layout)

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        packed = torch.empty(self.payload_nbytes(), dtype=torch.uint8)
        norm_out, level_out = unpack(packed, self.layout)
        norm = torch.linalg.vector_norm(flat)
        norm_out.fill_(norm)
        if not flat.is_meta and norm == 0:  # (a timing-only run's payload: its shape alone)
            level_out.zero_()
            return [packed]
        scaled = flat.abs().div_(norm).mul_(self.levels)
        low = scaled.floor()
        up = torch.rand(self.numel, generator=self.generator) < scaled.sub_(low)
        # |x| / norm may round to just above 1; clamp so the top level fits int8.
        level = low.add_(up).clamp_(max=self.levels).mul_(flat.sign())
        level_out.copy_(level)
        return [packed]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        norm, level = unpack(payload[0], self.layout)
        return level.to(torch.float32).mul_(norm / self.levels)


class UInt8Codec(GatheredCodec):
    """Min and scale (2 float32) and values rounded onto ``0..255``, packed, all-gathered."""

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        self.layout = [(2, torch.float32), (self.numel, torch.uint8)]

    def payload_nbytes(self) -> int:
        return layout_nbytes(self.layout)

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        packed = torch.empty(self.payload_nbytes(), dtype=torch.uint8)
        header, q = unpack(packed, self.layout)
        low, high = torch.aminmax(flat)
        scale = (high - low) / 255
        header[0], header[1] = low, scale
        if flat.is_meta or scale > 0:  # (a timing-only run's payload: its shape alone)
            q.copy_(flat.sub(low).div_(scale).round_().clamp_(0, 255))
        else:  # a constant tensor: min alone says it all
            q.zero_()
        return [packed]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        header, q = unpack(payload[0], self.layout)
        return q.to(torch.float32).mul_(header[1]).add_(header[0])
