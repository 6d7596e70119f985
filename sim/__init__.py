"""Simulated training: the network model, the compute model and the SimPy runtime.

Ring all-reduce of 4 MB over 4 ranks on a 1 GB/s, 1 us ring: 2(n-1)(L + M/(nB)).

>>> import sim, topologies
>>> g = topologies.ring(4, bandwidth=1e9, latency=1e-6)
>>> round(sim.collective_time(g, "all_reduce", 4e6, algorithm="ring") * 1e3, 9)
6.006
"""

from sim.collectives import ALGORITHMS, OPS, SMALL_MESSAGE_BYTES, choose, supported
from sim.collectives.schedule import PACES
from sim.comm import Fabric
from sim.compute import DEVICE_PEAK_FLOPS, STRAGGLERS, ComputeModel, measure_step_time
from sim.maxmin import MODELS, SHARINGS, RateSolver, maxmin_rates
from sim.network import Network, NetworkError, check_nbytes
from sim.ops import busy_time
from sim.routing import Router
from sim.run import SimulationError, run
from sim.runtime import SimRuntime
from sim.timing import collective_time, transfer_time

__all__ = [
    "ALGORITHMS",
    "DEVICE_PEAK_FLOPS",
    "MODELS",
    "OPS",
    "PACES",
    "SHARINGS",
    "SMALL_MESSAGE_BYTES",
    "STRAGGLERS",
    "ComputeModel",
    "Fabric",
    "Network",
    "NetworkError",
    "RateSolver",
    "Router",
    "SimRuntime",
    "SimulationError",
    "busy_time",
    "check_nbytes",
    "choose",
    "collective_time",
    "maxmin_rates",
    "measure_step_time",
    "run",
    "supported",
    "transfer_time",
]
