"""Sparsification: send ``k`` of ``numel`` values, with error feedback by default.

``topk`` (Aji & Heafield, 2017; Lin et al., 2018) sends the ``k`` largest-magnitude entries
of the compensated gradient with their indices (float32 + int32, ``8k`` bytes a rank). Ranks
pick different indices, so the payloads are all-gathered and every rank scatter-adds them in
rank order. ``randomk`` (Stich et al., 2018) sends ``k`` entries at indices drawn from a
generator seeded identically on every rank, from the run's seed, the call site's salt and a
call counter: only the values travel (``4k`` bytes a rank) and they are all-reduced directly.
Its point-to-point payload carries the counter too (8 bytes), so a receiver that did not make
the same calls (a parameter server) still redraws the indices.

``k = max(1, ceil(ratio * numel))``. Without error feedback, what is not sent is lost.

Examples
--------
>>> from strategies.compression.cost import CostModel
>>> codec = TopKCodec("topk", {"ratio": 0.5, "error_feedback": True}, numel=4, shapes=[(4,)],
...                   seed=0, rank=0, salt="", cost=CostModel(0.0, 0.0))
>>> codec.decode(codec.encode(torch.tensor([0.1, -4.0, 2.0, 0.3])))
tensor([ 0.,  -4.,  2.,  0.])
>>> codec.feedback.residual
tensor([0.1000, 0.0000, 0.0000, 0.3000])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from strategies.compression.codec import GatheredCodec, ReducedCodec, generator
from strategies.compression.packing import layout_nbytes, unpack

__all__ = ["RandomKCodec", "TopKCodec", "sparse_k"]

# int32 indices halve what int64 would send; they cap a codec at 2^31 - 1 values.
_MAX_NUMEL = 2**31 - 1


def sparse_k(ratio: float, numel: int) -> int:
    """Entries sent: ``max(1, ceil(ratio * numel))``.

    Examples
    --------
    >>> sparse_k(0.01, 1000), sparse_k(0.01, 10), sparse_k(1.0, 7)
    (10, 1, 7)
    """
    return max(1, math.ceil(ratio * numel))


class TopKCodec(GatheredCodec):
    """The ``k`` largest-magnitude values and their int32 indices, packed, all-gathered."""

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        if self.numel > _MAX_NUMEL:
            raise ValueError(
                f"compression topk indexes with int32: numel={self.numel} exceeds 2^31 - 1; "
                "compress the tensor in chunks (one codec each)"
            )
        self.k = sparse_k(options["ratio"], self.numel)
        self.layout = [(self.k, torch.float32), (self.k, torch.int32)]

    def payload_nbytes(self) -> int:
        return layout_nbytes(self.layout)

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        compensated = self.feedback.compensate(flat)
        # sorted=False: the order does not matter to a scatter-add and sorting costs k log k.
        index = torch.topk(compensated.abs(), self.k, sorted=False).indices
        values = compensated[index]
        if self.feedback.enabled:
            # compensated is our own tensor here; zeroing the sent entries is the residual
            # (p - decode(p) in one pass, exact).
            compensated[index] = 0.0
            self.feedback.set(compensated)
        packed = torch.empty(self.payload_nbytes(), dtype=torch.uint8)
        v, i = unpack(packed, self.layout)
        v.copy_(values)
        i.copy_(index)
        return [packed]

    def _accumulate(self, out: torch.Tensor, packed: torch.Tensor) -> None:
        values, index = unpack(packed, self.layout)
        out.index_add_(0, index, values)

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(self.numel, dtype=torch.float32)
        self._accumulate(out, payload[0])
        return out


class RandomKCodec(ReducedCodec):
    """``k`` values at indices every rank draws alike; the values are all-reduced (mean)."""

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        self.k = sparse_k(options["ratio"], self.numel)
        #: Calls so far: every rank of a group makes the same calls, so the same draws.
        self.calls = 0

    def indices(self, call: int) -> torch.Tensor:
        """The sorted indices of call number ``call`` (the same on every rank)."""
        if self.k == self.numel:
            return torch.arange(self.numel)
        # Rank-free on purpose: every rank of the group must draw the same indices.
        g = generator(self.seed, self.salt, "randomk", call)
        return torch.randperm(self.numel, generator=g)[: self.k].sort().values

    def _select(self, flat: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
        call, self.calls = self.calls, self.calls + 1
        index = self.indices(call)
        compensated = self.feedback.compensate(flat)
        values = compensated[index]
        if self.feedback.enabled:
            compensated[index] = 0.0  # our own tensor: the residual is what was not sent
            self.feedback.set(compensated)
        return call, index, values

    def _scatter(self, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.numel, dtype=torch.float32)
        out[index] = values
        return out

    def buffers(self) -> list[torch.Tensor]:
        return [torch.empty(self.k, dtype=torch.float32), torch.empty(1, dtype=torch.int64)]

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        call, _, values = self._select(flat)
        # The call number is read by the receiver: on the CPU whatever the default device.
        return [values, torch.tensor([call], dtype=torch.int64, device="cpu")]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        values, call = payload
        return self._scatter(self.indices(int(call[0])), values.to(torch.float32))

    def _reducible(
        self, flat: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, str, Callable[[torch.Tensor], torch.Tensor]]:
        _, index, values = self._select(flat)
        return values, "mean", lambda mean: self._scatter(index, mean)
