"""Error feedback (Karimireddy et al., 2019): remember what compression dropped, add it back.

A biased compressor ``C`` (top-k, PowerSGD) loses part of every gradient. Error feedback keeps
the loss in a residual ``e`` and adds it to the next gradient before compressing::

    p = g + e          # compensate
    c = C(p)           # compress what is owed so far
    e = p - D(c)       # remember what this message leaves out (D: local decode)

so ``g + e_old == D(c) + e_new`` exactly: nothing is ever lost, only delayed.

Examples
--------
>>> fb = ErrorFeedback(3)
>>> p = fb.compensate(torch.tensor([1.0, 2.0, 3.0]))
>>> fb.update(p, torch.tensor([0.0, 2.0, 3.0]))  # the compressor kept all but the first
>>> fb.residual.tolist()
[1.0, 0.0, 0.0]
>>> fb.compensate(torch.tensor([1.0, 1.0, 1.0])).tolist()
[2.0, 1.0, 1.0]
"""

from __future__ import annotations

import torch

__all__ = ["ErrorFeedback"]


class ErrorFeedback:
    """The residual of one codec (one rank, one call site), float32, ``numel`` values.

    Parameters
    ----------
    numel
        Length of the flat tensors it compensates.
    enabled
        ``False`` makes it a no-op (``compensate`` returns its input, the residual stays 0),
        so codecs need no branch of their own.
    """

    __slots__ = ("enabled", "residual")

    def __init__(self, numel: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.residual = torch.zeros(numel, dtype=torch.float32)

    def compensate(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor + residual``, a new tensor (the caller's tensor is left alone)."""
        if not self.enabled:
            return tensor
        return tensor + self.residual

    def update(self, compensated: torch.Tensor, decoded_local: torch.Tensor) -> None:
        """``residual = compensated - decoded_local``: what this message did not carry."""
        if self.enabled:
            torch.sub(compensated, decoded_local, out=self.residual)

    def set(self, residual: torch.Tensor) -> None:
        """Set the residual directly, for codecs that know it cheaper than by subtraction
        (top-k: the compensated tensor with the sent entries zeroed)."""
        if self.enabled:
            self.residual = residual
