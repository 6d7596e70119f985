"""Collectives decomposed into messages, against independent closed forms; auto rule; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

import topologies
from sim.collectives import Planner, choose, supported
from sim.collectives import tree as tree_mod
from sim.network import Network, NetworkError
from sim.routing import Router
from sim.timing import collective_time

B, L, M = 1e9, 1e-6, 8e6
PACES = ["step", "rank"]


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("n", [2, 3, 8, 13])
def test_ring_all_reduce_on_a_ring(n, pace):
    g = topologies.ring(n, bandwidth=B, latency=L)
    t = collective_time(g, "all_reduce", M, algorithm="ring", pace=pace)
    assert t == pytest.approx(2 * (n - 1) * (L + M / (n * B)), rel=1e-9)


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("n", [2, 5, 16])
def test_ring_all_reduce_on_a_star(n, pace):
    g = topologies.star(n, bandwidth=B, latency=L)
    t = collective_time(g, "all_reduce", M, algorithm="ring", pace=pace)
    assert t == pytest.approx(2 * (n - 1) * (2 * L + M / (n * B)), rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 16])
def test_binomial_broadcast_takes_ceil_log2_rounds(n):
    g = topologies.fully_connected(n, bandwidth=B, latency=L)
    rounds = math.ceil(math.log2(n))
    assert tree_mod.broadcast(n, M).n_steps == rounds
    t = collective_time(g, "broadcast", M, algorithm="tree", root=n - 1)
    assert t == pytest.approx(rounds * (L + M / B), rel=1e-9)


@pytest.mark.parametrize("n", [2, 4, 8, 32])
def test_halving_doubling_on_fully_connected_matches_formula(n):
    g = topologies.fully_connected(n, bandwidth=B, latency=L)
    formula = 2 * math.log2(n) * L + 2 * (n - 1) / n * M / B
    for pace in PACES:
        t = collective_time(g, "all_reduce", M, algorithm="halving_doubling", pace=pace)
        assert t == pytest.approx(formula, rel=1e-9)
    rs = collective_time(g, "reduce_scatter", M, algorithm="halving_doubling")
    ag = collective_time(g, "all_gather", M, algorithm="halving_doubling")
    assert rs == ag == pytest.approx(formula / 2, rel=1e-9)


def test_halving_doubling_folds_a_non_power_of_two_by_hand():
    # n = 3: rank 0 folds into rank 1 (M), then participants 1 (2 blocks) and 2 (1 block)
    # swap 2M/3 and M/3 in the halving and again in the doubling, then rank 1 returns M.
    g = topologies.fully_connected(3, bandwidth=B, latency=L)
    # Lock-step: every round waits for its largest message.
    step = collective_time(g, "all_reduce", M, algorithm="halving_doubling", pace="step")
    assert step == pytest.approx(4 * L + (1 + 2 / 3 + 2 / 3 + 1) * M / B, rel=1e-9)
    # Per rank: rank 2 sends its 2M/3 to rank 1 at once, overlapping the fold; the critical
    # path is rank 1's: fold, halving (sends M/3), doubling (sends 2M/3), unfold.
    rank = collective_time(g, "all_reduce", M, algorithm="halving_doubling", pace="rank")
    assert rank == pytest.approx(4 * L + (1 + 1 / 3 + 2 / 3 + 1) * M / B, rel=1e-9)


@pytest.mark.parametrize("pace", PACES)
def test_hierarchical_beats_flat_ring_by_its_formula(pace):
    nodes, gpus = 4, 4
    bi, li, bo, lo = 100e9, 1e-7, 1e9, 1e-6
    g = topologies.hierarchical(
        nodes, gpus, intra_bandwidth=bi, intra_latency=li, inter_bandwidth=bo, inter_latency=lo
    )
    n = nodes * gpus
    intra, cross = 2 * li, 2 * li + 2 * lo
    # Hierarchical: two intra rings of M/G chunks; G inter rings share each node uplink
    # (G * bo), so each runs at bo on chunks of M/(G N).
    hier = 2 * (gpus - 1) * (intra + M / (gpus * bi)) + 2 * (nodes - 1) * (
        cross + M / (gpus * nodes * bo)
    )
    # Flat ring: every step waits for a node-crossing hop, alone on its uplink (G * bo).
    flat = 2 * (n - 1) * (cross + M / (n * min(bi, gpus * bo)))
    t_hier = collective_time(g, "all_reduce", M, algorithm="hierarchical", pace=pace)
    t_flat = collective_time(g, "all_reduce", M, algorithm="ring", pace=pace)
    assert t_hier == pytest.approx(hier, rel=1e-9)
    assert t_flat - t_hier == pytest.approx(flat - hier, rel=1e-9)
    if pace == "step":
        assert collective_time(g, "all_reduce", M) == t_hier  # auto picks hierarchical


def test_direct_all_to_all_on_a_star():
    n = 6
    g = topologies.star(n, bandwidth=B, latency=L)
    t = collective_time(g, "all_to_all", M, algorithm="direct")
    assert t == pytest.approx(2 * L + (n - 1) * M / (n * B), rel=1e-9)


def test_barrier_and_tree_all_reduce_round_counts():
    n = 8
    g = topologies.fully_connected(n, bandwidth=B, latency=L)
    assert collective_time(g, "barrier", 0) == pytest.approx(3 * L, rel=1e-9)
    assert collective_time(g, "barrier", 0, algorithm="direct") == pytest.approx(2 * L)
    # Double binary tree of height 3 for 8 ranks, one chunk: 3 rounds up, 3 rounds down.
    t = collective_time(g, "all_reduce", 8.0, algorithm="tree")
    assert t == pytest.approx(6 * (L + 4.0 / B), rel=1e-9)


def test_double_binary_trees_are_complementary():
    n = 8
    first = tree_mod.binary_tree(n)
    inner_a = set(np.flatnonzero(np.isin(np.arange(n), first)).tolist())
    inner_b = {n - 1 - p for p in inner_a}  # the mirrored tree's inner ranks
    assert not inner_a & inner_b


@pytest.mark.parametrize(
    "op",
    [
        "all_reduce",
        "reduce_scatter",
        "all_gather",
        "broadcast",
        "reduce",
        "all_to_all",
        "barrier",
        "gather",
        "scatter",
    ],
)
def test_every_op_and_algorithm_completes(op):
    g = topologies.star(5, bandwidth=B, latency=L)
    for algorithm in ("auto", *supported(op)):
        if algorithm == "hierarchical":
            continue
        for pace in PACES:
            t = collective_time(g, op, M, algorithm=algorithm, pace=pace)
            assert 0 < t < 1, (op, algorithm, pace)


def test_subset_of_ranks_and_per_rank_finish_times():
    g = topologies.star(8, bandwidth=B, latency=L)
    env = simpy.Environment()
    net = Network(env, g)
    done = net.collective("all_reduce", M, ranks=[1, 3, 5], algorithm="ring")
    env.run()
    assert sorted(done.value) == [1, 3, 5]
    assert max(done.value.values()) == pytest.approx(4 * (2 * L + M / (3 * B)), rel=1e-9)
    assert net.bytes_sent == pytest.approx(3 * 4 * M / 3)
    assert net.bytes_sent_by(0) == 0.0


def test_single_rank_collective_is_free():
    assert collective_time(topologies.star(4), "all_reduce", M, ranks=[2]) == 0.0


def test_auto_rule():
    assert choose("all_reduce", 1e9, 8, None) == "ring"
    assert choose("all_reduce", 1e3, 8, None) == "halving_doubling"
    assert choose("all_reduce", 1e3, 8, np.arange(8).reshape(2, 4)) == "hierarchical"
    assert choose("all_reduce", 1e9, 8, np.arange(8).reshape(8, 1)) == "ring"
    assert choose("broadcast", 1e3, 8, None) == "tree"
    assert choose("broadcast", 1e9, 8, None) == "ring"
    assert choose("all_to_all", 1e9, 8, None) == "direct"
    assert choose("barrier", 0, 8, None) == "halving_doubling"


ERRORS = [
    ({"op": "allreduce"}, "op must be one of"),
    ({"algorithm": "butterfly"}, "algorithm must be one of"),
    ({"op": "all_gather", "algorithm": "tree"}, "does not implement all_gather"),
    ({"ranks": [0, 9]}, "ranks must be"),
    ({"ranks": []}, "ranks must be"),
    ({"ranks": [0, 0]}, "ranks lists a rank twice"),
    ({"ranks": [0.5]}, "ranks must be"),
    ({"nbytes": -1.0}, "nbytes must be"),
    ({"nbytes": math.nan}, "nbytes must be"),
    ({"root": 1}, "root is only for"),
    ({"op": "broadcast", "root": 7}, "root must be one of"),
    ({"op": "broadcast", "ranks": [0, 1], "root": 2}, "root must be one of"),
    ({"algorithm": "hierarchical"}, "needs a 'node' attribute"),
    ({"pace": "async"}, "pace must be one of"),
]


@pytest.mark.parametrize("change, needle", ERRORS)
def test_errors_are_one_line_and_name_the_argument(change, needle):
    args = {
        "op": "all_reduce",
        "nbytes": M,
        "algorithm": "auto",
        "ranks": None,
        "root": None,
        "pace": "step",
    } | change
    with pytest.raises(NetworkError, match=needle) as err:
        collective_time(topologies.star(4), args.pop("op"), args.pop("nbytes"), **args)
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


def test_uneven_nodes_reject_hierarchical_but_auto_falls_back():
    g = topologies.hierarchical(2, 2)
    with pytest.raises(NetworkError, match="same number of ranks"):
        collective_time(g, "all_reduce", M, algorithm="hierarchical", ranks=[0, 1, 2])
    assert collective_time(g, "all_reduce", M, ranks=[0, 1, 2]) > 0


def test_invalid_graph_is_rejected():
    g = topologies.star(3)
    g.nodes[1]["kind"] = "gpu"
    with pytest.raises(ValueError, match="topology") as err:
        collective_time(g, "all_reduce", M)
    assert "\n" not in str(err.value)


def test_planner_reuses_a_plan_only_for_equal_arguments():
    planner = Planner(Router(topologies.star(4)))
    first = planner.plan("all_reduce", M, None, "auto", None)
    assert planner.plan("all_reduce", M, None, "auto", None) is first
    assert planner.plan("all_reduce", 2 * M, None, "auto", None) is not first
    ranks = planner.plan("all_reduce", M, iter([0, 1, 2, 3]), "auto", None)  # any iterable
    assert planner.plan("all_reduce", M, [0, 1, 2, 3], "auto", None) is ranks
    assert planner.plan("broadcast", M, None, "auto", 1)[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(NetworkError, match="root must be one of"):
        planner.plan("broadcast", M, None, "auto", True)  # True == 1, but is no rank
    with pytest.raises(NetworkError, match="ranks must be"):
        planner.plan("all_reduce", M, [[0], [1]], "auto", None)  # unhashable: not cached


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("algorithm", ["ring", "halving_doubling", "tree", "direct"])
def test_a_repeated_collective_takes_what_it_takes_on_a_fresh_network(algorithm, pace):
    # The second call reuses the first one's plan and routed rounds; the result must not show.
    g = topologies.fat_tree(4, bandwidth=B, latency=L)
    alone = collective_time(g, "all_reduce", M, algorithm=algorithm, pace=pace)
    env = simpy.Environment()
    net = Network(env, g)
    times = []

    def calls():
        for _ in range(3):
            start = env.now
            yield net.collective("all_reduce", M, algorithm=algorithm, pace=pace)
            times.append(env.now - start)

    env.process(calls())
    env.run()
    assert times == pytest.approx([alone] * 3, rel=1e-12)


def test_routed_rounds_are_kept_per_plan_and_read_only():
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    channels, members = net.planner.plan("all_reduce", M, None, "ring", None)
    step = channels[0].step(0)
    batch = step.flows(members, net.router)
    assert step.flows(members, net.router) is batch
    assert step.flows(members.copy(), net.router) is not batch  # another plan's members
    assert batch.routes.tolist() == net.router.routes(members[step.src], members[step.dst]).tolist()
    with pytest.raises(ValueError, match="read-only"):
        batch.nbytes[0] = 0.0
    assert step.touched.tolist() == [0, 1, 2, 3]


def test_the_planner_remembers_what_auto_chose_per_collective():
    import topologies
    from sim.collectives.select import Planner
    from sim.routing import Router

    planner = Planner(Router(topologies.star(4)))
    planner.plan("all_reduce", 1e9, None, "auto", None)  # bandwidth-bound: a ring
    planner.plan("all_reduce", 1e3, None, "auto", None)  # latency-bound: halving-doubling
    planner.plan("broadcast", 1e3, None, "tree", 0)  # asked for by name: not a choice
    assert planner.auto_choices == {"all_reduce": ["halving_doubling", "ring"]}


def test_lock_step_log_keeps_one_entry_per_repeated_set_of_ranks(monkeypatch):
    # A ring on fat_tree(4) finishes each round in parts (its messages' routes have three
    # latencies), and every round's parts are the same arrays. The log of who finished when
    # grew by a part per event (folded every ~8 n ranks: 24 entries at most here, before
    # this change); a part that repeats an earlier one's ranks now replaces it. The ranks'
    # finish times are the plain table's, which logs fresh arrays and folds them all.
    from sim.collectives.schedule import _Lockstep
    from sim.flows import FlowTable

    longest = []
    on_done = _Lockstep.on_done

    def logged(self, tags):
        on_done(self, tags)
        longest.append(len(self._log))

    monkeypatch.setattr(_Lockstep, "on_done", logged)
    finishes = []
    for compress in (True, False):
        monkeypatch.setattr(FlowTable, "compress", compress)
        env = simpy.Environment()
        net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L))
        done = net.collective("all_reduce", M, algorithm="ring", pace="step")
        env.run()
        finishes.append(done.value)
        if compress:
            assert 0 < max(longest) <= 6, max(longest)
    assert finishes[0] == finishes[1]
    assert len(set(finishes[0].values())) > 1  # ranks finish apart: the log is read


def _per_rank_run(topology, network=None, slow=None, **collective):
    """Every number a ``pace="rank"`` collective reports: per-rank finish times, bytes,
    link statistics; ``slow`` = (time, u, v, factor) slows a link mid-collective."""
    env = simpy.Environment()
    net = Network(env, topology, **(network or {}))
    done = net.collective(pace="rank", **collective)
    if slow is not None:

        def fault():
            yield env.timeout(slow[0])
            net.set_link(slow[1], slow[2], slow[3])

        env.process(fault())
    env.run()
    return (
        done.value,
        env.now,
        net.bytes_sent,
        net.bytes_sent_per_rank.tolist(),
        net.link_stats().to_dict(),
    )


PER_RANK_CASES = {
    "hierarchical": (
        lambda: topologies.hierarchical(6, 4, inter_bandwidth="100Gbps"),
        {"op": "all_reduce", "nbytes": M, "algorithm": "hierarchical"},
        {},
    ),
    "hierarchical, unfair": (
        lambda: topologies.hierarchical(3, 2, inter_bandwidth="100Gbps"),
        {"op": "all_reduce", "nbytes": M, "algorithm": "hierarchical"},
        {"network": {"unfairness": 0.3, "seed": 2}},
    ),
    "hierarchical, a link slowed": (
        lambda: topologies.hierarchical(6, 4, inter_bandwidth="100Gbps"),
        {"op": "all_reduce", "nbytes": M, "algorithm": "hierarchical"},
        {"slow": (1e-4, "node0", "spine", 0.25)},
    ),
    "ring on a star": (
        lambda: topologies.star(8, bandwidth=B, latency=L),
        {"op": "all_reduce", "nbytes": M, "algorithm": "ring"},
        {},
    ),
    "ring on a fat tree (drifts)": (
        lambda: topologies.fat_tree(4, bandwidth=B, latency=L),
        {"op": "all_reduce", "nbytes": M, "algorithm": "ring"},
        {},
    ),
    "halving-doubling, 6 ranks (folds)": (
        lambda: topologies.fully_connected(6, bandwidth=B, latency=L),
        {"op": "all_reduce", "nbytes": M, "algorithm": "halving_doubling"},
        {},
    ),
    "tree broadcast": (
        lambda: topologies.fat_tree(4, bandwidth=B, latency=L),
        {"op": "broadcast", "nbytes": M, "algorithm": "tree", "root": 3},
        {},
    ),
}


@pytest.mark.parametrize("case", list(PER_RANK_CASES))
def test_per_rank_steps_entered_in_step_give_the_rank_by_rank_numbers(case, monkeypatch):
    # Reference: every rank's entry into every step handled one by one, each batch of
    # messages routed anew (the per-rank path as it was before steps were entered in step
    # and parts of a batch reused): the same numbers, bit for bit, where symmetry holds
    # (the hierarchical rounds), breaks (unfairness, a slowed link, a drifting ring) or
    # never was (folds, a tree).
    from sim.collectives.schedule import Step, _Channel

    make, collective, options = PER_RANK_CASES[case]
    entered = []
    original = _Channel.enter_in_step

    def counted(self, s):
        took = original(self, s)
        entered.append(took)
        return took

    monkeypatch.setattr(_Channel, "enter_in_step", counted)
    fast = _per_rank_run(make(), **collective, **options)
    if case == "hierarchical":  # every round entered in step: none rank by rank
        assert entered and all(entered)
    monkeypatch.setattr(_Channel, "enter_in_step", lambda self, s: False)
    monkeypatch.setattr(Step, "kept_by_sender", lambda self, *a, **k: None)
    assert _per_rank_run(make(), **collective, **options) == fast


def test_per_rank_hierarchical_at_scale_matches_its_closed_form():
    # 64 nodes x 8: every round entered in step (the network holds it as classes); the
    # closed form of test_hierarchical_beats_flat_ring_by_its_formula, computed apart.
    nodes, gpus = 64, 8
    bi, li, bo, lo = 100e9, 1e-7, 1e9, 1e-6
    g = topologies.hierarchical(
        nodes, gpus, intra_bandwidth=bi, intra_latency=li, inter_bandwidth=bo, inter_latency=lo
    )
    intra, cross = 2 * li, 2 * li + 2 * lo
    hier = 2 * (gpus - 1) * (intra + M / (gpus * bi)) + 2 * (nodes - 1) * (
        cross + M / (gpus * nodes * bo)
    )
    rank = collective_time(g, "all_reduce", M, algorithm="hierarchical", pace="rank")
    assert rank == pytest.approx(hier, rel=1e-9)
    assert rank == collective_time(g, "all_reduce", M, algorithm="hierarchical", pace="step")


def test_a_step_entered_in_step_maps_its_batch_back_to_messages(monkeypatch):
    # Senders listed out of order (the batch by sender is then not in message order) on a
    # fat tree, where route latencies differ: the batch finishes in parts, and each part's
    # positions must be mapped back to its messages, as the rank-by-rank path tags them.
    from sim.collectives.schedule import CollectiveRun, Schedule, Step, _Channel

    n = 16
    src = np.arange(n)[::-1].copy()
    steps = [Step(n, src, (src + k) % n, M / n * (1 + k % 3)) for k in (1, 5, 3, 7)]

    def one():
        env = simpy.Environment()
        net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L))
        event = env.event()
        CollectiveRun(net, [Schedule.of(n, steps)], np.arange(n), event, "rank")
        env.run()
        return event.value, net.link_stats().to_dict()

    entered = []
    original = _Channel.enter_in_step
    monkeypatch.setattr(
        _Channel, "enter_in_step", lambda self, s: entered.append(original(self, s)) or entered[-1]
    )
    fast = one()
    assert entered[0]  # the first step is entered in step, and finishes in parts
    monkeypatch.setattr(_Channel, "enter_in_step", lambda self, s: False)
    monkeypatch.setattr(Step, "kept_by_sender", lambda self, *a, **k: None)
    assert one() == fast
