"""NCCL's choice between ring and tree, from NCCL's own cost model, and its channel count.

NCCL times every (algorithm, protocol) of a call as ``latency + nBytes / bandwidth`` and runs
the fastest (``ncclTopoTuneModel`` and ``ncclTopoGetAlgoTime`` in ``src/graph/tuning.cc``,
``topoGetAlgoInfo`` in ``src/enqueue.cc``). The constants here are NCCL **2.28.3**'s
(``ncclTunerConstantsDefaults``); other versions differ (2.19-2.21 have Tree/Simple base
latency 0 and hardware latency 28 us), so a comparison should name the NCCL version.

What commsim keeps of the model (see ``docs/collectives.md``):

* the Simple protocol only: commsim moves payload bytes, and LL/LL128 send more bytes than
  the payload (LL twice as many), which the schedules do not model;
* Ring and Tree only (no NVLS, CollNet or PAT: commsim models no NVSwitch multicast, SHARP,
  nor PAT's schedule); NVLink inside a node (``hwLatencies[NVLINK]``), an Intel x86 host
  (``getNetOverhead``: 1 us, x3 for Simple), a GPU of compute capability 8.0 or more (the
  ring plateau factor 1.4) and Hopper's per-channel tree cap (``perChMaxTreeBws``);
* from the simulated topology: the bandwidth inside a node and between nodes (NCCL's
  ``bwIntra`` and ``bwInter`` times the channels: the whole link's), and the latency
  between nodes (NCCL's ``latencyInter``, which it adds once, and again for Simple).

A host without a ``node`` attribute is a node of its own (one GPU per node).

Examples
--------
Four single-GPU nodes on 25 GB/s links (the inputs of the research notes' last row, with
Simple only): tree below 1 MiB, ring from there.

>>> m = CostModel(n_ranks=4, n_nodes=4, bw_intra=25e9, bw_inter=25e9, latency_inter=0.0)
>>> m.all_reduce(512 * 1024), m.all_reduce(1024 * 1024)
('tree', 'ring')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BASE_LATENCY_US",
    "HW_LATENCY_US",
    "PER_CHANNEL_MAX_TREE_BW",
    "SIMPLE_THREADS",
    "SIMPLE_THREAD_THRESHOLD",
    "TREE_CORRECTION_SIMPLE",
    "CostModel",
    "channels_for",
]

#: ``baseLatencies[algorithm][Simple]`` (us), tuning.cc 2.28.3.
BASE_LATENCY_US = {"tree": 8.4, "ring": 8.4}
#: ``hwLatencies[link][algorithm][Simple]`` (us) per hop, tuning.cc 2.28.3.
HW_LATENCY_US = {
    "nvlink": {"tree": 4.0, "ring": 3.4},
    "pci": {"tree": 4.0, "ring": 5.7},
    "net": {"tree": 14.0, "ring": 14.0},
}
#: ``getNetOverhead`` on Intel x86 (us); NCCL triples it for Simple.
NET_OVERHEAD_US = 1.0
#: ``perChMaxTreeBws`` for Hopper (GB/s per channel), by nodes: 1, 2, 4 or more.
PER_CHANNEL_MAX_TREE_BW = (38.7, 41.4, 36.0)
#: ``treeCorrectionFactor[Simple][log2(nBytes / 64)]``, 64 B to 256 MiB, tuning.cc 2.28.3.
TREE_CORRECTION_SIMPLE = (
    0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.6, 0.5,
    0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.7, 0.7, 0.8, 0.9, 0.9,
)  # fmt: skip
#: "Plateau effect of ring": Ring/Simple all-reduce latency x1.4 across nodes (sm80 and up).
RING_PLATEAU = 1.4
#: Ring/Simple threads per channel (``NCCL_SIMPLE_MAX_NTHREADS``) and bytes each thread must
#: have before a call uses another channel (``NCCL_SIMPLE_THREAD_THRESHOLD``, comm.h).
SIMPLE_THREADS = 512
SIMPLE_THREAD_THRESHOLD = 64


def channels_for(nbytes: float, channels: int) -> int:
    """Channels one call uses: ``topoGetAlgoInfo`` drops one while ``nBytes < nc*nt*64``.

    With 512 threads a channel needs 32 KiB of the message.

    >>> channels_for(64 * 1024, 8), channels_for(1, 8), channels_for(1e9, 8)
    (2, 1, 8)
    """
    nc = channels
    while nbytes < nc * SIMPLE_THREADS * SIMPLE_THREAD_THRESHOLD and nc >= 2:
        nc -= 1
    return nc


@dataclass(frozen=True)
class CostModel:
    """NCCL's all-reduce cost model (Simple protocol) for one communicator.

    Parameters
    ----------
    n_ranks, n_nodes
        Ranks, and the nodes they sit on.
    bw_intra, bw_inter
        Bytes/s inside a node and between nodes, all channels together (the link's).
    latency_inter
        Seconds between nodes (NCCL's ``latencyInter``).
    channels
        The communicator's channels (``comm->nChannels``, duplicated rings/trees included).
    """

    n_ranks: int
    n_nodes: int
    bw_intra: float
    bw_inter: float
    latency_inter: float
    channels: int = 2

    def latency_us(self, algorithm: str, nbytes: float) -> float:
        """``comm->latencies[AllReduce][algorithm][Simple]``, with the ring plateau."""
        n, nodes = self.n_ranks, self.n_nodes
        intra = HW_LATENCY_US["nvlink"][algorithm]
        # With one rank per node NCCL charges every algorithm the tree's network latency.
        inter = HW_LATENCY_US["net"]["tree" if n == nodes else algorithm]
        inter += 2 * self.latency_inter * 1e6  # latencyInter, and again for Simple's flush
        lat = BASE_LATENCY_US[algorithm]
        if algorithm == "ring":
            # "Inter-node rings still have to launch nsteps * net overhead."
            intra = max(intra, 3 * NET_OVERHEAD_US if nodes > 1 else 0.0)
            inter_steps = 2 * (nodes - 1)
            lat += (2 * (n - 1) - inter_steps) * intra + inter_steps * inter
            if nodes > 1 and nbytes / (self.channels * n) >= 64:
                lat *= RING_PLATEAU
            return lat
        return lat + 2 * ((n // nodes - 1) * intra + int(math.log2(nodes)) * inter)

    def bandwidth_gbs(self, algorithm: str, nbytes: float) -> float:
        """``comm->bandwidths[AllReduce][algorithm][Simple]`` (GB/s), tree corrected."""
        n, nodes = self.n_ranks, self.n_nodes
        bus = (self.bw_intra if nodes <= 2 else self.bw_inter) / 1e9
        if algorithm == "ring":
            return bus * n / (2 * (n - 1))
        cap = self.channels * PER_CHANNEL_MAX_TREE_BW[min(nodes, 3) - 1]
        bw = min(bus * 0.92, cap) * 0.5
        log_size = int(nbytes) >> 6
        log_size = log_size.bit_length() - 1 if log_size > 0 else -1
        if 0 <= log_size < len(TREE_CORRECTION_SIMPLE):
            bw *= TREE_CORRECTION_SIMPLE[log_size]
        return bw

    def time_us(self, algorithm: str, nbytes: float) -> float:
        """NCCL's estimate for one all-reduce: ``latency + nBytes / (1000 * bandwidth)``."""
        return self.latency_us(algorithm, nbytes) + nbytes / (
            1000 * self.bandwidth_gbs(algorithm, nbytes)
        )

    def all_reduce(self, nbytes: float) -> str:
        """``"ring"`` or ``"tree"``, whichever NCCL's model says is faster (ring on a tie).

        >>> CostModel(8, 1, 100e9, 100e9, 0.0).all_reduce(1e3)  # one node: ring
        'ring'
        """
        if self.n_ranks < 2:
            return "ring"
        tree, ring = self.time_us("tree", nbytes), self.time_us("ring", nbytes)
        return "tree" if tree < ring else "ring"
