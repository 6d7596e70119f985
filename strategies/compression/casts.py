"""Half-precision casts: ``fp16`` and ``bf16``, 2 bytes a value.

The all-reduce runs in the half dtype on values already divided by the group size, as
torch DDP's ``fp16_compress_hook`` does: the sum of ``size`` halves of the mean cannot
overflow where the mean itself does not (fp16 tops out at 65504). Dividing in float32 before
the cast (DDP divides after it) saves one rounding and keeps values that only the sum would
overflow finite. ``bf16`` keeps float32's range with 8 bits of mantissa; ``fp16`` keeps 11
bits in a narrow range. Neither carries error feedback: the rounding error is unbiased enough
in practice and tiny next to the gradient noise.

Examples
--------
>>> from strategies.compression.cost import CostModel
>>> codec = HalfCodec("fp16", {}, numel=3, shapes=[(3,)], seed=0, rank=0, salt="",
...                   cost=CostModel(0.0, 0.0))
>>> payload = codec.encode(torch.tensor([1.0, 0.1, -3.0]))
>>> payload[0].dtype, codec.ratio
(torch.float16, 0.5)
>>> codec.decode(payload)
tensor([ 1.0000,  0.1000, -3.0000])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from strategies.compression.codec import ReducedCodec

__all__ = ["DTYPES", "HalfCodec"]

#: The scheme names and their wire dtypes.
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class HalfCodec(ReducedCodec):
    """Cast to ``fp16`` or ``bf16`` for the wire, back to float32 after."""

    def __init__(self, name: str, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, options, **kwargs)
        self.dtype = DTYPES[name]

    def buffers(self) -> list[torch.Tensor]:
        return [torch.empty(self.numel, dtype=self.dtype)]

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [flat.to(self.dtype)]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        return payload[0].to(torch.float32)

    def _reducible(
        self, flat: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, str, Callable[[torch.Tensor], torch.Tensor]]:
        # Divide first (see the module docstring), then sum in the half dtype.
        tensor = (flat / size).to(self.dtype)
        return tensor, "sum", _to_float32


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.float32)
