"""Run the same strategies on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

This is the minimal driver that proves the strategy interface maps onto real collectives
and point-to-point calls; launchers for clusters, the emulated testbed and calibration come
with the full real backend.
"""

from real.comm import RealCommunicator
from real.launch import run
from real.runtime import RealRuntime, drive

__all__ = ["RealCommunicator", "RealRuntime", "drive", "run"]
