"""Buckets in simulated time: when each is ready, the same numbers as one flat all-reduce,
and a step that overlaps its all-reduces with backward (a closed form for two ranks)."""

import pytest
import torch

import topologies
from sim import collective_time
from sim.run import run as sim_run
from strategies import AllReduceSGD, Strategy
from strategies.handles import all_of

#: mlp_digits' parameters, in definition order: 4096 + 64 (first layer), 640 + 10.
SIZES, NUMEL = (4096, 64, 640, 10), 4810
#: 0.004 MiB caps: the first layer's weight closes the first bucket, the rest is the other.
SMALL = 0.004


class RecordBuckets(Strategy):
    """Logs when each bucket of each gradient was ready, relative to the gradient's start."""

    name = "record_buckets_test_only"

    def worker(self, w):
        while not w.done:
            start = w.now
            buckets = w.compute_gradients_in_buckets(SMALL, SMALL)
            parts = []
            for i, bucket in enumerate(buckets):
                parts.append((yield bucket.handle))
                w.log(**{f"ready_{i}": w.now - start})
            whole = buckets.assemble(parts)
            yield all_of([])
            w.apply(whole)


def test_a_bucket_is_ready_at_its_share_of_backward_and_the_last_with_the_gradient():
    T = 0.03
    for accumulate in (1, 2):
        result = sim_run(
            RecordBuckets(),
            "mlp_digits",
            topologies.star(1),
            steps=2,
            compute=T,
            accumulate=accumulate,
        )
        logs = result.metrics
        first = float(logs["ready_0"].dropna().iloc[0])
        last = float(logs["ready_1"].dropna().iloc[0])
        total = T * accumulate
        # Bucket (4096, 4810) holds the last 714 parameters: ready after forward (a third of
        # the last micro-batch) and their share of its backward.
        share = (NUMEL - 4096) / NUMEL
        expected = total - T * (1 - (1 / 3 + 2 / 3 * share))
        assert first == pytest.approx(expected, rel=1e-12)
        assert last == pytest.approx(total, rel=1e-12)


def test_buckets_change_no_number_in_sim_and_the_flat_path_no_time():
    graph = topologies.star(3, bandwidth="1Gbps", latency="50us")
    common = {"steps": 4, "eval_every": 2, "compute": 0.01, "seed": 0}
    flat = sim_run(AllReduceSGD(), "mlp_digits", graph, **common)
    bucketed = sim_run(
        AllReduceSGD(bucket_mb=SMALL, first_bucket_mb=SMALL), "mlp_digits", graph, **common
    )
    assert list(flat.evals["loss"]) == list(bucketed.evals["loss"])
    assert flat.summary["bytes"] == bucketed.summary["bytes"]
    assert bucketed.summary["time"] < flat.summary["time"]


def test_an_overlapped_step_takes_compute_plus_the_last_buckets_all_reduce():
    # Two ranks on a star: a ring all-reduce of N bytes is two rounds of N/2 bytes over two
    # links, 2 (2 L + N / (2 B)). Bucket 1 (the last 714 parameters) is ready at
    # T (1/3 + 2/3 * 714/4810) and its all-reduce ends before backward does, so each step is
    # T + c(last bucket) in place of T + c(whole gradient).
    L, B, T, steps = 50e-6, 1e9 / 8, 0.01, 3
    graph = topologies.star(2, bandwidth="1Gbps", latency="50us")

    def ring(nbytes):
        return 2 * (2 * L + nbytes / 2 / B)

    first, last, whole = ring(4 * (NUMEL - 4096)), ring(4 * 4096), ring(4 * NUMEL)
    assert first == pytest.approx(collective_time(graph, "all_reduce", 4 * 714, algorithm="ring"))
    ready = T * (1 / 3 + 2 / 3 * 714 / NUMEL)
    assert ready + first < T  # hidden behind backward

    flat = sim_run(
        AllReduceSGD(algorithm="ring"),
        "mlp_digits",
        graph,
        steps=steps,
        eval_every=steps,
        compute=T,
    )
    assert flat.summary["time"] == pytest.approx(steps * (T + whole), rel=1e-12)
    strategy = AllReduceSGD(bucket_mb=SMALL, first_bucket_mb=SMALL, algorithm="ring")
    result = sim_run(strategy, "mlp_digits", graph, steps=steps, eval_every=steps, compute=T)
    time = result.summary["time"]
    assert time == pytest.approx(steps * (T + last), rel=1e-12)
    assert time < steps * (T + whole)  # less than compute + the flat all-reduce
    assert time >= steps * max(T, first + last)  # at least the compute, and the comm
    ranks = result.ranks
    # The exposed communication is the last bucket's; the first bucket's is overlapped.
    assert list(ranks["comm_time"]) == pytest.approx([steps * last] * 2, rel=1e-9)
    assert list(ranks["overlap_time"]) == pytest.approx([steps * first] * 2, rel=1e-9)


def test_flat_all_reduce_overlaps_nothing():
    graph = topologies.star(2, bandwidth="1Gbps", latency="50us")
    result = sim_run(AllReduceSGD(), "mlp_digits", graph, steps=2, compute=0.01)
    assert list(result.ranks["overlap_time"]) == [0.0, 0.0]
    assert torch.tensor(list(result.ranks["comm_time"])).gt(0).all()
