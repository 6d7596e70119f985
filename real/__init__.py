"""Run the same strategies on ``torch.distributed`` (gloo on CPU).

:func:`run` launches one process per rank on this machine; each drives its role program
through the shared :class:`strategies.comm.Communicator` over a :class:`GlooTransport`, and
the launcher builds the results with the same ledger the simulator uses. Launchers for
clusters (torchrun, SLURM), NCCL, the emulated testbed and calibration come next.
"""

from __future__ import annotations

from typing import Any

from real.runtime import RealRuntime, StopSignal, drive
from real.transport import GlooTransport

__all__ = ["GlooTransport", "RealRuntime", "StopSignal", "drive", "run"]


def __getattr__(name: str) -> Any:
    # The launcher needs pandas and the workloads; a rank process (``python -m real.rank``)
    # imports this package too and starts faster without them.
    if name == "run":
        from real.launch import run

        return run
    raise AttributeError(f"module 'real' has no attribute {name!r}")
