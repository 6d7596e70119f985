"""commsim's prediction beside a published iteration time: ResNet-50 on 256 P100s.

Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
(arXiv:1706.02677): ResNet-50 trained on ImageNet (1,281,167 images) for 90 epochs with a
minibatch of 8,192 (32 images a GPU) on 256 Tesla P100s in one hour: 32 Big Basin servers of 8
GPUs joined by NVLink, one 50 Gbit/s Ethernet NIC a server; gradients summed inside a server,
then across servers (recursive halving and doubling), in parallel with backward. One hour for
90 x 1,281,167 / 8,192 = 14,076 iterations is at most 0.256 s an iteration (the hour also
holds data loading and evaluation).

The same configuration, timing-only: ``resnet50`` with 32 images a GPU, float32; 32 nodes of 8
GPUs (``hierarchical``: 20 GB/s NVLink a GPU, the 50 Gbit/s NIC shared by the node's 8 GPUs);
``AllReduceSGD`` with the hierarchical algorithm, DDP's 25 MiB buckets overlapping backward;
compute from ResNet-50's FLOPs (counted on PyTorch's meta device) at a fraction of the P100's
10.6 TFLOP/s float32 peak (NVIDIA's P100 SXM2 datasheet), the assumption printed beside
each line. ::

    python benchmarks/published.py
"""

from __future__ import annotations

import argparse

import sim
import topologies
import workloads

P100_FP32_PEAK = 10.6e12  # FLOP/s, Tesla P100 SXM2 (NVIDIA datasheet)
MEASURED = 90 * 1_281_167 / 8192  # iterations in the hour
MEASURED_S = 3600 / MEASURED


def predict(efficiency: float, steps: int = 3) -> dict[str, float]:
    workload = workloads.get("resnet50", batch_size=32)
    seconds = workload.flops_per_step() / (P100_FP32_PEAK * efficiency)
    topology = topologies.hierarchical(
        32,
        8,
        intra_bandwidth="20GB/s",
        intra_latency="2us",
        inter_bandwidth=50e9 / 8 / 8,  # bytes/s a GPU: one 50 Gbit/s NIC for 8 GPUs
        inter_latency="5us",
    )
    figures = []
    for n in (1 + steps, 1 + 2 * steps):  # steady state: the difference of two runs
        result = sim.run(
            "allreduce:algorithm=hierarchical,bucket_mb=25",
            workload,
            topology,
            steps=n,
            compute=seconds,
            timing_only=True,
        )
        figures.append(result.summary["time"])
    return {"compute_s": seconds, "step_s": (figures[1] - figures[0]) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--efficiency", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    args = parser.parse_args()
    print(f"Goyal et al. 2017, 256 P100s: at most {MEASURED_S:.3f} s an iteration (measured)")
    for efficiency in args.efficiency:
        got = predict(efficiency)
        print(
            f"commsim, compute at {efficiency:.0%} of the FP32 peak "
            f"({got['compute_s']:.3f} s): {got['step_s']:.3f} s an iteration "
            f"({got['step_s'] / MEASURED_S:.2f}x the measured bound)"
        )


if __name__ == "__main__":
    main()
