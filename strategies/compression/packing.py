"""Byte packing: several tensors in one ``uint8`` buffer, so a payload is one collective.

An all-gather moves one tensor per call; a compressed payload is often two or three (values
and indices, a norm and levels). Packing them into one ``uint8`` tensor with ``view`` keeps
it to one collective and adds no byte. Every part is placed at an offset that is a multiple
of its element size, so unpacking is a zero-copy ``view`` again.

Examples
--------
>>> values, index = torch.tensor([1.5, -2.0]), torch.tensor([3, 7], dtype=torch.int32)
>>> buf = pack([values, index])
>>> buf.dtype, buf.numel()
(torch.uint8, 16)
>>> v, i = unpack(buf, [(2, torch.float32), (2, torch.int32)])
>>> v.tolist(), i.tolist()
([1.5, -2.0], [3, 7])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Layout", "layout_nbytes", "pack", "unpack"]

#: The parts of a packed buffer, in order: ``(number of elements, dtype)``.
Layout = Sequence[tuple[int, torch.dtype]]


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def layout_nbytes(layout: Layout) -> int:
    """Bytes of a buffer packed with ``layout`` (parts must keep their alignment: put wider
    dtypes first).

    Examples
    --------
    >>> layout_nbytes([(1, torch.float32), (10, torch.int8)])
    14
    """
    total = 0
    for count, dtype in layout:
        size = _itemsize(dtype)
        if total % size:
            raise ValueError(f"a {dtype} part at byte {total} is misaligned; put wider parts first")
        total += count * size
    return total


def pack(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate the raw bytes of ``parts`` (each flattened) into one ``uint8`` tensor."""
    return torch.cat([p.contiguous().reshape(-1).view(torch.uint8) for p in parts])


def unpack(buffer: torch.Tensor, layout: Layout) -> list[torch.Tensor]:
    """Split a buffer made by :func:`pack` back into typed views (no copy)."""
    if buffer.dtype != torch.uint8 or buffer.dim() != 1:
        raise ValueError(
            f"unpack takes a 1-D uint8 buffer, got {tuple(buffer.shape)} {buffer.dtype}"
        )
    expected = layout_nbytes(layout)
    if buffer.numel() != expected:
        raise ValueError(f"buffer has {buffer.numel()} bytes but the layout needs {expected}")
    out, offset = [], 0
    for count, dtype in layout:
        nbytes = count * _itemsize(dtype)
        out.append(buffer[offset : offset + nbytes].view(dtype))
        offset += nbytes
    return out
