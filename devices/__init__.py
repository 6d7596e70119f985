"""The devices a simulated rank stands for: peak FLOP/s, memory bandwidth and size (each with
its vendor source), and the memory a rank's training state needs on one.

Below ``sim`` and ``real`` (beside ``topologies`` and ``faults``); needs ``options`` and torch
(the roofline's operators are dispatched on the meta device).

>>> import devices
>>> devices.device("MI300X").memory_gb
192.0
"""

from devices.catalog import DEVICE_PEAK_FLOPS, DEVICES, Device, UnknownDevice, device, names
from devices.memory import (
    OPTIMIZER_STATES,
    DoesNotFit,
    MemoryEstimate,
    check_fits,
    optimizer_states,
    peak_memory,
    training_memory,
)
from devices.roofline import Roofline, roofline

__all__ = [
    "DEVICES",
    "DEVICE_PEAK_FLOPS",
    "OPTIMIZER_STATES",
    "Device",
    "Roofline",
    "DoesNotFit",
    "MemoryEstimate",
    "UnknownDevice",
    "check_fits",
    "device",
    "names",
    "optimizer_states",
    "peak_memory",
    "roofline",
    "training_memory",
]
