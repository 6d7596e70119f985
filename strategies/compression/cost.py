"""The compute-time cost model: how long encoding and decoding take on the simulated clock.

A compressed all-reduce trades bytes for local work. The simulator charges that work to the
rank's device (``yield w.compute(seconds)``) with a linear model per scheme::

    encode_seconds = numel * encode_ns * 1e-9 + encode_flops * flop_ns * 1e-9
    decode_seconds = numel * decode_ns * 1e-9 + decode_flops * flop_ns * 1e-9

``numel`` is the number of float32 values the codec compresses. Only PowerSGD has a matmul
term: per matrix of ``n x m`` at rank ``r``, encoding computes ``P = M Q`` and ``Q = M^T P``
(``4 n m r`` flops) and decoding ``M ~ P Q^T`` (``2 n m r`` flops); its per-value term covers
the element-wise work (error feedback, copies, orthogonalisation of the small ``P``).

A compressed all-reduce charges one encode, then, after the collective, one decode per
payload it decodes: every rank's payload for schemes that all-gather (``topk``, ``qsgd``,
``uint8``, ``signsgd``: ``group size x decode_seconds``), one for schemes that all-reduce
(``fp16``, ``bf16``, ``randomk``, ``powersgd``). A real run does the work itself and charges
nothing (``w.compute`` finishes at once there).

The defaults are measured on the development machine by ``benchmarks/compression_cost.py``:
one CPU thread (as ``sim.run`` runs torch), a tensor of 10^6 float32 values, the scheme's
default options, world of one, median of 15 repeats; the flop cost is timed on PowerSGD's
two products on a 1000 x 1000 matrix at rank 64 (compute-bound there; at rank 2 they stream
the matrix, which the per-value term covers). Per-value constants are averages at the
default options: top-k's selection and the number of decoded entries depend on ``ratio``,
so override ``cost`` when that matters. Override per run with the ``cost`` option:
a number (ns per value for both encode and decode, no flop term; ``0`` makes compression
free) or a dict of ``encode``, ``decode`` and ``flop`` (ns per flop).

Examples
--------
>>> model = CostModel(encode=2.0, decode=1.0)
>>> model.encode_seconds(1_000_000)
0.002
>>> CostModel(encode=0.0, decode=0.0, flop=0.5).decode_seconds(10, flops=4_000)
2e-06
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COST_KEYS", "CostModel", "DEFAULT_FLOP_NS", "DEFAULT_NS_PER_VALUE", "default_cost"]

#: Measured ns per value ``(encode, decode)`` at default options; see the module docstring.
#: benchmarks/compression_cost.py, torch 2.13 CPU, 1 thread, 10^6 values, median of 15
#: repeats. The machine (2 cores) was shared and runs varied up to 2x under load: these are
#: the quietest of several runs, i.e. what the code costs when nothing else runs.
DEFAULT_NS_PER_VALUE: dict[str, tuple[float, float]] = {
    "fp16": (0.7, 0.45),
    "bf16": (0.7, 0.45),
    "topk": (22.0, 0.55),  # torch.topk dominates; the decode scatters only k values
    "randomk": (16.0, 0.3),  # the shared randperm dominates
    "qsgd": (13.0, 1.4),  # one uniform draw per value
    "uint8": (1.9, 1.5),
    "powersgd": (2.4, 0.25),  # plus the matmul term below
    "signsgd": (2.9, 3.7),
}
#: Measured ns per flop of PowerSGD's matmuls at rank 64, where they are compute-bound
#: (about 125 Gflop/s on one thread); see the module docstring.
DEFAULT_FLOP_NS = 0.008

#: The keys of a resolved ``cost`` option.
COST_KEYS = ("encode", "decode", "flop")


def default_cost(name: str) -> dict[str, float]:
    """The measured cost option of scheme ``name``, as ``parse`` resolves ``cost=None``.

    Examples
    --------
    >>> sorted(default_cost("topk"))
    ['decode', 'encode', 'flop']
    >>> default_cost("topk")["flop"]
    0.0
    """
    encode, decode = DEFAULT_NS_PER_VALUE[name]
    flop = DEFAULT_FLOP_NS if name == "powersgd" else 0.0
    return {"encode": encode, "decode": decode, "flop": flop}


@dataclass(frozen=True)
class CostModel:
    """Seconds of one encode or decode: ns per value, plus ns per flop of matrix products."""

    encode: float
    decode: float
    flop: float = 0.0

    def encode_seconds(self, numel: int, flops: float = 0.0) -> float:
        return (numel * self.encode + flops * self.flop) * 1e-9

    def decode_seconds(self, numel: int, flops: float = 0.0) -> float:
        return (numel * self.decode + flops * self.flop) * 1e-9
