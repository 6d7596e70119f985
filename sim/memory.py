"""A simulated run's memory: what it needs at least, a refusal when that cannot fit, and
running out of memory reported as that.

Every rank of a simulated run lives in one process: its context, communicator, SimPy process
and its share of the ledger and timeline (:data:`RANK_BYTES`), and, for a worker, a replica
of the model (parameters, gradient and at least one optimizer state). ``sim.run`` adds that to
the topology's own size (``topologies.limits``) and refuses, before anything is written, a
run that needs more than the machine has. The estimate is a floor (a strategy's own buffers
and an optimizer's extra state come on top), so a run under it may still run out; then
:func:`out_of_memory` recognises it (a ``MemoryError``, or the ``ImportError`` pandas raises
when pyarrow cannot be loaded for want of memory) and the run fails with one line saying so.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import networkx as nx

from topologies.limits import Estimate, estimate, format_bytes, format_count, memory_limit

__all__ = [
    "RANK_BYTES",
    "REPLICA_COPIES",
    "RunSize",
    "check_before_building",
    "check_fits",
    "out_of_memory",
]

#: Bytes per rank of a simulated run besides its model: a one-step ``allreduce`` run of the
#: 11-parameter ``quadratic`` grew by ~58 kB per rank between 1,024 and 4,096 ranks on a star
#: (peak RSS; docs/performance.md, "Memory at scale").
RANK_BYTES = 64_000
#: Copies of the model a worker holds at least: parameters, gradient, one optimizer state.
REPLICA_COPIES = 3


@dataclass(frozen=True)
class RunSize:
    """What a simulated run needs at least, by part.

    Examples
    --------
    >>> size = RunSize(ranks=4, workers=4, parameters=10, element_size=4,
    ...                topology=estimate(4, 1, 4))
    >>> size.nbytes
    260430
    >>> size.describe()
    "at least 260 kB (the topology's 4 hosts, 1 switch and 4 links, 3.95 kB; 4 ranks, 256 kB; 4 replicas of a 10-parameter model, 0.48 kB)"
    """

    ranks: int
    workers: int
    parameters: int
    element_size: int
    topology: Estimate
    #: A timing-only run: its replicas are shapes on the meta device and take no memory.
    timing_only: bool = False

    @property
    def replica_bytes(self) -> int:
        if self.timing_only:
            return 0
        return self.workers * self.parameters * self.element_size * REPLICA_COPIES

    @property
    def nbytes(self) -> int:
        return self.topology.nbytes + self.ranks * RANK_BYTES + self.replica_bytes

    def describe(self) -> str:
        parts = (
            f"the topology's {self.topology.counts()}, {format_bytes(self.topology.nbytes)}",
            f"{format_count(self.ranks)} ranks, {format_bytes(self.ranks * RANK_BYTES)}",
            f"{format_count(self.workers)} replicas of a {format_count(self.parameters)}-"
            f"parameter model, {format_bytes(self.replica_bytes)}"
            + (" (timing only: shapes, no numbers)" if self.timing_only else ""),
        )
        return f"at least {format_bytes(self.nbytes)} ({'; '.join(parts)})"

    @classmethod
    def of(
        cls,
        graph: nx.Graph,
        workers: int,
        parameters: int,
        element_size: int,
        timing_only: bool = False,
    ) -> RunSize:
        """The size of a run of ``workers`` replicas of a model on ``graph``'s hosts (in a
        timing-only run the replicas have shapes only: they need no memory)."""
        hosts = sum(1 for _, kind in graph.nodes(data="kind") if kind == "host")
        topology = estimate(hosts, graph.number_of_nodes() - hosts, graph.number_of_edges())
        return cls(hosts, workers, parameters, element_size, topology, timing_only)


def check_fits(size: RunSize) -> None:
    """Refuse, in one line, a run that needs more memory than this machine has (the
    simulator's memory; the simulated device's is :mod:`sim.device_memory`'s).

    Examples
    --------
    >>> huge = RunSize(2**22, 2**22, 10, 4, estimate(2**22, 1, 2**22))
    >>> check_fits(huge)
    Traceback (most recent call last):
    ...
    ValueError: topology: a simulated run on 4,194,304 hosts needs at least 273 GB (...

    When the replicas are most of it (a full run of a large model), the fix is a
    timing-only run:

    >>> check_fits(RunSize(2, 2, 10**11, 2, estimate(2, 1, 2)))
    Traceback (most recent call last):
    ...
    ValueError: workload: a full run of 2 replicas on this machine needs at least 1.2 TB (...
    """
    limit = memory_limit()
    if limit is None or size.nbytes <= limit:
        return
    if size.replica_bytes * 2 > size.nbytes:  # the replicas are what does not fit
        raise ValueError(
            f"workload: a full run of {format_count(size.workers)} replicas on this machine "
            f"needs {size.describe()}, more than the {format_bytes(limit)} of memory here (the "
            "simulator's, not the device's); use timing_only=True (replicas as shapes, no "
            "numbers), fewer workers or a smaller model"
        )
    raise ValueError(
        f"topology: a simulated run on {format_count(size.ranks)} hosts needs "
        f"{size.describe()}, more than the {format_bytes(limit)} of memory here; use fewer "
        "hosts or a smaller model"
    )


def check_before_building(
    graph: nx.Graph, workers: int, workload: object, timing_only: bool = False
) -> None:
    """:func:`check_fits` before the model is built, from the workload's own count of its
    parameters and their size (on the meta device), so that a model larger than this machine
    is refused before it is allocated; nothing for a workload that cannot count them.

    Examples
    --------
    >>> import topologies, workloads
    >>> check_before_building(topologies.star(2), 2, workloads.get("quadratic"))
    """
    count = getattr(workload, "parameter_count", None)
    size = getattr(workload, "parameter_bytes", None)
    if callable(count) and callable(size):
        check_fits(RunSize.of(graph, workers, int(count()), int(size()), timing_only))


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the process ran out of memory: a ``MemoryError``, torch's CPU
    allocator failing, or pandas unable to load its installed parquet engine (importing
    pyarrow's libraries fails when there is no memory to map them).

    Examples
    --------
    >>> out_of_memory(MemoryError()), out_of_memory(ValueError("lr=nan"))
    (True, False)
    >>> out_of_memory(ImportError("Unable to find a usable engine; tried using: 'pyarrow'"))
    True
    """
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    if isinstance(error, RuntimeError):
        return "can't allocate memory" in text or "Cannot allocate memory" in text
    if isinstance(error, ImportError):
        if "Cannot allocate memory" in text or "failed to map segment" in text:
            return True
        return (
            "Unable to find a usable engine" in text
            and importlib.util.find_spec("pyarrow") is not None
        )
    return False
