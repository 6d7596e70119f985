"""The per-operator roofline: max(FLOPs / peak, bytes / bandwidth) per operator."""

import dataclasses

import numpy as np
import pytest
import torch

import topologies
import workloads
from devices import device
from devices.roofline import _Counter, roofline
from sim.compute import ComputeModel
from sim.run import run

H100 = device("H100")


def test_an_operator_costs_the_larger_of_its_two_times():
    a = torch.empty(256, 512, device="meta")
    b = torch.empty(512, 128, device="meta")
    with _Counter(peak=1e12, bandwidth=1e9) as counter:
        a @ b
        a.t()  # a view: no bytes, no time
    flops, nbytes = 2 * 256 * 512 * 128, 4 * (256 * 512 + 512 * 128 + 256 * 128)
    assert (counter.flops, counter.bytes, counter.operators) == (flops, nbytes, 1)
    assert counter.seconds == max(flops / 1e12, nbytes / 1e9)


@pytest.mark.parametrize("name", ["tiny_transformer", "gpt2_small"])
def test_its_flops_are_flop_counter_modes(name):
    w = workloads.get(name, **({"n_chars": 4000} if name == "tiny_transformer" else {}))
    r = roofline(w, "H100")
    assert r.flops == w.flops_per_step()
    if name == "gpt2_small":  # 8 x 1,024 tokens: the large matmuls are compute-bound
        assert 0 < r.memory_bound < 1 and r.seconds > r.flops / H100.peak_flops


def test_it_is_the_compute_time_without_a_memory_limit_and_the_memory_time_without_a_compute_one():
    w = workloads.get("transformer", n_sequences=16)
    both = roofline(w, H100)
    compute_only = roofline(w, dataclasses.replace(H100, memory_bandwidth=1e30))
    memory_only = roofline(w, dataclasses.replace(H100, peak_flops=1e30))
    assert compute_only.seconds == pytest.approx(both.flops / H100.peak_flops, rel=1e-9)
    assert memory_only.seconds == pytest.approx(both.bytes / H100.memory_bandwidth, rel=1e-9)
    assert both.seconds >= max(compute_only.seconds, memory_only.seconds)
    assert both.memory_bound == 1  # this small a model: every operator waits on memory


def test_compute_model_roofline_base():
    w = workloads.get("gpt2_small", batch_size=1, seq_len=128)
    model = ComputeModel(base="roofline", device="H200", efficiency=0.5)
    model.resolve(w, seed=0)
    assert model.seconds == pytest.approx(roofline(w, "H200", 0.5).seconds)
    assert model.seconds == pytest.approx(2 * roofline(w, "H200").seconds)
    with pytest.raises(ValueError, match="did you mean 'H200'"):
        ComputeModel.parse({"base": "roofline", "device": "H2000"})


def test_a_simulated_run_of_a_transformer_takes_its_roofline_per_step():
    w = workloads.get("transformer", n_sequences=32, batch_size=4)
    steps = 3
    result = run(
        "allreduce",
        w,
        topologies.star(2, bandwidth=1e15, latency=1e-12),
        steps=steps,
        compute={"base": "roofline", "device": "A100", "efficiency": 0.5},
        eval_every=steps,
    )
    workers = result.metrics[result.metrics["kind"] == "worker"]
    expected = steps * roofline(w, "A100", 0.5).seconds
    np.testing.assert_allclose(workers["compute_time"], expected, rtol=1e-9)
    assert result.summary["final_loss"] < np.log(256)  # it trained, a little


def test_repeated_blocks_extend_exactly():
    """A transformer's roofline from one and two blocks is the whole model's."""
    w = workloads.get("transformer", n_layers=5, kv_heads=2, positions="rope", n_sequences=16)
    assert w.n_blocks == 5 and w.with_blocks(5).shape == w.shape
    extended = roofline(w, "H100")
    whole = roofline(_Plain(w), "H100")
    assert (extended.flops, extended.bytes, extended.operators) == (
        whole.flops,
        whole.bytes,
        whole.operators,
    )
    assert extended.seconds == pytest.approx(whole.seconds, rel=1e-12)
    assert extended.flops == w.flops_per_step()


class _Plain:
    """A workload's model, data and loss, without its blocks' structure."""

    def __init__(self, w):
        self.meta_model, self.meta_batch, self.loss = w.meta_model, w.meta_batch, w.loss
