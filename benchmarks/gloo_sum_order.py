"""Probe gloo's summation order against :mod:`strategies.reduction_order`, bit for bit.

For each group size, each buffer size and dtype, every rank all-reduces (and reduces to a
root) contributions drawn with a seed all ranks know, with signs and exponents spread wide so
that any two groupings of a sum almost surely differ somewhere. Rank 0 then recomputes the
sum in gloo's order (:func:`strategies.reduction_order.reduce_in_order`) and in rank order,
and prints how many elements of gloo's result each misses. The model is right where the
first count is 0; the second shows the probe can tell the orders apart. It also runs the
10-value 3-rank probe of ``tests/real/test_faults.py`` (1 and +-1e8) and prints what it shows.

Run: ``.venv/bin/python benchmarks/gloo_sum_order.py [max_ranks [min_ranks]]`` (CPU, local
processes; 2 to 6 ranks by default, a few minutes on two cores).
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from strategies.aggregate import reduce_tensors  # noqa: E402
from strategies.reduction_order import reduce_in_order  # noqa: E402

SIZES = [1, 2, 3, 4, 5, 7, 10, 13, 17, 64, 100, 1000, 4097, 65537, 100_000, 262_145]
LARGE = [600_000, 1_200_000]  # past gloo's 1 MiB segment limit in float32
#: Where all-reduce and reduce cut chunks differently (reduce keeps 1 MiB segments).
SPLIT = {3: [(torch.float32, 2_000_000), (torch.float64, 1_000_000)]}
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def contribution(rank: int, numel: int, dtype: torch.dtype, trial: int) -> torch.Tensor:
    seed = ((rank * 1_000_003 + numel) * 31 + DTYPES.index(dtype)) * 7 + trial
    g = torch.Generator().manual_seed(seed % (2**31))
    span = 6 if dtype in (torch.float16,) else 20
    mant = torch.rand(numel, generator=g, dtype=torch.float64) + 0.5
    exp = torch.randint(-span, span, (numel,), generator=g).double()
    sign = torch.randint(0, 2, (numel,), generator=g).double() * 2 - 1
    return (sign * mant * torch.exp2(exp)).to(dtype)


def worker(rank: int, n: int, path: str, queue: mp.Queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=n)
    lines = []
    sizes = SIZES + (LARGE if n <= 4 else [])
    sub = dist.new_group(list(range(1, n))) if n >= 4 else None
    cases = [(d, m) for d in DTYPES for m in sizes if d == torch.float32 or m <= 100_000]
    for dtype, numel in cases + SPLIT.get(n, []):
        for trial in range(2):
            xs = [contribution(r, numel, dtype, trial) for r in range(n)]
            for what in ("all_reduce", "reduce0", f"reduce{n - 1}", "subgroup"):
                if what == "subgroup" and sub is None:
                    continue
                t = xs[rank].clone()
                members = list(range(1, n)) if what == "subgroup" else list(range(n))
                if what == "all_reduce":
                    dist.all_reduce(t)
                elif what == "subgroup":
                    if rank in members:
                        dist.all_reduce(t, group=sub)
                else:
                    dist.reduce(t, dst=int(what[len("reduce") :]))
                # one rank checks each: the root of a reduce, the subgroup's first member
                checks = {"all_reduce": 0, "subgroup": 1}
                checker = checks[what] if what in checks else int(what[len("reduce") :])
                if rank != checker:
                    continue
                part = [xs[r] for r in members]
                kind = "reduce" if what.startswith("reduce") else "all_reduce"
                model = reduce_in_order(part, "sum", "gloo", kind)
                plain = reduce_tensors(part, "sum")
                miss = int((model.view(-1) != t.view(-1)).sum())
                miss_rank = int((plain.view(-1) != t.view(-1)).sum())
                lines.append((n, str(dtype).split(".")[1], numel, trial, what, miss, miss_rank))
    queue.put(lines)  # every rank: the rows it checked (its roots' and groups')
    dist.destroy_process_group()


def ten_values(rank: int, path: str, queue: mp.Queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=3)
    first = []
    for k in range(3):
        others = [r for r in range(3) if r != k]
        value = 1.0 if rank == k else (1e8 if rank == others[0] else -1e8)
        t = torch.full((10,), value)
        dist.all_reduce(t)
        first.append(t)
    if rank == 0:
        pairs = []
        for i in range(10):
            ones = [k for k in range(3) if first[k][i] == 1.0]
            pairs.append(tuple(r for r in range(3) if r not in ones))
        queue.put(pairs)
    dist.destroy_process_group()


def main(max_ranks: int = 6, min_ranks: int = 2) -> int:
    ctx = mp.get_context("spawn")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        q = ctx.Queue()
        procs = [ctx.Process(target=ten_values, args=(r, f"{tmp}/ten", q)) for r in range(3)]
        for p in procs:
            p.start()
        print("3 ranks, 10 values: the pair added first, per element:", q.get())
        for p in procs:
            p.join()
        print("n dtype numel trial collective  model_misses rank_order_misses")
        for n in range(min_ranks, max_ranks + 1):
            q = ctx.Queue()
            procs = [ctx.Process(target=worker, args=(r, n, f"{tmp}/g{n}", q)) for r in range(n)]
            for p in procs:
                p.start()
            got = [q.get() for _ in range(n)]
            for p in procs:
                p.join()
            for lines in got:
                for row in lines:
                    bad += row[5] != 0
                    print(*row)
    print("rows where the model misses gloo:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
