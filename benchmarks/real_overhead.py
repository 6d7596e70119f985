"""What does commsim's real backend cost per step against plain DistributedDataParallel?

The same workload, data, seed, optimizer (SGD, lr 0.1) and world (gloo on localhost, one
torch thread per rank) trained two ways, alternated A, B, A, B ... so that machine noise
hits both:

* **A**: ``real.run("allreduce", workload, nproc=N, ...)``: commsim's ``AllReduceSGD``, one
  all-reduce of the flat gradient per step, through ``real.rank`` / ``real.runtime`` /
  ``real.transport``.
* **B**: ``torch.nn.parallel.DistributedDataParallel`` around ``workload.make_model(seed)``
  with ``torch.optim.SGD``, on ``workload.batches(rank, N, seed)``, N processes forked by a
  ``multiprocessing`` fork server that has torch and commsim imported.

The metric is wall seconds per step in steady state: start-up and the first ``--warmup``
steps are excluded. A: from the run's own ``step`` rows (``result.metrics``, rank 0's clock
when each step's all-reduce finished), ``(time[steps] - time[warmup]) / (steps - warmup)``;
B: the same difference of rank 0's ``perf_counter`` after each optimizer step. Prints the
median over repeats of A, B and A/B per workload and world size in one table, then whether
A and B end with the same parameters and held-out loss (DDP averages gradients exactly as
AllReduceSGD's mean does).

``--diagnose`` adds columns that split the gap, alternated in the same loop:

* ``flat``: A's maths without commsim's runtime: a ``strategies.replica.Replica`` (flat
  parameter and gradient buffers, the same ``compute_gradients`` / ``apply``), a blocking
  ``dist.all_reduce`` of the flat gradient, divide. The floor for "one all-reduce after
  backward".
* ``flat_wait``: ``flat`` with ``async_op=True`` and ``work.wait()`` (a C++ wait).
* ``flat_async``: ``flat`` with ``async_op=True``, a future callback on gloo's thread that
  divides and sets a ``threading.Event`` the main thread waits on: the hand-off
  ``real.transport`` / ``real.runtime`` make, without the rest of commsim.
* ``compute``: ``flat`` without the all-reduce (forward, backward, copy, step).
* ``ddp_1b``: DDP with one bucket (``bucket_cap_mb=1024``): no overlap of communication
  with backward.
* ``ddp_nobuf``: DDP with ``forward_sync_buffers=False``: without the broadcast of the
  model's buffers (``tiny_transformer``'s causal mask) before every forward, which commsim
  never sends (buffers stay local).
* ``ddp_ns``: DDP under ``no_sync()`` every step: DDP's compute and hooks, no communication.
* ``A_phases``: A with a benchmark-local ``AllReduceSGD`` subclass that times each phase of
  its loop with ``perf_counter`` and logs the sums.
* ``A_callback``: ``A_phases`` with the transport's inline completion off
  (``TorchTransport.inline = False``): each all-reduce resolves from a Python callback on
  gloo's thread that wakes the rank through a ``threading.Event``, instead of the rank
  waiting on gloo's ``Work`` itself and finishing it on its own thread (the default).

and prints, for rank 0 of every variant, the main thread's and the process's CPU seconds
per step (``time.thread_time`` / ``process_time``: less at the mercy of other jobs than wall
time) and the wall time of each phase of the loop.

``--profile`` runs A once more per world size with cProfile on rank 0's thread over the
steady-state steps and prints the top functions.

    python benchmarks/real_overhead.py --quick                   # < 1 minute
    python benchmarks/real_overhead.py                           # a few minutes
    python benchmarks/real_overhead.py --diagnose --profile      # where the time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import socket
import statistics
import tempfile
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import real
import workloads
from strategies import AllReduceSGD
from strategies.optim import OptimizerSpec
from strategies.replica import Replica

#: Benchmark name -> (registry name, builder arguments).
WORKLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp_digits": ("mlp_digits", {}),  # 4,810 parameters
    "tiny_transformer": ("tiny_transformer", {}),  # 60,601 parameters in 30 tensors
    "mlp_wide": ("mlp_digits", {"hidden": 4096}),  # 307,210 parameters (1.2 MB)
}
LR = 0.1
SEED = 0
B_VARIANTS = ("ddp", "ddp_1b", "ddp_nobuf", "ddp_ns", "flat", "flat_wait", "flat_async", "compute")
TIMEOUT = 120.0


def make_workload(key: str) -> workloads.Workload:
    name, kwargs = WORKLOADS[key]
    return workloads.get(name, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _steady(stamps: list[float], warmup: int) -> float:
    """Seconds per step between the end of step ``warmup`` and the end of the last step
    (``stamps[k - 1]``: when step ``k`` ended)."""
    return (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)


# -- A: commsim's AllReduceSGD on real ---------------------------------------------------------
A_PHASES = ("compute", "yield_compute", "call", "wait", "apply", "loop")


class PhasedAllReduceSGD(AllReduceSGD):
    """``AllReduceSGD`` whose worker times each phase of its loop (``perf_counter``), and its
    main thread's and whole process's CPU seconds, over steps ``warmup + 1 .. steps - 1``,
    and logs them once, before the last step (a log after it would come after the stop).
    With ``profile`` set to a directory, rank 0 also runs cProfile over those steps and
    saves its stats there. Nothing else differs from ``AllReduceSGD.worker``."""

    def __init__(self, warmup: int, profile: str | None = None, callback: bool = False) -> None:
        super().__init__()
        self.warmup = warmup
        self.profile = profile
        self.callback = callback

    def worker(self, w: Any) -> Any:
        if self.callback:  # the completion path before inline completion (a private knob)
            w.comm._transport.inline = False
        group = w.comm.new_group(w.workers)
        clock = time.perf_counter
        last = w.total_steps - 1
        phases = dict.fromkeys(A_PHASES, 0.0)
        profiler = cProfile.Profile() if self.profile and w.rank == 0 else None
        cpu = (0.0, 0.0)
        end = clock()
        while not w.done:
            t0 = clock()
            handle = w.compute_gradients()  # forward, backward, clone, event
            t1 = clock()
            grads = yield handle  # the driver's round trip for a finished handle
            t2 = clock()
            handle = w.comm.all_reduce(grads, op="mean", group=group)  # checks, gloo call
            t3 = clock()
            grads = yield handle  # the all-reduce, gloo's thread, the wake-up
            t4 = clock()
            w.apply(grads)
            t5 = clock()
            if self.warmup < w.step <= last:
                for key, seconds in zip(
                    A_PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t0 - end)
                ):
                    phases[key] += seconds
            if w.step == self.warmup:
                cpu = (time.thread_time(), time.process_time())
                if profiler is not None:
                    profiler.enable()
            if w.step == last:
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(str(Path(self.profile) / f"rank{w.rank}.prof"))
                main_cpu = time.thread_time() - cpu[0]
                w.log(
                    steps_timed=last - self.warmup,
                    cpu_main=main_cpu,
                    cpu_process=time.process_time() - cpu[1],
                    **phases,
                )
            end = clock()


def run_a(
    key: str, nproc: int, steps: int, warmup: int, strategy: Any = "allreduce"
) -> dict[str, Any]:
    """One real.run: its steady-state seconds per step, final parameters and held-out loss
    (and, for :class:`PhasedAllReduceSGD`, each rank's phases and CPU, per step)."""
    result = real.run(
        strategy,
        make_workload(key),
        nproc=nproc,
        steps=steps,
        optimizer={"name": "sgd", "lr": LR},
        seed=SEED,
        eval_every=steps,  # evaluate at step 0 and the last step only (done after the run)
        timeout=TIMEOUT,
    )
    m = result.metrics
    stamps = m[m["kind"] == "step"].sort_values("step")["time"].tolist()
    assert len(stamps) == steps, (len(stamps), steps)
    ranks: list[dict[str, float]] = []
    for _, row in m[m["kind"] == "log"].sort_values("rank").iterrows():
        k = row["steps_timed"]
        ranks.append({p: row[p] / k for p in (*A_PHASES, "cpu_main", "cpu_process")})
    return {
        "per_step": _steady(stamps, warmup),
        "params": result.parameters,
        "loss": result.summary["final_loss"],
        "ranks": ranks,
    }


# -- B and the diagnostic variants: plain torch processes ---------------------------------------
def _b_rank(
    rank: int, nproc: int, port: int, key: str, variant: str, steps: int, warmup: int, out: Any
) -> None:
    torch.set_num_threads(1)  # as real/rank.py does
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    wait = timedelta(seconds=TIMEOUT)
    store = dist.TCPStore("127.0.0.1", port, nproc, is_master=rank == 0, timeout=wait)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=nproc, timeout=wait)
    workload = make_workload(key)
    batches = workload.batches(rank, nproc, SEED)
    model = workload.make_model(SEED)
    clock = time.perf_counter
    stamps: list[float] = []
    phases = dict.fromkeys(("compute", "call", "wait", "apply"), 0.0)
    cpu = (0.0, 0.0)
    if variant.startswith("ddp"):
        ddp = DistributedDataParallel(
            model,
            bucket_cap_mb=1024 if variant == "ddp_1b" else None,
            forward_sync_buffers=False if variant == "ddp_nobuf" else None,
        )
        optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)

        def step(_: int) -> None:
            x, y = next(batches)
            optimizer.zero_grad()
            with ddp.no_sync() if variant == "ddp_ns" else nullcontext():
                loss = workload.loss(ddp(x), y)
                loss.backward()
            loss.item()  # as Replica.compute_gradients does
            optimizer.step()

    else:
        replica = Replica(model, OptimizerSpec.parse({"name": "sgd", "lr": LR}))
        done = threading.Event()

        def divide(future: Any, grads: torch.Tensor) -> None:  # on gloo's thread
            future.value()
            grads.div_(nproc)
            done.set()

        def step(k: int) -> None:
            t0 = clock()
            grads, _, _ = replica.compute_gradients(batches, workload.step_loss)
            t1 = clock()
            if variant == "flat":
                dist.all_reduce(grads)
            elif variant == "flat_wait":
                work = dist.all_reduce(grads, async_op=True)
            elif variant == "flat_async":
                done.clear()
                work = dist.all_reduce(grads, async_op=True)
                work.get_future().add_done_callback(lambda f: divide(f, grads))
            t2 = clock()
            if variant == "flat_wait":
                work.wait()
            elif variant == "flat_async":
                done.wait()
            if variant in ("flat", "flat_wait"):
                grads.div_(nproc)
            t3 = clock()
            replica.apply(grads)
            if k > warmup:
                phases["compute"] += t1 - t0
                phases["call"] += t2 - t1
                phases["wait"] += t3 - t2
                phases["apply"] += clock() - t3

    dist.barrier()
    for k in range(1, steps + 1):
        step(k)
        stamps.append(clock())
        if k == warmup:
            cpu = (time.thread_time(), time.process_time())
    timed = steps - warmup
    per_rank = {p: s / timed for p, s in phases.items()}
    per_rank["cpu_main"] = (time.thread_time() - cpu[0]) / timed
    per_rank["cpu_process"] = (time.process_time() - cpu[1]) / timed
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    # A numpy copy: torch would pass a tensor's storage by file descriptor, which dies with
    # the rank.
    out.put({"rank": rank, "stamps": stamps, "params": flat.numpy().copy(), "ranks": per_rank})
    dist.barrier()  # leave together: rank 0 hosts the store


_CONTEXT: Any = None


def _context() -> Any:
    """A fork server with torch, DDP's lazy imports (``torch._dynamo``, 1.1 s) and commsim
    imported: a rank starts in milliseconds (re-running this module's body costs nothing
    once its imports are there)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(
            ["torch", "torch.distributed", "torch._dynamo", "real", "strategies", "workloads"]
        )
    return _CONTEXT


def run_b(key: str, nproc: int, steps: int, warmup: int, variant: str = "ddp") -> dict[str, Any]:
    """N processes of plain torch (``variant``: see the module docstring); the same result
    fields as :func:`run_a`."""
    ctx = _context()
    out = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_b_rank, args=(r, nproc, port, key, variant, steps, warmup, out))
        for r in range(nproc)
    ]
    for p in procs:
        p.start()
    try:
        parts = sorted((out.get(timeout=TIMEOUT) for _ in procs), key=lambda d: d["rank"])
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT)
            if p.is_alive():
                p.kill()
    workload = make_workload(key)
    params = torch.from_numpy(parts[0]["params"])
    evaluator = Replica(workload.make_model(SEED))
    evaluator.load(params)
    return {
        "per_step": _steady(parts[0]["stamps"], warmup),
        "params": params,
        "loss": workload.evaluate(evaluator.model)["loss"],
        "ranks": [part["ranks"] for part in parts],
    }


# -- the comparison ------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 workloads, 3 repeats (< 1 min)")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS))
    parser.add_argument("--worlds", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--diagnose", action="store_true", help="add the diagnostic variants")
    parser.add_argument("--profile", action="store_true", help="cProfile rank 0 of A")
    args = parser.parse_args()
    keys = args.workloads or (
        ["mlp_digits", "mlp_wide"] if args.quick else ["mlp_digits", "tiny_transformer", "mlp_wide"]
    )
    repeats = args.repeats or (3 if args.quick else 5)
    steps = args.steps or (150 if args.quick else 250)
    warmup = args.warmup or (30 if args.quick else 50)
    columns = ("A", "B", *((*B_VARIANTS[1:], "A_phases", "A_callback") if args.diagnose else ()))

    def one(key: str, n: int, column: str) -> dict[str, Any]:
        if column == "A":
            return run_a(key, n, steps, warmup)
        if column == "A_phases":
            return run_a(key, n, steps, warmup, PhasedAllReduceSGD(warmup))
        if column == "A_callback":
            return run_a(key, n, steps, warmup, PhasedAllReduceSGD(warmup, callback=True))
        return run_b(key, n, steps, warmup, "ddp" if column == "B" else column)

    print(
        f"ms per step in steady state (steps {warmup + 1}..{steps}), median of {repeats} "
        f"alternated runs; gloo on localhost, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    # Start the rank pool and the fork server (their start-up is not part of any run).
    one(keys[0], args.worlds[0], "A")
    one(keys[0], args.worlds[0], "B")
    widths = {c: max(7, len(c)) for c in columns}
    head = f"{'workload':<17}{'N':>2}  " + "  ".join(f"{c:>{widths[c]}}" for c in columns)
    print(f"{head}  {'A/B':>5}  {'min A/min B':>11}")
    checks: list[str] = []
    details: list[str] = []
    for key in keys:
        for n in args.worlds:
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in columns}
            for _ in range(repeats):
                for column in columns:  # A, B, ..., A, B, ...: noise hits every column
                    runs[column].append(one(key, n, column))
            times = {c: [r["per_step"] for r in rs] for c, rs in runs.items()}
            med = {c: statistics.median(v) for c, v in times.items()}
            ratio = statistics.median(a / b for a, b in zip(times["A"], times["B"]))
            row = f"{key:<17}{n:>2}  " + "  ".join(f"{_ms(med[c]):>{widths[c]}}" for c in columns)
            best = min(times["A"]) / min(times["B"])
            print(f"{row}  {ratio:>5.2f}  {best:>11.2f}", flush=True)
            checks.append(_check(key, n, runs))
            if args.diagnose:
                details += _details(key, n, runs)
    print("\nsame numbers? (every repeat; rank 0's parameters after the last step)")
    print("\n".join(checks))
    if details:
        print(
            "\nms per step, rank 0, median over repeats: wall (as above), the main thread's CPU "
            "and the whole process's CPU (gloo's threads too), and each phase's wall time"
        )
        print("\n".join(details))
    if args.profile:
        for n in args.worlds:
            with tempfile.TemporaryDirectory() as scratch:
                run_a(keys[0], n, steps, warmup, PhasedAllReduceSGD(warmup, profile=scratch))
                _print_profile(Path(scratch) / "rank0.prof", f"{keys[0]}, N={n}, rank 0 of A")


def _check(key: str, n: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    """A and B (and ``flat``, A's maths without commsim) after the same steps."""
    line = f"{key:<17}{n:>2}"
    for other in ("B", "flat", "A_callback"):
        if other not in runs:
            continue
        pairs = list(zip(runs["A"], runs[other]))
        diff = max(float((a["params"] - b["params"]).abs().max()) for a, b in pairs)
        scale = max(float(a["params"].abs().max()) for a, _ in pairs)
        loss_diff = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in pairs)
        # Different summation orders round differently (1e-7), and training amplifies it.
        close = diff <= 1e-4 * scale and loss_diff <= 1e-4
        same = "identical" if diff == 0 else ("match" if close else "DIFFER")
        a, b = runs["A"][-1]["loss"], runs[other][-1]["loss"]
        line += (
            f"  A vs {other}: max |dparams| {diff:.1e} (max |param| {scale:.2f}), "
            f"held-out loss {a:.6f} / {b:.6f} ({same})"
        )
    return line


def _details(key: str, n: int, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for column, rs in runs.items():
        if column == "A" or not rs[0]["ranks"]:
            continue
        rank0 = [r["ranks"][0] for r in rs]
        med = {k: statistics.median(r[k] for r in rank0) for k in rank0[0]}
        wall = statistics.median(r["per_step"] for r in rs)
        phases = "  ".join(f"{k} {_ms(v)}" for k, v in med.items() if not k.startswith("cpu") and v)
        lines.append(
            f"{key:<17}{n:>2}  {column:<10} wall {_ms(wall)}  cpu main {_ms(med['cpu_main'])}"
            f"  process {_ms(med['cpu_process'])}  | {phases}"
        )
    return lines


def _print_profile(path: Path, title: str, top: int = 25) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\ncProfile, {title}, steady-state steps, by own time")
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    total = next(line for line in lines if "function calls" in line)
    print(total.strip())
    print("\n".join(line for line in lines[start:] if line.strip()))


if __name__ == "__main__":
    main()
