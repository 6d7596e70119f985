"""Timing-only runs (sim.timing_only, strategies.shapes): the same clock, bytes and breakdown
as a full run, without numbers, evaluations or memory per rank."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

import sim
import workloads
from sim.memory import RunSize
from strategies import AllReduceSGD
from strategies.compression import Compression
from strategies.ledger import consensus_distance
from strategies.shapes import META
from topologies.limits import estimate

STEPS, EVAL_EVERY = 6, 2

#: (strategy spec, topology): one of each family, asynchronous ones and codecs included.
CASES = [
    ("allreduce", "star:n=4"),
    ("parameter_server:mode=async", "star:n=4"),
    ("parameter_server:mode=sync", "star:n=4"),
    ("local_sgd:period=2", "star:n=4"),
    ("diloco:period=2", "star:n=4"),
    ("streaming_diloco:period=4,fragments=2", "star:n=4"),
    ("gossip:mode=sync,graph=ring", "ring:n=4"),
    ("gossip:mode=async", "ring:n=4"),
    ("easgd:mode=sync,period=2", "star:n=4"),
    ("broadcast", "star:n=4"),
    ("hierarchical:period=2", "hierarchical:nodes=2,gpus_per_node=2"),
    ("allreduce:compression=topk", "star:n=4"),
    ("allreduce:compression=qsgd", "star:n=4"),
    ("allreduce:compression=uint8", "star:n=4"),
    ("allreduce:compression=signsgd", "star:n=4"),
    ("allreduce:compression=randomk", "star:n=4"),
]


def _timeline(result) -> tuple:
    """What must not depend on the numbers: every step row's time, samples and bytes, each
    rank's compute/comm/idle split, and the summary's clock and counters."""
    rows = result.metrics
    steps = rows[rows["kind"] == "step"][["step", "time", "samples", "bytes", "staleness"]]
    ranks = rows[rows["kind"] == "rank"][["rank", "compute_time", "comm_time", "idle_time"]]
    keys = ("steps", "time", "bytes", "samples", "discarded_samples", "stop_reason")
    return (
        steps.to_numpy().tolist(),
        ranks.to_numpy().tolist(),
        {k: result.summary[k] for k in keys},
    )


def _same(a: tuple, b: tuple) -> bool:
    # NaN staleness (a step no owner reported) equals itself here.
    return json.dumps(a, default=str) == json.dumps(b, default=str)


@pytest.mark.parametrize(("strategy", "topology"), CASES)
def test_a_timing_only_run_has_the_full_runs_clock_bytes_and_breakdown(strategy, topology):
    kw = dict(steps=STEPS, eval_every=EVAL_EVERY, compute=0.01)
    full = sim.run(strategy, "mlp_digits", topology, **kw)
    timed = sim.run(strategy, "mlp_digits", topology, **kw, timing_only=True)
    assert _same(_timeline(timed), _timeline(full))
    assert timed.summary["bytes"] > 0


@pytest.mark.parametrize(
    "compute",
    [
        {"base": 0.02, "straggler": "lognormal", "options": {"sigma": 0.5}},
        {"base": "flops", "device": "H100", "efficiency": 0.4},
        {"base": 0.01, "server": 0.004},
    ],
)
def test_compute_models_that_do_not_measure_time_a_timing_only_run_alike(compute):
    kw = dict(steps=STEPS, eval_every=EVAL_EVERY, compute=compute)
    full = sim.run("parameter_server:mode=async", "mlp_digits", "star:n=4", **kw)
    timed = sim.run("parameter_server:mode=async", "mlp_digits", "star:n=4", **kw, timing_only=True)
    assert _same(_timeline(timed), _timeline(full))


def test_faults_and_their_recovery_cost_the_same_time_and_bytes_timing_only():
    kw = dict(steps=20, eval_every=10, compute=0.01)
    crash = {"kind": "crash", "rank": 2, "step": 5, "restart_step": 10}
    restart = {
        "events": [{"kind": "crash", "rank": 1, "step": 12, "restart": 1.0}],
        "recovery": "restart",
        "checkpoint_every": 5,
    }
    for strategy, faults in (
        ("diloco:period=2,fault_tolerance=quorum", [crash]),
        ("allreduce", restart),
    ):
        full = sim.run(strategy, "quadratic", "ring:n=4", **kw, faults=faults)
        timed = sim.run(strategy, "quadratic", "ring:n=4", **kw, faults=faults, timing_only=True)
        assert _same(_timeline(timed), _timeline(full))
        for key in ("failures", "lost_steps", "heal_bytes", "checkpoint_time", "recovery_time"):
            assert timed.summary[key] == full.summary[key], key


def test_a_timing_only_run_records_no_evaluation_and_its_step_time(tmp_path):
    result = sim.run(
        "allreduce",
        "mlp_digits",
        "star:n=4",
        steps=STEPS,
        compute=0.05,
        timing_only=True,
        out=tmp_path / "run",
    )
    kinds = set(result.metrics["kind"])
    assert "eval" not in kinds and "loss" not in result.metrics
    assert "final_loss" not in result.summary
    assert result.summary["step_time"] == pytest.approx(result.summary["time"] / STEPS)
    assert result.summary["step_time"] >= 0.05  # a step is at least its compute
    assert result.parameters is None
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["timing_only"] is True
    assert record["summary"]["step_time"] == result.summary["step_time"]
    written = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert len(written) == len(result.metrics) and "loss" not in written


def test_a_full_run_records_no_timing_only_key():
    result = sim.run("allreduce", "quadratic", "ring:n=2", steps=2, eval_every=1)
    assert "timing_only" not in result.config and "step_time" not in result.summary


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_loss": 0.5}, "target_loss needs losses; timing_only computes none; drop one"),
        ({"compute": "measure"}, "compute.base='measure' times real steps"),
        ({"compute": {"base": 0.01, "server": "measure"}}, "compute.server='measure' times"),
        ({"strategy": "local_sgd:period=adaptive"}, "period='adaptive' sets its period from"),
        ({"timing_only": "yes"}, "timing_only='yes' must be True or False"),
    ],
)
def test_what_needs_numbers_is_refused_in_one_line(kwargs, message):
    kwargs = {"timing_only": True, **kwargs}
    strategy = kwargs.pop("strategy", "allreduce")
    with pytest.raises(ValueError) as raised:
        sim.run(strategy, "mlp_digits", "star:n=4", steps=2, **kwargs)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_memory_estimate_counts_no_replica_in_a_timing_only_run():
    topology = estimate(1024, 1, 1024)
    full = RunSize(1024, 1024, 10**9, 4, topology)
    timed = RunSize(1024, 1024, 10**9, 4, topology, timing_only=True)
    assert full.replica_bytes == 1024 * 10**9 * 4 * 3
    assert timed.replica_bytes == 0
    assert timed.nbytes == topology.nbytes + 1024 * 64_000
    assert "timing only" in timed.describe()


def test_the_consensus_distance_of_shapes_is_not_a_number():
    assert math.isnan(consensus_distance([torch.empty(3, device=META)] * 2))


@pytest.mark.parametrize(
    "scheme", ["fp16", "bf16", "topk", "randomk", "qsgd", "uint8", "powersgd", "signsgd"]
)
def test_a_codec_sends_as_many_bytes_for_shapes_as_for_numbers(scheme):
    class W:  # what a codec reads of a worker
        numel, seed, rank, model = 1000, 0, 0, None

    spec = Compression.parse(scheme)
    real = spec.codec(W(), salt="x").encode(torch.randn(1000))
    with META:
        shaped = spec.codec(W(), salt="x").encode(torch.empty(1000))
    assert [t.device.type for t in shaped] == ["meta"] * len(real) or scheme == "randomk"
    assert [(t.shape, t.dtype) for t in shaped] == [(t.shape, t.dtype) for t in real]


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def test_memory_stays_flat_with_32_replicas_of_a_4_gb_model():
    try:  # "5" resets the process's peak resident memory (VmHWM; Linux 4.0 and later)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak memory")
    x = torch.randn(16, 16384)
    # 1.07 billion parameters, 4.3 GB of float32: one real replica would show.
    workload = workloads.Workload(
        "big",
        lambda: nn.Sequential(*[nn.Linear(16384, 16384) for _ in range(4)]),
        (x, x),
        (x, x),
        nn.functional.mse_loss,
        batch_size=4,
    )
    before = _status_mb("VmRSS")
    result = sim.run(
        "diloco:period=2", workload, "star:n=32", steps=4, compute=0.05, timing_only=True
    )
    grown = _status_mb("VmHWM") - before
    parameters = 4 * (16384 * 16384 + 16384)
    # DiLoCo averages the workers' changes at least once in 4 steps: an all-reduce of the
    # float32 model, in which each of the 32 ranks sends at least 31/32 of it.
    assert result.summary["bytes"] >= 31 * 4 * parameters
    assert grown < 500  # one real replica alone would be 4,096 MiB


class _Clipping(AllReduceSGD):
    """Clips its gradient's norm: a decision on a value, which shapes do not have."""

    name = "clipping_for_timing_only_tests"

    def worker(self, w):
        while not w.done:
            grads = yield w.compute_gradients()
            if grads.norm() > 1.0:
                grads = grads / grads.norm()
            w.apply((yield w.comm.all_reduce(grads, op="mean")))


def test_a_strategy_that_reads_a_value_is_stopped_in_one_line_naming_its_line():
    assert sim.run(_Clipping(), "quadratic", "ring:n=2", steps=2).summary["steps"] == 2
    with pytest.raises(ValueError) as raised:
        sim.run(_Clipping(), "quadratic", "ring:n=2", steps=2, timing_only=True)
    message = str(raised.value)
    assert message.startswith("timing_only: test_timing_only.py:")
    assert "reads a value of a tensor that has a shape only" in message
    assert "\n" not in message


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_workload_whose_model_is_built_on_a_device_runs_timing_only(device):
    x = torch.randn(8, 64)
    workload = workloads.Workload(
        "on_a_device",
        lambda: nn.Sequential(nn.Linear(64, 64, device=device), nn.Linear(64, 1, device=device)),
        (x, x[:, :1]),
        (x, x[:, :1]),
        nn.functional.mse_loss,
        batch_size=4,
    )
    result = sim.run("diloco:period=2", workload, "star:n=4", steps=4, timing_only=True)
    numel = 64 * 64 + 64 + 64 + 1
    assert result.summary["steps"] == 4
    # The averaging every 2 steps all-reduces the float32 model's changes.
    assert result.summary["bytes"] >= 2 * 4 * numel


def test_gradient_accumulation_times_alike_and_counts_its_micro_batches():
    kw = dict(steps=4, eval_every=2, compute=0.01, accumulate=3)
    full = sim.run("allreduce", "mlp_digits", "star:n=4", **kw)
    timed = sim.run("allreduce", "mlp_digits", "star:n=4", **kw, timing_only=True)
    assert _same(_timeline(timed), _timeline(full))
    assert timed.summary["samples"] == 4 * 4 * 3 * 32  # steps x workers x micro-batches x batch
