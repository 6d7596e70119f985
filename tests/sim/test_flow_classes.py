"""Rounds held as classes of identical flows give the plain table's numbers, bit for bit,
and fall back to it wherever symmetry breaks (weights, faults, other traffic)."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

import topologies
from sim.flow_classes import FlowClasses
from sim.flows import FlowBatch, FlowTable
from sim.network import LinkFailure, Network, RankDown, fold_runs
from sim.routing import Router


@pytest.fixture
def plain(monkeypatch):
    """Run the body once with classes (default) and return a switch to the plain table."""

    def switch(on: bool) -> None:
        monkeypatch.setattr(FlowTable, "compress", on)

    return switch


def run(topology, plain_table: bool, switch, faults=None, repeat=2, **collective):
    """Run ``repeat`` collectives one after another; return every number a run reports."""
    switch(not plain_table)
    env = simpy.Environment()
    net = Network(env, topology, **collective.pop("network", {}))
    finishes = []

    def proc():
        for _ in range(repeat):
            done = net.collective(**collective)
            try:
                finishes.append((yield done))
            except (LinkFailure, RankDown) as exc:
                finishes.append(repr(exc))

    env.process(proc())
    if faults:
        faults(env, net)
    env.run()
    stats = net.link_stats()
    return (
        finishes,
        env.now,
        net.bytes_sent,
        net.bytes_sent_per_rank.tolist(),
        net.flows_simulated,
        stats.to_dict(),
        net.solver.hits + net.solver.misses,
    )


CASES = [
    (
        lambda: topologies.hierarchical(6, 4, inter_bandwidth="100Gbps"),
        dict(op="all_reduce", nbytes=7e8, algorithm="hierarchical"),
    ),
    (lambda: topologies.fat_tree(4), dict(op="all_reduce", nbytes=3e7, algorithm="ring")),
    (
        lambda: topologies.fat_tree(6),
        dict(op="all_reduce", nbytes=3e7, algorithm="ring", network=dict(routing="spray")),
    ),
    (
        lambda: topologies.fat_tree(6),
        dict(op="all_reduce", nbytes=3e7, algorithm="ring", network=dict(routing="single")),
    ),
    (
        lambda: topologies.fat_tree(4),
        dict(op="all_reduce", nbytes=3e7, algorithm="ring", network=dict(sharing="rtt")),
    ),
    (
        lambda: topologies.fat_tree(4),
        dict(op="all_reduce", nbytes=3e7, algorithm="ring", network=dict(model="analytic")),
    ),
    (lambda: topologies.fat_tree(4), dict(op="all_reduce", nbytes=3e7, algorithm="tree")),
    (
        lambda: topologies.fat_tree(4),
        dict(op="all_reduce", nbytes=3e7, algorithm="halving_doubling"),
    ),
    (lambda: topologies.fat_tree(4), dict(op="all_gather", nbytes=3e7, algorithm="ring")),
    (lambda: topologies.ring(5), dict(op="all_reduce", nbytes=0.0, algorithm="ring")),
    (lambda: topologies.torus2d(3, 4), dict(op="all_reduce", nbytes=5e6, algorithm="ring")),
]


@pytest.mark.parametrize(("make", "collective"), CASES)
@pytest.mark.parametrize("pace", ["step", "rank"])
def test_classes_give_the_plain_tables_numbers_exactly(make, collective, pace, plain):
    fast = run(make(), False, plain, pace=pace, **dict(collective))
    slow = run(make(), True, plain, pace=pace, **dict(collective))
    assert fast == slow


def test_a_recurring_round_is_held_as_one_class_and_a_first_one_plain(plain):
    env = simpy.Environment()
    net = Network(env, topologies.hierarchical(8, 4), record=False)
    seen = []
    original = FlowTable.add

    def spy(table, batch, owner, tags, now, weights=None):
        original(table, batch, owner, tags, now, weights)
        seen.append((batch.size, table.compressed))

    plain(True)
    FlowTable.add = spy  # restored by hand below: monkeypatch already holds the class
    try:
        net.collective("all_reduce", 1e8, algorithm="hierarchical")
        env.run()
    finally:
        FlowTable.add = original
    # 3 intra steps, 14 inter steps, 3 intra steps: each phase's first round is plain.
    assert [c for _, c in seen] == [False, True, True] + [False] + [True] * 13 + [False] * 1 + [
        True
    ] * 2
    assert len(net.flows.pending[0]) == 0 and not net.flows.compressed


def test_flows_that_share_a_bottleneck_unevenly_split_their_class():
    # Hosts 0, 1 under one edge switch of fat_tree(4) and hosts 2, 3 under another: with
    # every flow forced through core0 (single), 0->2 and 1->3 share links, 0->1 does not.
    r = Router(topologies.fat_tree(4), routing="single")
    batch = FlowBatch(r, np.array([0, 1, 4]), np.array([2, 3, 5]), np.full(3, 8.0))
    classes = FlowClasses(batch)
    assert len(classes.members) == 2  # two latencies
    from sim.maxmin import RateSolver

    solver = RateSolver(
        r.route_links, r.capacity, lambda: r.route_latency, lambda: r.route_bottleneck
    )
    rows = [[c, 8.0, 8.0, 1.0, 0] for c in range(len(classes.members))]
    classes.solve(solver, rows)
    rates, _ = solver.solve(batch.routes)
    for c, _, _, rate, _ in rows:
        assert (rates[classes.members[c]] == rate).all()


def test_weighted_flows_are_never_held_as_classes(plain):
    plain(True)
    env = simpy.Environment()
    net = Network(env, topologies.hierarchical(4, 4), unfairness=0.3, record=False)
    states = []
    original = FlowTable.add

    def spy(table, batch, owner, tags, now, weights=None):
        original(table, batch, owner, tags, now, weights)
        states.append(table.compressed)

    FlowTable.add = spy
    try:
        for _ in range(2):
            net.collective("all_reduce", 1e8, algorithm="hierarchical")
        env.run()
    finally:
        FlowTable.add = original
    assert states and not any(states)


def slow_link(env, net):
    def proc():
        yield env.timeout(3e-4)
        net.set_link("node1", "spine", 0.25)
        yield env.timeout(2e-3)
        net.set_link("node1", "spine", 1.0)

    env.process(proc())


def fail_link(env, net):
    def proc():
        yield env.timeout(3e-4)
        net.set_link(1, "node0", 0)

    env.process(proc())


def crash(env, net):
    def proc():
        yield env.timeout(5e-4)
        net.drop_rank(5)

    env.process(proc())


def cancel(env, net):
    def proc():
        yield env.timeout(1e-5)
        op = net.collective("all_reduce", 1e8, algorithm="hierarchical")
        yield env.timeout(2e-4)
        assert not net.flows.compressed  # reading the flows expanded any round
        net.cancel(op)

    env.process(proc())


def other_traffic(env, net):
    def proc():
        yield env.timeout(4e-4)
        yield net.send(0, 9, 5e6)

    env.process(proc())


@pytest.mark.parametrize("faults", [slow_link, fail_link, crash, cancel, other_traffic])
def test_faults_and_other_traffic_expand_the_round_and_give_the_plain_numbers(faults, plain):
    collective = dict(op="all_reduce", nbytes=1e8, algorithm="hierarchical", repeat=3)
    fast = run(topologies.hierarchical(4, 4), False, plain, faults, **dict(collective))
    slow = run(topologies.hierarchical(4, 4), True, plain, faults, **dict(collective))
    assert fast == slow


def test_a_fault_mid_round_turns_the_classes_into_the_plain_arrays(plain):
    plain(True)
    env = simpy.Environment()
    net = Network(env, topologies.hierarchical(4, 4), record=False)
    seen = []

    def proc():
        yield net.collective("all_reduce", 1e8, algorithm="hierarchical")
        net.collective("all_reduce", 1e8, algorithm="hierarchical")
        yield env.timeout(1e-9)
        seen.append(net.flows.compressed)
        net.set_link("node0", "spine", 0.5)
        seen.append(net.flows.compressed)

    env.process(proc())
    env.run()
    assert seen == [True, False]


def test_fold_runs_adds_one_array_at_a_time_exactly():
    rng = np.random.default_rng(1)
    start = rng.random(50) * 1e9
    runs = [[rng.random(50), 7], [np.full(50, 0.1), 1000], [rng.choice([0.3, 1e-3], 50), 33]]
    expected = start.copy()
    for add, times in runs:
        for _ in range(times):
            expected += add
    assert fold_runs(start, runs).tobytes() == expected.tobytes()


@pytest.mark.parametrize("routing", ["single", "ecmp", "spray"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: topologies.hierarchical(5, 3),
        lambda: topologies.star(7),
        lambda: topologies.hierarchical(3, 1),
    ],
)
def test_routing_many_pairs_of_a_forest_equals_routing_them_one_by_one(make, routing):
    one, many = Router(make(), routing=routing, seed=3), Router(make(), routing=routing, seed=3)
    assert many._paths.is_forest
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, one.n_hosts, 300), rng.integers(0, one.n_hosts, 300)
    ids = [one.route(int(s), int(d), 2) for s, d in zip(src, dst, strict=True)]
    assert many.routes(src, dst, 2).tolist() == ids
    assert [x.tolist() for x in one.route_links] == [x.tolist() for x in many.route_links]
    for name in ("route_latency", "route_bottleneck", "route_hops", "route_ends"):
        assert getattr(one, name).tobytes() == getattr(many, name).tobytes(), name


def test_a_forest_cut_in_two_fails_as_a_search_would():
    r = Router(topologies.hierarchical(3, 2), routing="ecmp")
    r.set_down([("node1", "spine")])
    assert r._paths.is_forest
    with pytest.raises(LinkFailure):
        r.routes(np.array([0, 2]), np.array([1, 4]))
    assert r.route_ends.tolist() == [[0, 1, 0]]  # the pair before it was routed, as ever


def test_cycles_are_no_forest():
    assert not Router(topologies.fat_tree(4))._paths.is_forest
    assert not Router(topologies.ring(4))._paths.is_forest


def test_a_training_run_with_a_straggler_gives_the_plain_numbers(plain):
    import strategies
    from sim.run import run as sim_run

    held = []
    original = FlowTable.add

    def spy(table, batch, owner, tags, now, weights=None):
        original(table, batch, owner, tags, now, weights)
        held.append(table.compressed)

    def one(on: bool):
        plain(on)
        result = sim_run(
            strategies.get("allreduce", algorithm="ring"),
            "mlp_digits",
            topologies.star(4, bandwidth="1Gbps", latency="50us"),
            compute={"base": 0.01, "straggler": "lognormal"},
            steps=4,
            eval_every=2,
            seed=0,
        )
        m = result.metrics
        return m["time"].tolist(), m["bytes"].tolist(), result.summary["steps"]

    FlowTable.add = spy
    try:
        fast = one(True)
    finally:
        FlowTable.add = original
    assert any(held)  # the fast run did hold rounds as classes
    assert fast == one(False)


@pytest.mark.parametrize(("make", "collective"), CASES[:4])
def test_per_rank_progress_reuses_a_steps_batch_with_the_same_numbers(
    make, collective, plain, monkeypatch
):
    from sim.collectives.schedule import Step

    built = []
    original = Step.flows_by_sender

    def counted(step, members, router, channel=0):
        built.append(step)
        return original(step, members, router, channel)

    monkeypatch.setattr(Step, "flows_by_sender", counted)
    reused = run(make(), False, plain, pace="rank", **dict(collective))
    assert built  # every rank entered some step at once: its batch was reused
    # A copy of the order is never ``all_sends`` itself: each batch is routed anew.
    monkeypatch.setattr(Step, "all_sends", property(lambda step: step._order.copy()))
    assert run(make(), False, plain, pace="rank", **dict(collective)) == reused
