"""How big a topology may be: sizes that cannot be built are refused before anything is built.

A builder given ``n = 2**70`` would otherwise add nodes until memory runs out. Each family's
builder calls :func:`check_size` with its host, switch and link counts (closed forms, so the
check costs nothing), which refuses, in one line naming the field, a topology

* of more than :data:`MAX_HOSTS` hosts (2**22, 32x the 131,072 ranks the simulator is meant
  to reach), or
* whose graph would need more memory than this machine has (:func:`memory_limit`), at the
  bytes per node and per link measured for networkx graphs with the topology's attributes
  (``docs/performance.md``, "Memory at scale").

:func:`estimate` is also what ``sim.run`` uses to refuse, or to explain, a run whose ranks do
not fit.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from topologies.model import TopologyError

__all__ = [
    "LINK_BYTES",
    "MAX_HOSTS",
    "NODE_BYTES",
    "Estimate",
    "check_size",
    "estimate",
    "format_bytes",
    "format_count",
    "memory_limit",
]

#: Hosts a topology may have: far above the 131,072 ranks the simulator is meant to reach,
#: far below what a typo (``n = 2**70``) asks for.
MAX_HOSTS = 2**22
#: Bytes per node (host or switch) and per link of a built topology graph: the peak of
#: building ``star(100_000)`` and ``fully_connected(1_000)`` under tracemalloc (480 and 260
#: bytes), rounded up.
NODE_BYTES = 550
LINK_BYTES = 300


@dataclass(frozen=True)
class Estimate:
    """A topology's size, from its builder's parameters, before it is built.

    Examples
    --------
    >>> e = estimate(hosts=16, switches=20, links=48)
    >>> e.nbytes, e.describe()
    (34200, '16 hosts, 20 switches and 48 links (about 34.2 kB)')
    """

    hosts: int
    switches: int
    links: int

    @property
    def nbytes(self) -> int:
        """Bytes the built graph takes (see :data:`NODE_BYTES`, :data:`LINK_BYTES`)."""
        return (self.hosts + self.switches) * NODE_BYTES + self.links * LINK_BYTES

    def counts(self) -> str:
        """``"16 hosts, 20 switches and 48 links"``."""
        parts = [_many(self.hosts, "host")]
        if self.switches:
            parts.append(_many(self.switches, "switch"))
        return f"{', '.join(parts)} and {_many(self.links, 'link')}"

    def describe(self) -> str:
        """The counts and the bytes they take."""
        return f"{self.counts()} (about {format_bytes(self.nbytes)})"


def estimate(hosts: int, switches: int, links: int) -> Estimate:
    """The :class:`Estimate` of a graph of these counts."""
    return Estimate(int(hosts), int(switches), int(links))


def check_size(family: str, fields: dict[str, int], size: Estimate) -> None:
    """Refuse, in one line naming ``fields``, a topology that cannot be built.

    Examples
    --------
    >>> check_size("ring", {"n": 2**70}, estimate(2**70, 0, 2**70))
    Traceback (most recent call last):
    ...
    topologies.model.TopologyError: ring with n=1.18e+21 would have 1.18e+21 hosts and ...
    >>> check_size("ring", {"n": 8}, estimate(8, 0, 8)) is None
    True
    """
    if size.hosts <= MAX_HOSTS:
        limit = memory_limit()
        if limit is None or size.nbytes <= limit:
            return
        why = f"more than the {format_bytes(limit)} of memory here"
    else:
        why = f"above the limit of {MAX_HOSTS:,} hosts (2**22) a topology may have"
    given = ", ".join(f"{name}={format_count(value)}" for name, value in fields.items())
    names = " or ".join(fields)
    raise TopologyError(
        f"{family} with {given} would have {size.describe()}: {why}; use a smaller {names}"
    )


def memory_limit() -> int | None:
    """Bytes of memory this process can have: the machine's physical memory, or less where
    a cgroup or ``ulimit -v`` says so; ``None`` where none of these can be read.

    Examples
    --------
    >>> limit = memory_limit()
    >>> limit is None or limit > 0
    True
    """
    found: list[int] = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY and soft > 0:
        found.append(soft)
    found = [value for value in found if value > 0]
    return min(found) if found else None


def _many(count: int, noun: str) -> str:
    plural = noun if count == 1 else (f"{noun}es" if noun.endswith("ch") else f"{noun}s")
    return f"{format_count(count)} {plural}"


def format_count(value: int) -> str:
    """A count for an error message: digits up to a trillion, then a power of ten.

    Examples
    --------
    >>> format_count(131072), format_count(2**70), format_count(2**4000)
    ('131,072', '1.18e+21', '2**4000')
    """
    if value < 10**12:
        return f"{value:,}"
    if value.bit_length() < 1000:  # float() of anything larger overflows
        return f"{float(value):.3g}"
    return f"2**{value.bit_length() - 1}"


def format_bytes(value: int) -> str:
    """Bytes in decimal units.

    Examples
    --------
    >>> format_bytes(34200), format_bytes(3 * 10**9), format_bytes(2**100)
    ('34.2 kB', '3 GB', '1.27e+30 bytes')
    """
    for unit, scale in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if scale <= value < 1000 * scale:
            return f"{value / scale:.3g} {unit}"
    if value < 10**6:
        return f"{value / 1e3:.3g} kB"
    return f"{format_count(value)} bytes"
