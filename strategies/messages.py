"""Messages: a payload of tensors plus a header of a few named numbers, and how both
backends size, describe and check them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from strategies.checks import CommError

__all__ = [
    "ENVELOPE_BYTES",
    "HEADER_FIELDS",
    "Header",
    "Received",
    "Signature",
    "check_envelope",
    "check_header",
    "envelope",
    "check_received",
    "header_nbytes",
    "message_nbytes",
    "signature",
]

#: Header limits: small enough that the real backend ships it in one fixed-size frame.
HEADER_FIELDS, HEADER_NAME_CHARS = 16, 32
HEADER_FIELD_BYTES = 8

Header = dict[str, float]
#: The frame a real message's header and payload shapes travel in (not charged: the
#: header's fields are). Every message must fit, in both backends.
ENVELOPE_BYTES = 4096


class Received(NamedTuple):
    """A received message: the sender, the filled buffers and the header."""

    src: int
    tensors: list[torch.Tensor]
    header: dict[str, Any]


def message_nbytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes a payload occupies on the wire: the tensors' real sizes.

    Examples
    --------
    >>> message_nbytes([torch.zeros(10), torch.zeros(1, dtype=torch.int64)])
    48
    """
    return sum(t.numel() * t.element_size() for t in tensors)


def check_header(header: Mapping[str, Any] | None) -> dict[str, Any]:
    """A message header: a few named finite numbers (ints stay ints).

    Examples
    --------
    >>> check_header({"version": 3})
    {'version': 3}
    >>> check_header({"version": torch.tensor(3)})
    Traceback (most recent call last):
    ...
    strategies.checks.CommError: header['version'] is a Tensor; header values are plain numbers (int or float); send tensors as the payload
    """
    if header is None:
        return {}
    if not isinstance(header, Mapping):
        raise CommError(f"header must be a dict of names to numbers, got {type(header).__name__}")
    if len(header) > HEADER_FIELDS:
        raise CommError(
            f"header has {len(header)} fields; at most {HEADER_FIELDS} fit (send bulk data as "
            "the payload)"
        )
    checked: dict[str, Any] = {}
    for name, value in header.items():
        if not isinstance(name, str) or not 0 < len(name) <= HEADER_NAME_CHARS:
            raise CommError(
                f"header field {name!r} must be a name of 1..{HEADER_NAME_CHARS} characters"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CommError(
                f"header[{name!r}] is a {type(value).__name__}; header values are plain numbers "
                "(int or float); send tensors as the payload"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise CommError(f"header[{name!r}]={value} must be finite")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise CommError(f"header[{name!r}]={value} does not fit in 64 bits")
        checked[name] = value
    return checked


def header_nbytes(header: Mapping[str, Any]) -> int:
    """Bytes a header is charged: 8 per field (an int64 or float64 each).

    Examples
    --------
    >>> header_nbytes({"version": 3, "count": 1})
    16
    """
    return HEADER_FIELD_BYTES * len(header)


Signature = list[tuple[tuple[int, ...], str]]


def signature(tensors: Sequence[torch.Tensor]) -> Signature:
    """Shapes and dtypes of a payload, as compared against a receiver's buffers."""
    return [(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in tensors]


def check_received(rank: int, src: int, sent: Signature, buffers: Sequence[torch.Tensor]) -> None:
    """Raise the one-line error both backends give when a message does not fit the buffers.

    Examples
    --------
    >>> check_received(1, 0, [((3,), "float32")], [torch.zeros(2)])
    Traceback (most recent call last):
    ...
    strategies.checks.CommError: rank 1 received a message of [(3,) float32] from rank 0 into buffers of [(2,) float32]; make the buffers match the payload
    """
    expected = signature(buffers)
    if [(tuple(s), d) for s, d in sent] != expected:

        def show(sig: Signature) -> str:
            return ", ".join(f"{tuple(s)} {d}" for s, d in sig)

        raise CommError(
            f"rank {rank} received a message of [{show(sent)}] from rank {src} into buffers of "
            f"[{show(expected)}]; make the buffers match the payload"
        )


def envelope(header: Mapping[str, Any], tensors: Sequence[torch.Tensor], tag: int) -> bytes:
    """The header and payload shapes as the real backend sends them ahead of the payload."""
    record = {"h": dict(header), "s": signature(tensors), "t": tag}
    return json.dumps(record, separators=(",", ":")).encode()


def check_envelope(header: Mapping[str, Any], tensors: Sequence[torch.Tensor]) -> None:
    """Raise if a message's header and shapes would not fit the real backend's envelope
    (checked in both backends, so what runs in ``sim`` runs for real).

    Examples
    --------
    >>> check_envelope({}, [torch.zeros(1)] * 400)
    Traceback (most recent call last):
    ...
    strategies.checks.CommError: a message of 400 tensors with this header does not fit the 4096-byte envelope; send fewer, larger tensors (concatenate them) or a smaller header
    """
    if _surely_fits(header, tensors):  # the usual message, without encoding it
        return
    if len(envelope(header, tensors, 2**63 - 1)) > ENVELOPE_BYTES - 8:
        raise CommError(
            f"a message of {len(tensors)} tensors with this header does not fit the "
            f"{ENVELOPE_BYTES}-byte envelope; send fewer, larger tensors (concatenate them) "
            "or a smaller header"
        )


#: Worst-case JSON bytes of one payload tensor with at most 8 dims (8 numbers of up to 19
#: digits and commas, a dtype name of up to 10 characters, brackets and quotes) and of one
#: checked header field with an ASCII name (name, quotes, colon, a 64-bit int or the longest
#: float repr, comma), and of the record around them (keys, brackets, the tag).
_TENSOR_BYTES, _FIELD_BYTES, _FRAME_BYTES = 178, 60, 40


def _surely_fits(header: Mapping[str, Any], tensors: Sequence[torch.Tensor]) -> bool:
    if len(tensors) > 16 or any(t.dim() > 8 for t in tensors):
        return False
    if not all(name.isascii() for name in header):
        return False
    worst = _FRAME_BYTES + _TENSOR_BYTES * len(tensors) + _FIELD_BYTES * len(header)
    return worst <= ENVELOPE_BYTES - 8
