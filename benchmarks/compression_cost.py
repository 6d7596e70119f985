"""Measure the compression cost model's constants: ns per value to encode and decode.

For every scheme of ``strategies.compression`` at its default options, times the local work
that ``codec.all_reduce`` charges to the simulated clock, on a tensor of 10^6 float32 values
(a 1000 x 1000 matrix for PowerSGD), one torch thread (as ``sim.run`` runs), world of one:

* encode: error feedback, selection or quantisation, packing (what happens before the
  collective);
* decode: turning one received payload (or the reduced tensor) back into the dense mean.

Each is the median of ``--repeats`` timings after one warm-up. PowerSGD's flop cost ``b`` (ns per
flop) is timed on its two products ``M^T (M Q)`` at rank 64, where they are compute-bound;
its per-value term is what a rank-2 encode or decode costs beyond ``flops * b``.
Prints a table and the constants to paste into ``strategies/compression/cost.py``. Runs in
well under a minute.

    python benchmarks/compression_cost.py [--numel 1000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from strategies.compression import COMPRESSORS, Compression
from strategies.compression.codec import Codec, GatheredCodec, ReducedCodec
from strategies.compression.powersgd import PowerSGDCodec

#: PowerSGD rank at which the flop cost is measured (its matmuls are compute-bound there).
FLOP_RANK = 64


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocator, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_codec(name: str, numel: int, options: dict[str, Any] | None = None) -> Codec:
    spec = Compression.parse({"name": name, "cost": 0, **(options or {})})
    assert spec is not None
    side = math.isqrt(numel)
    shapes = [(side, numel // side)] if name == "powersgd" else [(numel,)]
    w = SimpleNamespace(rank=0, world_size=1, numel=numel, seed=0, model=None)
    return spec.codec(w, numel=numel, shapes=shapes)


def time_codec(codec: Codec, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Seconds of one encode and one decode, as ``codec.all_reduce`` does them."""
    if isinstance(codec, ReducedCodec):
        tensor, _, finish = codec._reducible(x, 1)
        encode = median_seconds(lambda: codec._reducible(x, 1), repeats)
        decode = median_seconds(lambda: finish(tensor.clone()), repeats)
    elif isinstance(codec, GatheredCodec):
        (packed,) = codec._encode(x)
        encode = median_seconds(lambda: codec._encode(x), repeats)
        decode = median_seconds(lambda: codec.combine([packed]), repeats)
    else:  # PowerSGD: the local power iteration, then the assembly of P Q^T
        payload = codec.encode(x)
        encode = median_seconds(lambda: codec.encode(x), repeats)
        decode = median_seconds(lambda: codec.decode(payload), repeats)
    return encode, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        x = torch.randn(args.numel)
        rows: dict[str, tuple[float, float]] = {}
        for name in COMPRESSORS:
            encode, decode = time_codec(make_codec(name, args.numel), x, args.repeats)
            rows[name] = (encode, decode)

        # PowerSGD: the flop cost from PowerSGD's two products at a rank where they are
        # compute-bound (at rank 2 they stream the matrix and the per-value term covers
        # them); the per-value term is then what rank 2 costs beyond its flops.
        side = math.isqrt(args.numel)
        matrix = x[: side * side].view(side, side)
        q = torch.randn(side, FLOP_RANK)
        flop_seconds = median_seconds(lambda: matrix.T @ (matrix @ q), args.repeats)
        flop_ns = flop_seconds * 1e9 / (4 * side * side * FLOP_RANK)
        codec = make_codec("powersgd", args.numel)
        assert isinstance(codec, PowerSGDCodec)
        power_encode = max(0.0, (rows["powersgd"][0] * 1e9 - codec.encode_flops() * flop_ns))
        power_decode = max(0.0, (rows["powersgd"][1] * 1e9 - codec.decode_flops() * flop_ns))
        power_encode /= args.numel
        power_decode /= args.numel
    finally:
        torch.set_num_threads(threads)

    n = args.numel
    print(f"torch {torch.__version__}, 1 thread, {n} values, median of {args.repeats}")
    print(f"{'scheme':<10}{'encode ms':>11}{'decode ms':>11}{'encode ns/v':>13}{'decode ns/v':>13}")
    ns: dict[str, tuple[float, float]] = {}
    for name, (encode, decode) in rows.items():
        ns[name] = (encode * 1e9 / n, decode * 1e9 / n)
        if name == "powersgd":
            ns[name] = (power_encode, power_decode)
        print(
            f"{name:<10}{encode * 1e3:>11.3f}{decode * 1e3:>11.3f}"
            f"{ns[name][0]:>13.3f}{ns[name][1]:>13.3f}"
        )
    print(f"powersgd matmul: {flop_ns:.4f} ns/flop (M^T (M Q), {side} x {side}, rank {FLOP_RANK})")
    print("\nDEFAULT_NS_PER_VALUE = {")
    for name, (encode, decode) in ns.items():
        print(f'    "{name}": ({encode:.2g}, {decode:.2g}),')
    print("}")
    print(f"DEFAULT_FLOP_NS = {flop_ns:.2g}")


if __name__ == "__main__":
    main()
