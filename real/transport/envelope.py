"""What a message is on the wire: an envelope frame, then its payload under its own tag.

A message travels as an *envelope* and its payload. The envelope is a fixed-size byte frame
(an int64 length, then the header and the payload's shapes and dtypes as JSON); it goes with
tag :data:`ENVELOPE_TAG`. The payload tensors follow with a tag unique to the message on its
channel (``1 + n`` for the sender's ``n``-th message to that rank, :class:`Tags`), so on
gloo a receiver can never mix up two messages' payloads (the envelope names the tag); NCCL
ignores tags and matches one pair's operations in the order they are issued, which the
receiver follows (:mod:`real.transport.matching`). With the shapes in hand, a receiver
checks them against its buffers and raises the same :class:`~strategies.comm.CommError` the
simulator raises (after draining the payload, so the sender still completes).

Examples
--------
>>> frame = encode({"v": 3}, [torch.zeros(2, 3)], tag=5)
>>> frame.dtype, len(frame) == ENVELOPE_BYTES
(torch.uint8, True)
>>> decode(frame)
({'v': 3}, [((2, 3), 'float32')], 5)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.messages import ENVELOPE_BYTES, envelope

if TYPE_CHECKING:
    from real.transport.matching import Posted

__all__ = ["ENVELOPE_BYTES", "ENVELOPE_TAG", "Arrived", "Tags", "decode", "encode"]

ENVELOPE_TAG = 0

#: A payload's signature as the envelope carries it: each tensor's shape and dtype name.
Signature = list[tuple[tuple[int, ...], str]]


def encode(header: dict[str, Any], tensors: list[torch.Tensor], tag: int) -> torch.Tensor:
    """The envelope frame of a message: ``header``, ``tensors``' shapes and dtypes, ``tag``."""
    blob = envelope(header, tensors, tag)  # the communicator checked that it fits
    frame = torch.zeros(ENVELOPE_BYTES, dtype=torch.uint8)
    frame[:8] = torch.tensor([len(blob)], dtype=torch.int64).view(torch.uint8)
    frame[8 : 8 + len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return frame


def decode(frame: torch.Tensor) -> tuple[dict[str, Any], Signature, int]:
    """``(header, signature, payload tag)`` of a frame made by :func:`encode` (on the CPU)."""
    length = int(frame[:8].view(torch.int64)[0])
    record = json.loads(bytes(frame[8 : 8 + length].tolist()).decode())
    return record["h"], [(tuple(shape), dtype) for shape, dtype in record["s"]], record["t"]


class Tags:
    """The payload tag of each message sent to each rank: ``1 + n`` for the ``n``-th."""

    def __init__(self, world_size: int) -> None:
        self._sent_to = [0] * world_size

    def next(self, dst: int) -> int:
        """The tag of the next message to ``dst``."""
        self._sent_to[dst] += 1
        return self._sent_to[dst]


@dataclass(eq=False)
class Arrived:
    """An envelope that arrived: its sender, header, payload signature and payload tag."""

    src: int
    header: dict[str, Any]
    sent: Signature
    tag: int
    recv: Posted | None = None  # the receive that claimed it
    #: The payload, when it came before any receive claimed the envelope (on gloo).
    payload: list[torch.Tensor] | None = None
