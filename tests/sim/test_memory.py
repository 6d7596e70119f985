"""A simulated run's memory: world-sized structures shared by its ranks, sizes that do not fit
refused, and running out of memory reported as that."""

from __future__ import annotations

import topologies
from sim.run import run
from strategies import AllReduceSGD


def test_every_rank_of_a_run_shares_the_world_sized_structures():
    seen = {}

    class Shares(AllReduceSGD):
        name = "shares_test_only"

        def worker(self, w):
            seen[w.rank] = (w, w.comm.new_group(w.workers))
            yield from super().worker(w)

    run(Shares(), "quadratic", topologies.hierarchical(2, 3), steps=1)
    contexts = [seen[r][0] for r in range(6)]
    first, group = contexts[0], seen[0][1]
    for w, made in (seen[r] for r in range(1, 6)):
        assert w.workers is first.workers
        assert w.servers is first.servers
        assert w.nodes is first.nodes
        assert w.host_graph is first.host_graph
        assert w.comm.world is first.comm.world
        assert made is group
    # The values each rank reads are its own, as before.
    assert [w.local_rank for w in contexts] == [0, 1, 2, 0, 1, 2]
    assert [w.index for w in contexts] == [0, 1, 2, 3, 4, 5]
    assert [w.node for w in contexts] == [0, 0, 0, 1, 1, 1]
    assert first.host_graph[0] == (1, 2, 3, 4, 5)  # every GPU, through switches only

