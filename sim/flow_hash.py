"""The flow hash by which ``ecmp`` routing picks a flow's equal-cost path.

Its own module because it is a contract of its own: the paths a run's flows take depend on
these exact bits (a seed's paths are reproducible across platforms and Python versions), and
tests and studies compute it without a :class:`sim.routing.Router`.
"""

from __future__ import annotations

__all__ = ["flow_hash"]

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit function of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def flow_hash(seed: int, src: int, dst: int, label: int = 0) -> int:
    """The 64-bit hash ``ecmp`` routing picks a flow's path by: of the run's seed, the ranks
    and the connection label (the simulator's 5-tuple). Plain integer arithmetic, the same on
    every platform and Python version (``hash()`` is salted per process).

    >>> flow_hash(0, 1, 2) == flow_hash(0, 1, 2) != flow_hash(1, 1, 2)
    True
    >>> flow_hash(0, 1, 2) % 4, flow_hash(0, 2, 1) % 4, flow_hash(0, 1, 2, 1) % 4
    (2, 0, 3)
    """
    h = _mix(seed & _MASK)
    for value in (src, dst, label):
        h = _mix(h ^ (value & _MASK))
    return h
