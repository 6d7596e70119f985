"""Gradient and parameter compression: one spec, per-rank codecs, both backends.

A strategy parses a scheme once (``spec = Compression.parse("topk")``), makes one codec per
rank and call site (``codec = spec.codec(w)``) and uses it in its program::

    mean = yield from codec.all_reduce(w, grads, group)   # compressed all-reduce (mean)
    payload = codec.encode(grads)                         # or point to point
    grads = codec.decode(received.tensors)

Modules: :mod:`~.spec` (names, options, checks), :mod:`~.codec` (per-rank state, byte
accounting, composition with collectives), :mod:`~.casts` (``fp16``, ``bf16``),
:mod:`~.sparse` (``topk``, ``randomk``), :mod:`~.quantize` (``qsgd``, ``uint8``),
:mod:`~.powersgd`, :mod:`~.sign` (``signsgd``), :mod:`~.feedback` (error feedback),
:mod:`~.cost` (the compute-time model), :mod:`~.packing` (one buffer per payload).
"""

from strategies.compression.codec import Codec
from strategies.compression.cost import CostModel
from strategies.compression.feedback import ErrorFeedback
from strategies.compression.spec import COMPRESSORS, Compression

__all__ = ["COMPRESSORS", "Codec", "Compression", "CostModel", "ErrorFeedback"]
