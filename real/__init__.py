"""Run the same strategies on ``torch.distributed``: gloo on CPU, NCCL on GPUs.

:func:`run` launches one process per rank on this machine; on a cluster the same ranks run
under torchrun or srun (``python -m real``, see :mod:`real.cli`). Each rank drives its role
program through the shared :class:`strategies.comm.Communicator` over a
:class:`TorchTransport`, and the results are built with the same ledger the simulator uses.
"""

from __future__ import annotations

from typing import Any

from real.runtime import RealRuntime, StopSignal, drive
from real.transport import TorchTransport

__all__ = ["RealRuntime", "StopSignal", "TorchTransport", "drive", "run"]


def __getattr__(name: str) -> Any:
    # The launcher needs pandas and the workloads; a rank process imports this package too
    # and starts faster without them.
    if name == "run":
        from real.launch import run

        return run
    raise AttributeError(f"module 'real' has no attribute {name!r}")
