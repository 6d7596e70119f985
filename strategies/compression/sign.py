"""``signsgd``: one bit a value, majority vote (Bernstein et al., 2018).

Each rank sends the signs of its tensor packed 8 to a byte (``ceil(numel / 8)`` bytes); the
payloads are all-gathered and every rank takes the sign of the sum of the ranks' signs
(ties, possible with an even group, give 0). The "mean" it returns is that vote, a tensor of
-1, 0 and +1: scale the learning rate for it (signSGD steps are ``lr * sign``). One bit
cannot say 0, so a value of 0 votes +1 (bit 0 means ">= 0"). No error feedback: majority
vote is the scheme's own robustness mechanism, and EF-signSGD is a different algorithm.

Examples
--------
>>> bits = pack_bits(torch.tensor([True, False, False, True, True, False, False, False, True]))
>>> bits.tolist()
[25, 1]
>>> unpack_bits(bits, 9).tolist()
[True, False, False, True, True, False, False, False, True]
>>> majority_vote([torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 1.0, -1.0])])
tensor([1., 0., 0.])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from strategies.compression.codec import GatheredCodec

__all__ = ["SignCodec", "majority_vote", "pack_bits", "unpack_bits"]

_SHIFTS = torch.arange(8, dtype=torch.uint8)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a 1-D bool tensor 8 to a byte, least significant bit first."""
    n = bits.numel()
    padded = torch.zeros(math.ceil(n / 8) * 8, dtype=torch.uint8)
    padded[:n] = bits
    # Distinct bits never carry, so a uint8 sum is a bitwise or.
    return (padded.view(-1, 8) << _SHIFTS.to(padded.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` bits of a :func:`pack_bits` buffer, as a bool tensor."""
    return ((packed.unsqueeze(1) >> _SHIFTS.to(packed.device)) & 1).view(-1)[:n].bool()


def majority_vote(signs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The plain reference: sign of the sum of the ranks' signs (ties give 0)."""
    return torch.sign(torch.stack(list(signs)).sum(dim=0))


class SignCodec(GatheredCodec):
    """Sign bits (1 = negative), packed, all-gathered, decoded as a majority vote."""

    def payload_nbytes(self) -> int:
        return math.ceil(self.numel / 8)

    def _encode(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [pack_bits(flat < 0)]

    def _decode(self, payload: list[torch.Tensor]) -> torch.Tensor:
        negative = unpack_bits(payload[0], self.numel)
        return 1.0 - 2.0 * negative.to(torch.float32)

    def combine(self, gathered: Sequence[torch.Tensor]) -> torch.Tensor:
        # Count negative votes in int32 (exact for any group), then vote.
        negatives = torch.zeros(self.numel, dtype=torch.int32)
        for packed in gathered:
            negatives += unpack_bits(packed, self.numel)
        return torch.sign(len(gathered) - 2 * negatives).to(torch.float32)
