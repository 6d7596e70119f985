"""The breakdown a person reads: exposed and overlapped communication, the critical rank, MFU."""

import pytest

import topologies
from sim.run import run as sim_run
from strategies import AllReduceSGD
from studies.breakdown import breakdown
from studies.report import summary_rows

FLOPS = {"base": "flops", "device": "A100", "efficiency": 0.4}


def test_mfu_is_the_efficiency_when_a_lone_worker_only_computes():
    # One worker: no communication, every second is compute at `efficiency` of the peak.
    result = sim_run(AllReduceSGD(), "mlp_digits", topologies.star(1), steps=5, compute=FLOPS)
    assert breakdown(result).mfu == pytest.approx(0.4, rel=1e-12)


def test_mfu_counts_micro_batches_and_falls_with_a_straggler():
    # A slow device (efficiency 1e-5: ~0.4 ms a micro-batch) on a fast network: the
    # communication is under 1e-4 of a step.
    graph = topologies.star(2, bandwidth="1Tbps", latency="1ns")
    slow = {**FLOPS, "efficiency": 1e-5, "slowdown": {1: 3.0}}
    result = sim_run(AllReduceSGD(), "mlp_digits", graph, steps=4, compute=slow, accumulate=2)
    b = breakdown(result)
    # Both workers compute 4 x 2 micro-batches; every step waits for rank 1, 3x slower.
    assert b.mfu == pytest.approx(1e-5 / 3, rel=1e-3)
    assert b.critical == 1
    assert b.critical_row["compute"] == pytest.approx(3 * b.table.loc[0, "compute"])


def test_no_mfu_without_a_flops_compute_model():
    result = sim_run(AllReduceSGD(), "quadratic", topologies.star(2), steps=2, compute=0.01)
    assert breakdown(result).mfu is None


def test_the_summary_shows_overlapped_communication_once_buckets_overlap_backward():
    graph = topologies.star(2, bandwidth="1Gbps", latency="50us")
    flat = sim_run(AllReduceSGD(), "mlp_digits", graph, steps=3, compute=0.01)
    bucketed = sim_run(
        AllReduceSGD(bucket_mb=0.004, first_bucket_mb=0.004),
        "mlp_digits",
        graph,
        steps=3,
        compute=0.01,
    )
    before, after = breakdown(flat), breakdown(bucketed)
    assert before.table["overlapped_comm"].eq(0).all()
    assert after.table["overlapped_comm"].gt(0).all()
    assert (after.table["exposed_comm"] < before.table["exposed_comm"]).all()
    rows = dict(summary_rows(bucketed))
    assert rows["critical rank: compute / exposed / overlapped / idle (s)"].startswith("0: ")
    exposed, overlapped = rows["comm exposed / overlapped (s)"].split(" / ")
    assert float(overlapped) > 0
    assert "MFU" not in rows
