"""Run the same strategies on ``torch.distributed``: gloo on CPU, NCCL on GPUs.

:func:`run` launches one process per rank on this machine; on a cluster the same ranks run
under torchrun or srun (``python -m real``, see :mod:`real.cli`). Each rank drives its role
program through the shared :class:`strategies.comm.Communicator` over a
:class:`TorchTransport`, and the results are built with the same ledger the simulator uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from real.driver import drive
    from real.launch import run
    from real.results import RunInterrupted
    from real.runtime import RealRuntime, StopSignal
    from real.transport import TorchTransport

__all__ = ["RealRuntime", "RunInterrupted", "StopSignal", "TorchTransport", "drive", "run"]

# Imported on first use: `commsim --help` imports real.cli, and should not wait for torch;
# the launcher (`run`) needs pandas and the workloads, which a rank process starts without.
_LAZY = {
    "RealRuntime": "real.runtime",
    "RunInterrupted": "real.results",
    "StopSignal": "real.runtime",
    "drive": "real.driver",
    "TorchTransport": "real.transport",
    "run": "real.launch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'real' has no attribute {name!r}")
