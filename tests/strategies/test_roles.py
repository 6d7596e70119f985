"""The run's layout (strategies.roles.RankLayout): world-sized structures exist once per run."""

from __future__ import annotations

import gc
import tracemalloc

import simpy

import topologies
import workloads
from sim.comm import Fabric
from sim.compute import ComputeModel
from sim.network import Network
from sim.runtime import SimRuntime
from strategies import ParameterServer
from strategies.roles import RankLayout, TrainingSetup, build_role, make_ledger


def test_a_layout_numbers_ranks_within_their_nodes_and_roles():
    layout = RankLayout(6, [2, 3, 4, 5], [0, 1], (0, 0, 1, 1, 1, 2), None)
    assert layout.local_ranks == (0, 1, 0, 1, 2, 0)  # counted by hand
    assert [layout.position(r) for r in range(6)] == [0, 1, 0, 1, 2, 3]
    assert [layout.is_server(r) for r in range(6)] == [True, True, False, False, False, False]


def test_a_setup_computes_its_rank_lists_once():
    workload = workloads.get("quadratic", n_samples=64, batch_size=1)
    setup = TrainingSetup.create(ParameterServer(servers=2), workload, 8, steps=1)
    assert setup.workers is setup.workers and setup.servers is setup.servers
    assert setup.workers == [2, 3, 4, 5, 6, 7] and setup.servers == [0, 1]


def _built_bytes(n: int) -> int:
    """Bytes (tracemalloc) that building every rank of an ``n``-rank star run keeps, built as
    sim.run builds them (one fabric, one layout)."""
    workload = workloads.get("quadratic", n_samples=n, batch_size=1)
    workload.partition(n, 0)  # the data split is the workload's cache, not the ranks' state
    graph = topologies.star(n)
    setup = TrainingSetup.create(
        "allreduce", workload, n, steps=1, host_graph=topologies.host_graph(graph)
    )
    env = simpy.Environment()
    fabric = Fabric(env, Network(env, graph), n)
    compute = ComputeModel.parse(0.01)
    runtime = SimRuntime(env, compute, make_ledger(setup, lambda: 0.0, lambda: 0.0))
    layout = RankLayout.of(setup, topologies.rank_nodes(graph))
    build_role(setup, 0, fabric.communicator(0), runtime, layout=layout)  # imports, untraced
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        roles = [
            build_role(setup, r, fabric.communicator(r), runtime, layout=layout) for r in range(n)
        ]
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(roles) == n
    return kept


def test_the_ranks_state_grows_linearly_with_the_ranks():
    # Each rank holding world-sized lists (as before: workers, the world group, a copy of the
    # host graph) made 4x the ranks cost ~12x the memory here; shared, it costs ~4x.
    small, large = _built_bytes(256), _built_bytes(1024)
    assert large < 6 * small, (small, large)
