"""The accelerators a simulated rank can be: peak compute, memory bandwidth and memory size.

Each number is the vendor's own, from the datasheet named in :attr:`Device.source`:

* ``peak_flops``: dense (no 2:4 sparsity) tensor-core FLOP/s in bf16 (fp16 for the V100,
  which has no bf16). Datasheets often print the sparse figure, twice the dense one.
* ``memory_bandwidth``: bytes/s of the device's HBM (or GDDR).
* ``memory``: bytes of device memory, the vendor's GB taken as 10^9 bytes (an H100's "80 GB"
  holds 80 x 2^30 bytes, so this is a slight underestimate, on the safe side of a fit).

Examples
--------
>>> h100 = device("H100")
>>> h100.peak_flops, h100.memory_bandwidth, h100.memory
(989000000000000.0, 3350000000000.0, 80000000000.0)
>>> device("h100") is h100  # names are case-insensitive
True
>>> device("H1000")
Traceback (most recent call last):
...
devices.catalog.UnknownDevice: device='H1000' is unknown; did you mean 'H100'? use one of A100, B200, H100, H200, L4, MI300X, V100
"""

from __future__ import annotations

from dataclasses import dataclass

from options.declare import OptionError
from options.spec import did_you_mean

__all__ = ["DEVICES", "DEVICE_PEAK_FLOPS", "Device", "UnknownDevice", "device", "names"]


@dataclass(frozen=True)
class Device:
    """One accelerator's published limits.

    Attributes
    ----------
    name : str
        The key of :data:`DEVICES`.
    peak_flops : float
        Dense bf16 tensor-core FLOP/s (fp16 where there is no bf16).
    memory_bandwidth : float
        Device memory bandwidth, bytes/s.
    memory : float
        Device memory, bytes (vendor GB x 10^9).
    variant : str
        Which form factor the numbers are for (SXM, OAM, PCIe ...).
    source : str
        The vendor datasheet the numbers come from.
    """

    name: str
    peak_flops: float
    memory_bandwidth: float
    memory: float
    variant: str
    source: str

    @property
    def memory_gb(self) -> float:
        """Device memory in (decimal) GB, as the vendor states it."""
        return self.memory / 1e9


class UnknownDevice(OptionError):
    """A device name that is not in :data:`DEVICES` (one line, with the closest name)."""


_TB = 1e12
_GB = 1e9

#: Every known device, by name. V100 and L4 predate issue 25's list and keep their numbers.
DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "V100",
            125e12,  # fp16 tensor cores: the V100 has no bf16
            900 * _GB,
            32 * _GB,
            "SXM2 32 GB",
            "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf",
        ),
        Device(
            "A100",
            312e12,
            2.039 * _TB,
            80 * _GB,
            "SXM 80 GB",
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
        ),
        Device(
            "L4",
            121e12,  # the datasheet's 242 TFLOPS is with sparsity
            300 * _GB,
            24 * _GB,
            "PCIe",
            "https://www.nvidia.com/en-us/data-center/l4/",
        ),
        Device(
            "H100",
            989e12,  # the datasheet's 1,979 TFLOPS is with sparsity
            3.35 * _TB,
            80 * _GB,
            "SXM",
            "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet",
        ),
        Device(
            "H200",
            989e12,  # the same compute as the H100 SXM; more and faster memory
            4.8 * _TB,
            141 * _GB,
            "SXM",
            "https://www.nvidia.com/en-us/data-center/h200/",
        ),
        Device(
            "B200",
            2.25e15,  # HGX B200 (1,000 W): 36 PFLOPS bf16 for 8 GPUs with sparsity, half dense
            8 * _TB,
            180 * _GB,  # 1,440 GB for the 8 GPUs of an HGX/DGX B200 (192 GB on the package)
            "HGX/DGX B200 (SXM, 1,000 W)",
            "https://www.nvidia.com/en-us/data-center/dgx-b200/",
        ),
        Device(
            "MI300X",
            1307e12,  # 1,307.4 TFLOPS dense bf16 (2,614.9 with sparsity)
            5.3 * _TB,
            192 * _GB,
            "OAM",
            "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html",
        ),
    )
}

#: Peak dense FLOP/s by device name, as ``sim.compute`` has always offered it.
DEVICE_PEAK_FLOPS: dict[str, float] = {name: d.peak_flops for name, d in DEVICES.items()}

_BY_LOWER = {name.lower(): d for name, d in DEVICES.items()}


def names() -> list[str]:
    """The known device names, sorted.

    >>> names()
    ['A100', 'B200', 'H100', 'H200', 'L4', 'MI300X', 'V100']
    """
    return sorted(DEVICES)


def device(name: str | Device) -> Device:
    """The device called ``name`` (case-insensitive); an unknown one is one line naming the
    closest known name."""
    if isinstance(name, Device):
        return name
    found = _BY_LOWER.get(str(name).lower())
    if found is None:
        hint = did_you_mean(str(name).upper(), names()) or did_you_mean(str(name), names())
        raise UnknownDevice(
            f"device={name!r} is unknown{hint or ';'} use one of {', '.join(names())}", "device"
        )
    return found
