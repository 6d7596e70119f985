"""One-shot timings: how long one collective or one message takes on an otherwise idle network.

Examples
--------
Ring all-reduce of 8 MB over 4 ranks on a ring of 1 GB/s, 1 us links: ``2(n-1)(L + M/(nB))``.

>>> import topologies
>>> g = topologies.ring(4, bandwidth=1e9, latency=1e-6)
>>> t = collective_time(g, "all_reduce", 8e6, algorithm="ring")
>>> round(t, 9), 2 * 3 * (1e-6 + 8e6 / (4 * 1e9))
(0.012006, 0.012006)
>>> round(transfer_time(g, 0, 2, 1e6), 9)
0.001002
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx
import simpy

from sim.collectives.select import check_auto
from sim.gc_freeze import set_up_left_alone
from sim.network import Network, check_nbytes

__all__ = ["collective_time", "transfer_time"]


def collective_time(
    topology: nx.Graph,
    op: str,
    nbytes: float,
    *,
    algorithm: str = "auto",
    ranks: Iterable[int] | None = None,
    model: str = "flow",
    sharing: str = "maxmin",
    root: int | None = None,
    pace: str = "step",
    collectives: str | Mapping[str, str] | None = None,
    routing: str = "ecmp",
    seed: int = 0,
) -> float:
    """Simulated seconds for one collective over ``ranks`` (default: every host).

    Parameters
    ----------
    topology : nx.Graph or nx.DiGraph
        The network (see :mod:`topologies`).
    op : str
        ``all_reduce``, ``reduce_scatter``, ``all_gather``, ``broadcast``, ``reduce``,
        ``all_to_all``, ``barrier``, ``gather`` or ``scatter``.
    nbytes : float
        The full buffer size per rank: the input of a reduction, the output of a gather.
    algorithm : str
        ``auto``, ``ring``, ``tree``, ``halving_doubling``, ``direct``, ``hierarchical``,
        ``ring_all_reduce`` or ``ring_to_root`` (see :mod:`sim.collectives.select` for what
        implements what).
    ranks : iterable of int, optional
        Participating ranks; local rank ``i`` of the algorithm is ``ranks[i]``.
    model, sharing : str
        As for :class:`sim.network.Network`.
    root : int, optional
        Root rank of broadcast, reduce, gather and scatter (default: the first rank).
    pace : {"rank", "step"}
        Per-rank progress (exact) or lock-step rounds (see :meth:`Network.collective`).
    collectives : str or dict, optional
        What ``auto`` follows: a rule (``"commsim"``, the default, ``"gloo"``, ``"nccl"``)
        and/or algorithms by collective (see :mod:`sim.collectives.rules`).
    routing : {"ecmp", "spray", "single", "dmodk"}
        How flows use equal-cost paths, and ``seed`` the ``ecmp`` hash (see
        :class:`sim.network.Network`).
    """
    env = simpy.Environment()
    auto = None if collectives is None else check_auto(collectives)
    # The caller's objects (the imports, the topology) left out of the collector's passes
    # while the network is built, routed and run: they took a third of a large ring's time.
    with set_up_left_alone():
        net = Network(
            env,
            topology,
            model=model,
            sharing=sharing,
            record=False,
            collectives=auto,
            routing=routing,
            seed=seed,
        )
        done = net.collective(op, nbytes, ranks=ranks, algorithm=algorithm, root=root, pace=pace)
        env.run()
    assert done.triggered, "collective did not complete"
    return float(env.now)


def transfer_time(
    topology: nx.Graph,
    src: int,
    dst: int,
    nbytes: float,
    model: str = "flow",
    sharing: str = "maxmin",
    routing: str = "ecmp",
    seed: int = 0,
) -> float:
    """Simulated seconds to deliver ``nbytes`` from rank ``src`` to rank ``dst`` alone.

    Equals the route latency plus ``nbytes`` over the route's bottleneck bandwidth
    (``routing`` and ``seed`` as for :func:`collective_time`).
    """
    check_nbytes(nbytes)
    env = simpy.Environment()
    net = Network(
        env, topology, model=model, sharing=sharing, record=False, routing=routing, seed=seed
    )
    done = net.send(src, dst, nbytes)
    env.run()
    # simpy types every event's value as ``Any | None``; this one is the delivery time.
    delivered = done.value
    assert isinstance(delivered, (int, float)), delivered
    return float(delivered)
