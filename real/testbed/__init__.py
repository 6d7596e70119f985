"""An emulated network on one Linux machine: the topology's hosts as network namespaces,
its switches as bridges, its links as veth pairs shaped by ``tbf`` (and ``netem`` delay
where the kernel has it), so that real ranks talk over links with the topology's rates.

:func:`make_plan` works out what to create (pure); :func:`up`, :func:`down` and
:func:`status` create, remove and find testbeds (root, ``ip`` and ``tc``). Only tree-shaped
topologies can be emulated: the testbed is one layer-2 segment.
"""

from real.testbed.lifecycle import Status, down, has_netem, preflight, status, up
from real.testbed.plan import SUBNET, Plan, TestbedError, address, make_plan

__all__ = [
    "SUBNET",
    "Plan",
    "Status",
    "TestbedError",
    "address",
    "down",
    "has_netem",
    "make_plan",
    "preflight",
    "status",
    "up",
]
