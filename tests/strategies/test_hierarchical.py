"""Hierarchical (all-reduce inside nodes, average parameters across nodes every period):
options, the maths against AllReduceSGD, consensus, simulated time and bytes against the
network engine, and conformance with nodes on real processes."""

import pytest
import simpy
import torch

import sim
import topologies
from strategies.allreduce import AllReduceSGD
from strategies.comm import ALGORITHMS_FOR
from strategies.hierarchical import Hierarchical, node_members
from strategies.registry import get
from studies.conformance import check

SGD = {"name": "sgd", "lr": 0.1}
COMPUTE = 0.001  # seconds a gradient, constant: a step is COMPUTE plus its communication


def simulate(strategy, topology, steps=8):
    return sim.run(
        strategy,
        "mlp_digits",
        topology,
        steps=steps,
        optimizer=SGD,
        compute={"base": COMPUTE},
        eval_every=steps,
    )


def with_nodes(topology, nodes):
    """``topology`` with host ``rank`` on node ``nodes[rank]``."""
    for host in topologies.hosts(topology):
        topology.nodes[host]["node"] = nodes[topology.nodes[host]["rank"]]
    return topology


def step_rows(result):
    return result.metrics[result.metrics["kind"] == "step"].sort_values("step")


def engine(topology, op, nbytes, ranks, algorithm="auto", root=None):
    """Seconds and bytes of one collective on an idle network, from the network engine."""
    seconds = sim.collective_time(topology, op, nbytes, ranks=ranks, algorithm=algorithm, root=root)
    env = simpy.Environment()
    net = sim.Network(env, topology, record=False)
    net.collective(op, nbytes, ranks=ranks, algorithm=algorithm, root=root)
    env.run()
    return seconds, net.bytes_sent


# -- options ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"period": 0}, "period=0"),
        ({"period": 2.0}, "period=2.0"),
        ({"period": True}, "period=True"),
        ({"intra_algorithm": "halving_doubling"}, "intra_algorithm='halving_doubling'"),
        ({"intra_algorithm": "hierarchical"}, "intra_algorithm='hierarchical'"),
        ({"inter_algorithm": "bogus"}, "inter_algorithm='bogus'"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named) as err:
        Hierarchical(**kwargs)
    assert "\n" not in str(err.value)


def test_accepted_algorithms_and_registration():
    for algorithm in ALGORITHMS_FOR["all_reduce"]:
        assert Hierarchical(inter_algorithm=algorithm).inter_algorithm == algorithm
    shared = set(ALGORITHMS_FOR["all_reduce"]) & set(ALGORITHMS_FOR["broadcast"])
    for algorithm in shared:
        assert Hierarchical(intra_algorithm=algorithm).intra_algorithm == algorithm
    built = get("hierarchical", period=3)
    assert isinstance(built, Hierarchical) and built.options["period"] == 3
    assert built.global_model == "average"


def test_node_members_groups_workers_by_node_in_order_of_their_first_rank():
    assert node_members((1, 0, 1, 2, 0), range(5)) == [[0, 2], [1, 4], [3]]
    assert node_members((0, 0, 1, 1), [3, 1, 2]) == [[1], [2, 3]]


# -- the maths ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "topology",
    [
        topologies.hierarchical(2, 2),
        # Unequal nodes: only weighting by node size gives the mean; a node of one rank
        # takes no intra-node collective.
        with_nodes(topologies.star(4), [0, 0, 0, 1]),
        with_nodes(topologies.star(4), [0, 1, 0, 2]),
        with_nodes(topologies.star(4), [0, 0, 0, 0]),  # one node: no cross-node sync at all
        topologies.star(4),  # no node attributes: every rank is a node of its own
    ],
    ids=["2x2", "3+1", "2+1+1-interleaved", "one-node", "no-nodes"],
)
def test_period_one_trains_exactly_as_allreduce_sgd(topology):
    ours = simulate(Hierarchical(period=1), topology)
    reference = simulate(AllReduceSGD(), topology)
    assert ours.summary["steps"] == 8
    torch.testing.assert_close(ours.parameters, reference.parameters, rtol=1e-5, atol=1e-7)


class Recording(Hierarchical):
    """Hierarchical, snapshotting each rank's replica whenever its program yields."""

    def __init__(self, period, snapshots):
        super().__init__(period=period)
        self.snapshots = snapshots

    def worker(self, w):
        program = super().worker(w)
        value = None
        while True:
            try:
                handle = program.send(value)
            except StopIteration:
                return
            self.snapshots.append((w.rank, w.step, w.parameters()))
            value = yield handle


def test_with_a_period_replicas_of_different_nodes_differ_between_syncs_and_agree_after():
    snapshots = []
    simulate(Recording(4, snapshots), topologies.hierarchical(2, 2), steps=10)

    def at(rank, step, which):  # the first (before any sync) or last (after) snapshot
        found = [p for r, s, p in snapshots if r == rank and s == step]
        return found[0] if which == "first" else found[-1]

    for step in range(1, 10):
        after = {rank: at(rank, step, "last") for rank in range(4)}
        # Inside a node the replicas are equal at every step (same mean gradient).
        assert torch.equal(after[0], after[1]) and torch.equal(after[2], after[3])
        if step % 4:
            assert not torch.allclose(after[0], after[2]), f"nodes agree after step {step}"
        else:
            assert all(torch.equal(after[0], after[r]) for r in range(4))
            # The sync is the (equal-weight) mean of the two nodes' replicas before it.
            before = (at(0, step, "first") + at(2, step, "first")) / 2
            torch.testing.assert_close(after[0], before, rtol=1e-6, atol=1e-7)


# -- time and bytes against the network engine ----------------------------------------------
@pytest.mark.parametrize("period", [1, 4])
def test_time_and_bytes_are_the_engines_intra_inter_and_broadcast(period):
    topology = topologies.hierarchical(2, 2, inter_bandwidth="10Gbps", inter_latency="5us")
    result = simulate(Hierarchical(period=period), topology, steps=3 * period + 2)
    nbytes = 4 * result.parameters.numel()  # float32
    # Both nodes run their intra-node collectives at once, on disjoint links: the slower
    # node sets the pace (they are symmetric here).
    intra = [engine(topology, "all_reduce", nbytes, node) for node in ([0, 1], [2, 3])]
    inter = engine(topology, "all_reduce", nbytes, [0, 2])
    spread = [
        engine(topology, "broadcast", nbytes, node, root=node[0]) for node in ([0, 1], [2, 3])
    ]
    step_time = COMPUTE + max(t for t, _ in intra)
    sync_time = inter[0] + max(t for t, _ in spread)
    step_bytes = sum(b for _, b in intra)
    sync_bytes = inter[1] + sum(b for _, b in spread)
    # The documented formula, N = 4 workers on k = 2 nodes: 2 (N - k) M a step, then
    # 2 (k - 1) M + (N - k) M a sync.
    assert (step_bytes, sync_bytes) == (4 * nbytes, 4 * nbytes)

    rows = step_rows(result).set_index("step")[["time", "bytes"]]
    # One window of `period` steps, starting after the first step (time 0 is no step), holds
    # `period` computations and intra-node all-reduces and one sync.
    for start in range(1, len(rows) - period + 1):
        window = rows.loc[start + period] - rows.loc[start]
        assert window["time"] == pytest.approx(period * step_time + sync_time, rel=1e-9)
        assert window["bytes"] == pytest.approx(period * step_bytes + sync_bytes)
    if period > 1:  # and a step without a sync is compute plus the intra-node all-reduce
        assert rows.loc[3, "time"] - rows.loc[2, "time"] == pytest.approx(step_time, rel=1e-9)


# -- the real backend -----------------------------------------------------------------------
def test_it_conforms_on_real_gloo_processes_with_nodes_of_two_and_one_ranks():
    # Nodes [0, 1], [2], [3]: a leaders' all-reduce of three, a broadcast inside a node of
    # two, and nodes of one rank that skip theirs. The real ranks take the topology's nodes.
    graph = with_nodes(topologies.star(4), (0, 0, 1, 2))
    report = check(
        Hierarchical(period=3), "mlp_digits", world_size=4, steps=20, optimizer=SGD, topology=graph
    )
    report.raise_for_differences()


def test_compressed_cross_node_averages_conform_on_gloo():
    graph = with_nodes(topologies.star(4), (0, 0, 1, 1))
    strategy = Hierarchical(period=2, compression="uint8")
    check(
        strategy, "mlp_digits", world_size=4, steps=20, optimizer=SGD, topology=graph
    ).raise_for_differences()
