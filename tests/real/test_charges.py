"""Real's computed collective bytes against the simulator's schedules under the same library
rule, rank by rank: both backends charge the same traffic for the same call."""

import numpy as np
import pytest

from real.transport.charges import sent_bytes
from sim.collectives import gloo, ring, tree
from sim.collectives.rules import GLOO, NCCL

# The builder of each algorithm the rules name (the rule tables are checked to name it).
BUILDERS = {
    ("gloo", "all_reduce"): ("ring", lambda n, b, r: ring.all_reduce(n, b)),
    ("gloo", "reduce_scatter"): ("ring_all_reduce", lambda n, b, r: gloo.reduce_scatter(n, b)),
    ("gloo", "all_gather"): ("ring", lambda n, b, r: ring.all_gather(n, n * b)),
    ("gloo", "broadcast"): ("tree", lambda n, b, r: tree.broadcast(n, b, root=r)),
    ("gloo", "reduce"): ("ring_to_root", lambda n, b, r: gloo.reduce(n, b, root=r)),
    ("nccl", "all_gather"): ("ring", lambda n, b, r: ring.all_gather(n, n * b)),
    ("nccl", "broadcast"): ("ring", lambda n, b, r: ring.broadcast(n, b, root=r)),
    ("nccl", "reduce"): ("ring", lambda n, b, r: ring.reduce(n, b, root=r)),
}


def _sends(schedule, n):
    sent = np.zeros(n)
    for s in range(schedule.n_steps):
        step = schedule.step(s)
        np.add.at(sent, step.src, np.broadcast_to(step.nbytes, step.src.shape))
    return sent


@pytest.mark.parametrize(("library", "kind"), sorted(BUILDERS))
@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8])
def test_each_rank_is_charged_what_the_simulators_schedule_sends(library, kind, n):
    algorithm, build = BUILDERS[library, kind]
    assert {"gloo": GLOO, "nccl": NCCL}[library][kind] == algorithm
    nbytes, root = 1000.0, n // 2
    simulated = _sends(build(n, nbytes, root), n)
    charged = [sent_bytes(kind, library, n=n, index=i, root=root, nbytes=nbytes) for i in range(n)]
    np.testing.assert_allclose(charged, simulated, rtol=1e-12)


def test_a_ring_all_reduce_is_charged_as_the_ring_sends_it():
    n, nbytes = 4, 1000.0
    simulated = _sends(ring.all_reduce(n, nbytes), n)
    for library in ("gloo", "nccl"):
        charged = [
            sent_bytes("all_reduce", library, n=n, index=i, root=0, nbytes=nbytes) for i in range(n)
        ]
        np.testing.assert_allclose(charged, simulated)


def test_a_single_rank_sends_nothing_and_an_unknown_collective_is_refused():
    assert sent_bytes("broadcast", "gloo", n=1, index=0, root=0, nbytes=8.0) == 0.0
    with pytest.raises(ValueError, match="all_to_all"):
        sent_bytes("all_to_all", "gloo", n=3, index=0, root=0, nbytes=8.0)
