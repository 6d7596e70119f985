"""What ``auto`` imitates (``sim.collectives.rules``): each rule's choice against tables written
from the libraries' sources (docs/collectives.md), the builders gloo needs against closed forms,
NCCL's channels, the record, and one-line errors."""

from __future__ import annotations

import pytest
import simpy

import topologies
from sim.collectives import Planner, library_rule
from sim.collectives import nccl as nccl_mod
from sim.collectives.rules import check_rule_for_device, parse_rule
from sim.network import Network, NetworkError
from sim.routing import Router
from sim.timing import collective_time

B, L, M = 1e9, 1e-6, 8e6
KiB, MiB = 1024, 1024 * 1024
PACES = ["step", "rank"]
OPS = (
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "broadcast",
    "reduce",
    "all_to_all",
    "barrier",
    "gather",
    "scatter",
)


def chosen(topology, auto, op, nbytes, ranks=None):
    """What ``auto`` resolves to for one call."""
    planner = Planner(Router(topology), auto)
    planner.plan(op, nbytes, ranks, "auto", None)
    (algorithm,) = planner.auto_choices[op]
    return algorithm


# -- gloo: PyTorch's ProcessGroupGloo on CPU tensors, one algorithm per collective ----------

#: From the notes' table (gloo/allreduce.cc ring(), broadcast.cc binomial tree, reduce.cc
#: ring reduce-scatter + direct to root, allgather.cc ring, ProcessGroupGloo's
#: _reduce_scatter_base = allreduce, alltoall.cc / gather.cc / scatter.cc direct, barrier.cc
#: dissemination). No size enters: PyTorch never sets gloo's algorithm.
GLOO_RUNS = {
    "all_reduce": "ring",
    "reduce_scatter": "ring_all_reduce",
    "all_gather": "ring",
    "broadcast": "tree",
    "reduce": "ring_to_root",
    "all_to_all": "direct",
    "barrier": "halving_doubling",
    "gather": "direct",
    "scatter": "direct",
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("nbytes", [0.0, 1e3, 19_240.0, 300 * KiB, 1e9])
def test_gloo_runs_one_algorithm_per_collective_whatever_the_size(op, nbytes):
    for n in (2, 3, 8):
        assert chosen(topologies.star(n), "gloo", op, nbytes) == GLOO_RUNS[op], (op, n)


def test_gloo_has_no_hierarchy_a_ring_spans_the_nodes():
    g = topologies.hierarchical(2, 4)
    assert chosen(g, None, "all_reduce", 1e3) == "hierarchical"  # the commsim rule
    assert chosen(g, "gloo", "all_reduce", 1e3) == "ring"


def test_the_newcomers_local_sgd_case_runs_gloos_ring():
    # Issue 23: 3 ranks, mlp_digits (4,810 parameters: 19,240 bytes), Local SGD. commsim's
    # size rule picks halving-doubling below 256 KiB; gloo runs a ring at every size.
    import sim

    args = ("local_sgd:period=2", "mlp_digits", topologies.star(3))
    own = sim.run(*args, steps=4, eval_every=4)
    lib = sim.run(*args, steps=4, eval_every=4, network={"collectives": "gloo"})
    assert own.config["auto"] == {
        "rule": "commsim",
        "collectives": {"all_reduce": ["halving_doubling"]},
    }
    assert lib.config["auto"] == {"rule": "gloo", "collectives": {"all_reduce": ["ring"]}}
    # What a user had to force by hand before, now without forcing anything.
    forced = sim.run("local_sgd:period=2,algorithm=ring", *args[1:], steps=4, eval_every=4)
    assert lib.summary["time"] == forced.summary["time"] != own.summary["time"]


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("n, root", [(2, 0), (5, 2), (8, 7)])
def test_gloo_reduce_is_a_ring_reduce_scatter_then_chunks_to_the_root(n, root, pace):
    g = topologies.star(n, bandwidth=B, latency=L)
    env = simpy.Environment()
    net = Network(env, g)
    net.collective("reduce", M, algorithm="ring_to_root", root=root, pace=pace)
    env.run()
    # Each rank sends (n-1)/n M around the ring, and every rank but the root M/n to the root.
    for r in range(n):
        expected = (n - 1) / n * M + (0 if r == root else M / n)
        assert net.bytes_sent_by(r) == pytest.approx(expected, rel=1e-12), r
    # n-1 ring steps of 2L + M/(nB), then n-1 chunks of M/n share the root's link.
    ring = (n - 1) * (2 * L + M / (n * B))
    assert env.now == pytest.approx(ring + 2 * L + (n - 1) * M / (n * B), rel=1e-9)


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("n", [2, 3, 8])
def test_gloo_reduce_scatter_costs_a_full_ring_all_reduce(n, pace):
    g = topologies.star(n, bandwidth=B, latency=L)
    env = simpy.Environment()
    net = Network(env, g)
    net.collective("reduce_scatter", M, algorithm="ring_all_reduce", pace=pace)
    env.run()
    # 2(n-1)/n of the input per rank: twice a ring reduce-scatter's (n-1)/n.
    for r in range(n):
        assert net.bytes_sent_by(r) == pytest.approx(2 * (n - 1) / n * M, rel=1e-12)
    assert env.now == pytest.approx(2 * (n - 1) * (2 * L + M / (n * B)), rel=1e-9)
    plain = collective_time(g, "reduce_scatter", M, algorithm="ring", pace=pace)
    assert plain == pytest.approx((n - 1) * (2 * L + M / (n * B)), rel=1e-9)


# -- nccl: ring vs tree by NCCL 2.28.3's cost model (Simple protocol) ---------------------

#: NCCL's other collectives have one algorithm on a plain fabric (tuning.cc: Broadcast and
#: Reduce Ring only; AllGather/ReduceScatter Ring, PAT, NVLS, CollNet; PyTorch's all_to_all,
#: gather and scatter are grouped send/recv).
NCCL_RUNS = {
    "reduce_scatter": "ring",
    "all_gather": "ring",
    "broadcast": "ring",
    "reduce": "ring",
    "all_to_all": "direct",
    "gather": "direct",
    "scatter": "direct",
}


@pytest.mark.parametrize("op", sorted(NCCL_RUNS))
def test_nccl_runs_rings_and_send_recv_outside_the_all_reduce(op):
    for g in (topologies.star(4), topologies.hierarchical(2, 4)):
        for nbytes in (1e3, 1e9):
            assert chosen(g, "nccl", op, nbytes) == NCCL_RUNS[op]


@pytest.mark.parametrize("nbytes", [1e3, 1 * MiB, 1e9])
def test_nccl_runs_a_ring_on_one_node(nbytes):
    # One node: tree's latency (8.4 + 2(n-1) 4.0 us) and bandwidth (0.46 busBw) both lose.
    g = topologies.hierarchical(1, 8)
    assert chosen(g, "nccl", "all_reduce", nbytes) == "ring"
    assert chosen(g, "nccl", "barrier", 0.0) == "ring"


# The notes' crossovers (Hopper, Intel, Simple protocol only), by hand from tuning.cc:
# 4 x 1 GPU, 2 channels of 12.5 GB/s: tree < 1 MiB <= ring.
#   ring 1.4 (8.4 + 6 x 14) = 129.36 us + S / 16.67 GB/s; tree 8.4 + 2 (2 x 14) = 64.4 us
#   + S / (0.5 x 0.92 x 25 GB/s x corr): at 512 KiB (corr .5) 155.6 < 160.8; at 1 MiB
#   246.8 > 192.3.
# 2 x 8 GPUs, 16 channels, 20 GB/s intra, 3.125 GB/s inter per channel: tree < 32 MiB <= ring
#   (two nodes: NCCL uses the intra bandwidth). ring 1.4 (8.4 + 28 x 3.4 + 2 x 14) =
#   184.24 us; tree 8.4 + 2 (7 x 4 + 14) = 92.4 us; at 16 MiB (corr .7) 255.2 < 282.5; at
#   32 MiB 418.0 > 380.9.
# 4 x 8 GPUs, same channels: tree -> ring at 16 MiB. ring 1.4 (8.4 + 56 x 3.4 + 6 x 14) =
#   395.92 us, S / 25.8 GB/s; tree 120.4 us, S / (23 GB/s x corr): 8 MiB (corr .8) 576.3 <
#   721.0; 16 MiB (corr .7) 1162.5 > 1046.0.
NCCL_CROSSOVERS = [
    (topologies.star(4, bandwidth=25e9, latency=1e-9), 512 * KiB, 1 * MiB),
    (
        topologies.hierarchical(
            2, 8, intra_bandwidth=320e9, intra_latency=1e-9, bandwidth=50e9 / 8, latency=1e-9
        ),
        16 * MiB,
        32 * MiB,
    ),
    (
        topologies.hierarchical(
            4, 8, intra_bandwidth=320e9, intra_latency=1e-9, bandwidth=50e9 / 8, latency=1e-9
        ),
        8 * MiB,
        16 * MiB,
    ),
]


@pytest.mark.parametrize("g, tree_at, ring_at", NCCL_CROSSOVERS)
def test_nccl_picks_tree_for_smaller_and_ring_for_larger_messages_across_nodes(g, tree_at, ring_at):
    channels = 2 if g.number_of_nodes() == 5 else 16
    auto = f"nccl:channels={channels}"
    assert chosen(g, auto, "all_reduce", 32 * KiB) == "tree"
    assert chosen(g, auto, "all_reduce", tree_at) == "tree"
    assert chosen(g, auto, "all_reduce", ring_at) == "ring"
    assert chosen(g, auto, "all_reduce", 1e9) == "ring"
    assert chosen(g, auto, "barrier", 0.0) == "tree"  # one float: latency alone


def test_the_topologys_latency_moves_ncccls_crossover():
    # 100 us links (200 us a route) add 2 x 200 us to every network hop: ring 1.4 (8.4 +
    # 6 x 414) = 3489.4 us against tree 8.4 + 4 x 414 = 1664.4 us, so at 16 MiB (corr .7)
    # tree 3748.5 < ring 4496.0, and at 64 MiB (corr .8) tree 8958.8 > ring 7515.9.
    fast = topologies.star(4, bandwidth=25e9, latency=1e-9)
    slow = topologies.star(4, bandwidth=25e9, latency=100e-6)
    assert chosen(fast, "nccl", "all_reduce", 16 * MiB) == "ring"
    assert chosen(slow, "nccl", "all_reduce", 16 * MiB) == "tree"
    assert chosen(slow, "nccl", "all_reduce", 64 * MiB) == "ring"


def test_nccl_cost_model_numbers_by_hand():
    m = nccl_mod.CostModel(n_ranks=4, n_nodes=4, bw_intra=25e9, bw_inter=25e9, latency_inter=0.0)
    assert m.latency_us("ring", 1 * MiB) == pytest.approx(1.4 * (8.4 + 6 * 14.0))
    assert m.latency_us("ring", 100.0) == pytest.approx(8.4 + 6 * 14.0)  # < 64 B per rank
    assert m.latency_us("tree", 1 * MiB) == pytest.approx(8.4 + 2 * 2 * 14.0)
    assert m.bandwidth_gbs("ring", 1 * MiB) == pytest.approx(25 * 4 / 6)
    assert m.bandwidth_gbs("tree", 1 * MiB) == pytest.approx(0.5 * 0.92 * 25 * 0.5)
    # 512 KiB: 2**13 units of 64 B, correction .5 on 0.5 x 0.92 x 25 GB/s.
    assert m.time_us("tree", 512 * KiB) == pytest.approx(64.4 + 524288 / (1000 * 5.75))


# -- NCCL's channels ---------------------------------------------------------------------


def test_a_call_uses_one_channel_per_32_kib_up_to_the_communicators():
    # topoGetAlgoInfo: nc drops while nBytes < nc x 512 threads x 64 bytes.
    table = {1.0: 1, 32 * KiB: 1, 64 * KiB - 1: 1, 64 * KiB: 2, 96 * KiB: 3, 1e9: 8}
    for nbytes, nc in table.items():
        assert nccl_mod.channels_for(nbytes, 8) == nc, nbytes


def test_nccl_splits_the_message_over_channels_of_its_own():
    g = topologies.star(4, bandwidth=B, latency=L)
    planner = Planner(Router(g), "nccl:channels=4")
    rings, _ = planner.plan("all_gather", 1 * MiB, None, "auto", None)
    assert len(rings) == 4
    assert {float(c.step(0).nbytes[0]) for c in rings} == {1 * MiB / 4 / 4}
    trees, _ = Planner(Router(topologies.star(2, bandwidth=25e9, latency=1e-9)), "nccl").plan(
        "all_reduce", 64 * KiB, None, "auto", None
    )
    assert len(trees) == 2  # the double binary tree, one tree per channel
    one, _ = planner.plan("all_gather", 1 * KiB, None, "auto", None)
    assert len(one) == 1
    # Asked for by name, a collective runs as the builder makes it: one ring.
    named, _ = planner.plan("all_gather", 1 * MiB, None, "ring", None)
    assert len(named) == 1


@pytest.mark.parametrize("pace", PACES)
@pytest.mark.parametrize("n", [2, 5])
def test_channels_on_one_path_take_the_time_of_one_ring(n, pace):
    # c rings of M/c share each link: each runs at B/c, so the time is one ring's.
    g = topologies.star(n, bandwidth=B, latency=L)
    t = collective_time(g, "all_gather", M, pace=pace, collectives="nccl:channels=4")
    assert t == pytest.approx((n - 1) * (2 * L + M / (n * B)), rel=1e-9)
    # A chain per channel, M/4 each, as deep a pipeline as one chain of M (2 chunks of 4 MB):
    # the four share each hop, each step moving M/2 in all, n steps.
    t = collective_time(g, "broadcast", M, pace=pace, collectives="nccl:channels=4")
    assert t == pytest.approx(n * (2 * L + M / (2 * B)), rel=1e-9)
    assert t == pytest.approx(collective_time(g, "broadcast", M, algorithm="ring"), rel=1e-9)


@pytest.mark.parametrize("pace", PACES)
def test_tree_channels_on_one_path_take_the_time_of_one_double_tree(pace):
    # 8 single-GPU nodes: NCCL's model picks a tree for 64 MiB only with slow links.
    g = topologies.star(8, bandwidth=25e9, latency=100e-6)
    one = collective_time(g, "all_reduce", 64 * MiB, algorithm="tree", pace=pace)
    for channels in (2, 8):
        auto = f"nccl:channels={channels}"
        assert chosen(g, auto, "all_reduce", 64 * MiB) == "tree"
        t = collective_time(g, "all_reduce", 64 * MiB, pace=pace, collectives=auto)
        assert t == pytest.approx(one, rel=1e-9), channels


# -- the default, the record, backends, errors -------------------------------------------


def test_algorithms_fixed_by_collective_override_the_rule_for_those_alone():
    planner = Planner(Router(topologies.star(4)), {"rule": "gloo", "all_reduce": "tree"})
    for op in ("all_reduce", "reduce", "reduce_scatter"):
        planner.plan(op, 1e3, None, "auto", None)
    assert planner.auto_choices == {
        "all_reduce": ["tree"],
        "reduce": ["ring_to_root"],
        "reduce_scatter": ["ring_all_reduce"],
    }


def test_nccl_plans_subsets_and_uneven_nodes():
    g = topologies.hierarchical(2, 2, bandwidth=1e9, latency=1e-5)
    # Ranks 0, 1 on node 0 and 2 on node 1: two nodes, a small message, a tree.
    assert chosen(g, "nccl", "all_reduce", 1e3, ranks=[0, 1, 2]) == "tree"
    assert chosen(g, "nccl", "all_reduce", 1e3, ranks=[0, 1]) == "ring"  # one node
    assert collective_time(g, "all_reduce", 1e3, ranks=[0, 1, 2], collectives="nccl") > 0


def test_the_default_rule_is_the_simulators_own_and_changes_nothing():
    g = topologies.fat_tree(4, bandwidth=B, latency=L)
    for op in ("all_reduce", "broadcast", "all_gather"):
        for nbytes in (1e3, M):
            default = collective_time(g, op, nbytes)
            assert collective_time(g, op, nbytes, collectives="commsim") == default
    assert Planner(Router(g)).rule.spec == "commsim"


def test_a_run_records_its_rule_with_what_auto_chose(tmp_path):
    import json

    import sim
    from strategies import AllReduceSGD

    result = sim.run(
        AllReduceSGD(),
        "quadratic",
        "star:n=4",
        steps=2,
        out=tmp_path,
        network={"collectives": {"rule": "nccl:channels=4", "broadcast": "tree"}},
    )
    # The quadratic's few bytes across four single-GPU nodes: NCCL's tree.
    assert result.config["auto"] == {
        "rule": "nccl:channels=4",
        "collectives": {"all_reduce": ["tree"]},
    }
    assert (
        json.loads((tmp_path / "run.json").read_text())["config"]["auto"] == (result.config["auto"])
    )


def test_a_backend_implies_its_librarys_rule():
    assert library_rule("gloo", "cpu") == "gloo"
    assert library_rule("nccl", "cuda") == "nccl"
    assert library_rule("nccl", "cuda:3") == "nccl"
    assert library_rule("gloo") == "gloo"  # real runs on CPU by default


BAD = [
    (lambda: parse_rule("mpich"), "rule 'mpich' is unknown; use one of commsim, gloo, nccl"),
    (lambda: parse_rule(3), "rule 3 must be a string"),
    (lambda: parse_rule("nccl:channels=0"), "nccl channels must be a whole number >= 1"),
    (lambda: parse_rule("nccl:channels=two"), "nccl channels must be a whole number >= 1"),
    (lambda: parse_rule("nccl:channels"), "nccl channels must be a whole number >= 1"),
    (lambda: parse_rule("nccl:protocol=LL"), "rule nccl takes only channels"),
    (lambda: parse_rule("gloo:channels=2"), "rule 'gloo' takes no options"),
    (lambda: library_rule("mpi", "cpu"), "backend 'mpi' has no rule here; use one of gloo"),
    (lambda: library_rule("nccl", "cpu"), "backend 'nccl' moves GPU tensors only"),
    (lambda: check_rule_for_device("nccl", "cpu"), "collectives 'nccl' moves GPU tensors only"),
    (lambda: check_rule_for_device("gloo", "tpu"), "device 'tpu' is unknown; use cpu or cuda"),
    (lambda: Planner(Router(topologies.star(2)), "ring"), "to fix algorithms it must map"),
    (lambda: Planner(Router(topologies.star(2)), {"rule": "mpi"}), "rule 'mpi' is unknown"),
    (lambda: Planner(Router(topologies.star(2)), ["gloo"]), "must name a rule"),
]


@pytest.mark.parametrize("call, needle", BAD)
def test_bad_rules_are_one_line_errors_naming_the_field(call, needle):
    with pytest.raises(NetworkError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_a_bad_rule_is_refused_before_a_run_starts():
    import sim

    with pytest.raises(
        ValueError, match="network.collectives: collectives=3 must name a rule"
    ) as err:
        sim.run("allreduce", "quadratic", "star:n=2", steps=1, network={"collectives": 3})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="collectives: rule 'mpi' is unknown"):
        sim.run("allreduce", "quadratic", "star:n=2", steps=1, network={"collectives": "mpi"})
    assert check_rule_for_device("nccl", "cuda") is None
    assert check_rule_for_device("gloo", "cuda") is None
