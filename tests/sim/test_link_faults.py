"""Link faults and crashed hosts in the flow-level network, against closed forms."""

from __future__ import annotations

import pytest
import simpy

import topologies
from sim.dmodk import dmodk_nodes
from sim.network import LinkFailure, Network, NetworkError, RankDown

B, L = 1e9, 1e-6
MB = 1e6


def at(env: simpy.Environment, t: float, action) -> None:
    """Run ``action()`` at simulated time ``t``."""

    def proc():
        yield env.timeout(t - env.now)
        action()

    env.process(proc())


# -- slowed links -------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "unfairness"), [("flow", 0.0), ("flow", 0.3), ("analytic", 0.0)])
def test_a_slowed_link_halves_the_rate_from_that_instant(model, unfairness):
    env = simpy.Environment()
    net = Network(
        env, topologies.star(2, bandwidth=B, latency=L), model=model, unfairness=unfairness
    )
    t = 300e-6
    done = net.send(0, 1, MB)
    at(env, t, lambda: net.set_link(0, "s0", 0.5))
    env.run()
    remaining = MB - (t - 2 * L) * B
    assert done.value == pytest.approx(t + 2 * remaining / B, rel=1e-12)
    assert net.bytes_sent == MB


@pytest.mark.parametrize("reverse", [False, True])
def test_a_slowed_link_of_a_two_host_line(reverse):
    # Hosts 0 - 1 on one link; the link named either way round, slowed mid-transfer.
    env = simpy.Environment()
    net = Network(env, topologies.fully_connected(2, bandwidth=B, latency=L))
    t = 600e-6
    done = net.send(1, 0, MB)
    at(env, t, lambda: net.set_link(*((1, 0) if reverse else (0, 1)), 0.5))
    env.run()
    remaining = MB - (t - L) * B
    assert done.value == pytest.approx(t + 2 * remaining / B, rel=1e-12)


def test_a_slowed_link_is_not_served_from_the_cache_of_solved_rates():
    # The first send fills the rate cache for its route at full bandwidth; after the slowdown
    # the same route must be solved again at the new capacity, and after the restore again.
    env = simpy.Environment()
    net = Network(env, topologies.star(2, bandwidth=B, latency=L))
    first = net.send(0, 1, MB)
    env.run()
    net.set_link("s0", 1, 0.25)
    start = env.now
    slow = net.send(0, 1, MB)
    env.run()
    net.set_link(1, "s0", 1)
    again = env.now
    fast = net.send(0, 1, MB)
    env.run()
    assert first.value == pytest.approx(2 * L + MB / B, rel=1e-12)
    assert slow.value - start == pytest.approx(2 * L + 4 * MB / B, rel=1e-12)
    assert fast.value - again == pytest.approx(2 * L + MB / B, rel=1e-12)


def test_link_statistics_measure_a_slowed_link_against_its_nominal_bandwidth():
    env = simpy.Environment()
    net = Network(env, topologies.star(2, bandwidth=B, latency=L))
    net.set_link(0, "s0", 0.5)
    net.send(0, 1, MB)
    env.run()
    row = net.link_stats().loc[(0, "s0")]
    assert row["bandwidth"] == B
    assert row["bytes"] == pytest.approx(MB, rel=1e-12)
    assert row["utilisation"] == pytest.approx(MB / (B * env.now), rel=1e-12)


# -- links down on a fat tree: rerouted ---------------------------------------------------


def crossing_core_link(net: Network, src: int, dst: int) -> tuple:
    """An aggregation-to-core link on the route of ``src -> dst`` (undirected node pair)."""
    route = net.router.route_links[net.router.route(src, dst)]
    for u, v in (net.router.links[i] for i in route.tolist()):
        if str(u).startswith("agg") and str(v).startswith("core"):
            return u, v
    raise AssertionError("the route crosses no core link")


@pytest.mark.parametrize("routing", ["single", "ecmp", "spray", "dmodk"])
def test_a_flow_across_a_failed_core_link_is_rerouted_after_the_delay(routing):
    env = simpy.Environment()
    net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L), routing=routing)
    net.reroute_delay = 0.25e-3
    link = crossing_core_link(net, 0, 15)
    lat = float(net.router.route_latency[net.router.route(0, 15)])
    t = 400e-6
    done = net.send(0, 15, MB)
    at(env, t, lambda: net.set_link(*link, 0))
    env.run()
    # Stalled from t until the reroute, then the rest at the full rate on another path.
    remaining = MB - (t - lat) * B
    assert done.ok
    assert done.value == pytest.approx(t + net.reroute_delay + remaining / B, rel=1e-12)
    assert net.bytes_sent == MB
    # New routes avoid the link; every mode still finds one.
    down = set(net.router.link_ids(*link))
    for dst in range(4, 16):
        assert not down & set(net.router.route_links[net.router.route(0, dst)].tolist())


def test_dmodk_keeps_its_own_path_while_it_is_live_and_falls_back_to_the_shortest_live_one():
    env = simpy.Environment()
    net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L), routing="dmodk")
    r = net.router

    def nodes(src: int, dst: int) -> list:
        route = [r.links[i] for i in r.route_links[r.route(src, dst)].tolist()]
        return [route[0][0]] + [v for _, v in route]

    assert nodes(0, 15) == dmodk_nodes(4, r.hosts, 0, 15)  # up through agg0_1 and core3
    net.set_link("agg0_1", "core3", 0)
    # The shortest live path by the tie-break rule: the smallest switches first.
    assert nodes(0, 15) == [0, "edge0_0", "agg0_0", "core0", "agg3_0", "edge3_1", 15]
    assert nodes(0, 14) == dmodk_nodes(4, r.hosts, 0, 14)  # live: its own d-mod-k path
    net.set_link("agg0_1", "core3", 1)
    assert nodes(0, 15) == dmodk_nodes(4, r.hosts, 0, 15)


def test_a_ring_all_reduce_across_a_failed_core_link_completes_later():
    def run(fault: bool) -> float:
        env = simpy.Environment()
        net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L), routing="single")
        net.reroute_delay = 1e-3
        done = net.collective("all_reduce", 8 * MB, algorithm="ring")
        if fault:
            at(env, 1e-3, lambda: net.set_link("agg0_0", "core0", 0))
        env.run()
        assert done.ok
        return max(done.value.values())

    clean, faulty = run(False), run(True)
    assert faulty > clean + 1e-3 * 0.999  # at least the stall, and it completes


def test_a_flow_in_its_latency_phase_is_held_and_rerouted_too():
    env = simpy.Environment()
    net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=1e-3), routing="single")
    net.reroute_delay = 0.5e-3
    done = net.send(0, 15, MB)  # 6 links of 1 ms: its latency phase ends at 6 ms
    at(env, 1e-3, lambda: net.set_link("agg0_0", "core0", 0))
    env.run()
    lat = float(net.router.route_latency[net.router.route(0, 15)])
    assert done.value == pytest.approx(6e-3 + MB / B, rel=1e-12)  # the hold ended before
    assert lat == pytest.approx(6e-3)
    carried = net.link_stats()["bytes"]
    assert carried[("agg0_0", "core0")] == 0.0  # it transferred on its new route only
    assert carried[(0, "edge0_0")] == pytest.approx(MB, rel=1e-12)


# -- links down on a star: the operations wait, then fail at the detection ----------------


def when(env: simpy.Environment, event: simpy.Event, times: list[float]) -> None:
    """Append the simulated time at which ``event`` fires (or fails) to ``times``."""
    event.callbacks.append(lambda _: times.append(env.now))


def test_a_star_host_link_down_fails_its_flow_and_new_sends_detect_after_it_went_down():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    net.reroute_delay, net.detect = 1e-3, 5e-3
    t = 300e-6
    doomed = net.send(0, 2, MB)
    other = net.send(0, 1, MB)  # shares 0's uplink with the doomed flow until it stalls
    at(env, t, lambda: net.set_link("s0", 2, 0))
    refused, failed = [], []
    at(env, 2 * t, lambda: refused.append(net.send(1, 2, MB)))
    at(env, 2 * t, lambda: when(env, refused[0], failed))
    when(env, doomed, failed)
    env.run()
    assert not doomed.ok and isinstance(doomed.value, LinkFailure)
    assert doomed.value.ranks == (0, 2) and doomed.value.links == [("s0", 2)]
    assert "rank 0 to rank 2" in str(doomed.value) and "('s0', 2)" in str(doomed.value)
    assert not refused[0].ok and isinstance(refused[0].value, LinkFailure)
    assert refused[0].value.ranks == (1, 2)
    # Both wait (through the reroute, which finds no route) until the ranks have been cut
    # off for detect seconds, the send started during the outage included.
    assert failed == pytest.approx([t + 5e-3, t + 5e-3], rel=1e-12)
    # The other flow had half of 0's uplink until t, then all of it.
    moved = (t - 2 * L) * B / 2
    assert other.value == pytest.approx(t + (MB - moved) / B, rel=1e-12)
    # Only the bytes moved count: the doomed flow moved as much as the other until t.
    assert net.bytes_sent == pytest.approx(MB + moved, rel=1e-12)
    assert net.bytes_sent_by(1) == 0.0


def test_a_send_that_never_finds_a_route_fails_the_yield_of_its_process_at_the_detection():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    net.set_link(2, "s0", 0)
    caught = []

    def proc():
        try:
            yield net.send(0, 2, MB)
        except LinkFailure as exc:
            caught.append((env.now, exc))

    env.process(proc())
    env.run()
    assert caught[0][0] == net.detect == 3.0  # the default heartbeat timeout
    assert isinstance(caught[0][1], LinkFailure) and caught[0][1].ranks == (0, 2)
    # Once they are given up on, a new operation between them fails at once.
    late = net.send(2, 0, MB)
    assert late.triggered and not late.ok and isinstance(late.value, LinkFailure)
    env.run()


def test_a_collective_over_a_failed_host_link_fails_and_stops_its_flows():
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    net.reroute_delay = 1e-3
    coll = net.collective("all_reduce", 4 * MB, ranks=[0, 1, 2], algorithm="ring")
    bystander = net.send(3, 1, MB)
    at(env, 100e-6, lambda: net.set_link(2, "s0", 0))
    env.run()
    assert not coll.ok and isinstance(coll.value, LinkFailure)
    assert env.now == pytest.approx(100e-6 + net.detect, rel=1e-12)
    assert bystander.ok
    assert not net.flows.active[0].size and not net.flows.pending[0].size
    # A collective started after rank 2 was given up on fails at once.
    late = net.collective("all_reduce", MB, ranks=[1, 2])
    assert late.triggered and not late.ok and isinstance(late.value, LinkFailure)
    env.run()


@pytest.mark.parametrize("pace", ["step", "rank"])
def test_a_collective_whose_next_round_finds_no_route_waits_then_fails_at_the_detection(pace):
    # A ring broadcast 0 -> 1 -> 2 -> 3 (one chunk): 3's link goes down during 0 -> 1, which
    # does not cross it; the round 2 -> 3 then finds no route, waits, and fails the
    # collective once 3 has been cut off detect seconds.
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    net.detect = 1e-3
    coll = net.collective("broadcast", 1e3, ranks=[0, 1, 2, 3], algorithm="ring", pace=pace)
    at(env, 1e-6, lambda: net.set_link(3, "s0", 0))
    env.run()
    assert isinstance(coll.value, LinkFailure) and coll.value.ranks == (2, 3)
    assert env.now == pytest.approx(1e-6 + 1e-3, rel=1e-9)
    assert not net.flows.active[0].size and not net.flows.pending[0].size
    assert net.bytes_sent == pytest.approx(2e3, rel=1e-12)


@pytest.mark.parametrize("pace", ["step", "rank"])
def test_a_collective_whose_next_round_waited_goes_on_when_the_link_comes_back(pace):
    # As above, but 3's link is back 0.5 ms later: the round 2 -> 3 starts then.
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    net.detect = 1e-3
    coll = net.collective("broadcast", 1e3, ranks=[0, 1, 2, 3], algorithm="ring", pace=pace)
    at(env, 1e-6, lambda: net.set_link(3, "s0", 0))
    at(env, 0.5e-3, lambda: net.set_link(3, "s0", 1))
    env.run()
    hop = 2 * L + 1e3 / B
    assert coll.ok and coll.value[3] == pytest.approx(0.5e-3 + hop, rel=1e-12)
    assert net.bytes_sent == pytest.approx(3e3, rel=1e-12)


@pytest.mark.parametrize("pace", ["step", "rank"])
@pytest.mark.parametrize("detect", [5e-3, 1e-3])  # after the reroute, and before it
def test_a_collective_stalled_on_a_host_link_fails_at_the_detection(pace, detect):
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    net.reroute_delay, net.detect = 2e-3, detect
    coll = net.collective("all_reduce", 4 * MB, algorithm="ring", pace=pace)
    at(env, 100e-6, lambda: net.set_link(3, "s0", 0))
    failed: list[float] = []
    when(env, coll, failed)
    env.run()
    assert isinstance(coll.value, LinkFailure)
    assert failed == [pytest.approx(100e-6 + detect, rel=1e-12)]
    assert not net.flows.active[0].size and not net.flows.pending[0].size


@pytest.mark.parametrize("model", ["flow", "analytic"])
def test_a_transfer_across_a_one_second_outage_is_delivered_the_outage_later(model):
    # Closed form: the bytes left when the link went down move once it is back, at the full
    # rate (no retransmission back-off is modelled): delivery = fault-free time + outage.
    env = simpy.Environment()
    net = Network(env, topologies.star(2, bandwidth=B, latency=L), model=model)
    net.reroute_delay, net.detect = 0.5, 3.0  # the schedule's defaults: reroute finds none
    t, until = 300e-6, 300e-6 + 1.0
    done = net.send(0, 1, MB)
    at(env, t, lambda: net.set_link(0, "s0", 0))
    at(env, until, lambda: net.set_link(0, "s0", 1))
    env.run(until=10.0)
    assert done.ok
    assert done.value == pytest.approx(2 * L + MB / B + 1.0, rel=1e-12)
    assert net.bytes_sent == MB
    assert net.link_stats().loc[(0, "s0"), "bytes"] == pytest.approx(MB, rel=1e-12)


def test_a_flow_in_its_latency_phase_waits_out_the_outage():
    env = simpy.Environment()
    net = Network(env, topologies.star(2, bandwidth=B, latency=1e-3))
    net.reroute_delay = 0.5e-3
    done = net.send(0, 1, MB)  # 2 links of 1 ms: its latency phase would end at 2 ms
    at(env, 1e-3, lambda: net.set_link(0, "s0", 0))
    at(env, 4e-3, lambda: net.set_link(0, "s0", 1))
    env.run()
    assert done.value == pytest.approx(4e-3 + MB / B, rel=1e-12)


def test_a_link_restored_before_the_reroute_carries_the_flow_again_at_once():
    env = simpy.Environment()
    net = Network(env, topologies.star(2, bandwidth=B, latency=L))
    net.reroute_delay = 1e-3
    t, until = 300e-6, 800e-6
    done = net.send(0, 1, MB)
    at(env, t, lambda: net.set_link(0, "s0", 0))
    at(env, until, lambda: net.set_link(0, "s0", 1))
    env.run()
    remaining = MB - (t - 2 * L) * B
    assert done.value == pytest.approx(until + remaining / B, rel=1e-12)


def test_a_send_started_during_the_outage_goes_when_the_link_is_back():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    net.set_link(2, "s0", 0)
    held = net.send(0, 2, MB)
    at(env, 1e-3, lambda: net.set_link(2, "s0", 1))
    env.run()
    assert held.value == pytest.approx(1e-3 + 2 * L + MB / B, rel=1e-12)
    start = env.now
    done = net.send(0, 2, MB)
    env.run()
    assert done.value - start == pytest.approx(2 * L + MB / B, rel=1e-12)


def test_ranks_are_given_up_on_detect_after_the_links_down_first_cut_them_off():
    # A ring of 4: (2, 3) going down at 1 ms leaves 0 -> 1 its direct link; (0, 1) going
    # down at 2 ms cuts 0 from 1. The flow fails at 2 ms + detect, not 1 ms + detect.
    env = simpy.Environment()
    net = Network(env, topologies.ring(4, bandwidth=B, latency=L), routing="single")
    net.reroute_delay, net.detect = 0.5e-3, 5e-3
    flow = net.send(0, 1, 10 * MB)
    at(env, 1e-3, lambda: net.set_link(2, 3, 0))
    at(env, 2e-3, lambda: net.set_link(0, 1, 0))
    failed: list[float] = []
    when(env, flow, failed)
    env.run()
    assert isinstance(flow.value, LinkFailure) and flow.value.ranks == (0, 1)
    assert failed == [pytest.approx(7e-3, rel=1e-12)]


def test_a_held_operation_fails_with_its_crashed_rank_and_can_be_cancelled():
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    net.set_link(3, "s0", 0)
    send, coll = net.send(0, 3, MB), net.collective("all_reduce", MB, ranks=[2, 3])
    gone, unplanned = net.send(1, 3, MB), net.collective("all_reduce", MB, ranks=[1, 3])
    cancelled: list[bool] = []
    at(env, 0.5e-3, lambda: cancelled.extend([net.cancel(gone), net.cancel(unplanned)]))
    at(env, 1e-3, lambda: net.drop_rank(3))
    env.run(until=2e-3)
    assert isinstance(send.value, RankDown) and isinstance(coll.value, RankDown)
    assert cancelled == [True, True] and not gone.triggered and not unplanned.triggered
    assert net.bytes_sent == 0.0
    env.run()  # the detection finds nothing left to fail
    assert not gone.triggered and not unplanned.triggered


# -- crashed hosts --------------------------------------------------------------------------


def test_drop_rank_fails_its_collective_and_frees_the_bandwidth_for_another_flow():
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    coll = net.collective("all_reduce", 8 * MB, ranks=[0, 1], algorithm="ring")
    other = net.send(2, 1, 4 * MB)  # shares 1's downlink with the collective's 0 -> 1
    t = 500e-6
    at(env, t, lambda: net.drop_rank(0))
    env.run()
    assert not coll.ok and isinstance(coll.value, RankDown) and coll.value.rank == 0
    assert "rank 0 is down" in str(coll.value)
    # Half of 1's downlink until t (the ring's first round, 4 MB each way, is still going),
    # then all of it.
    moved = (t - 2 * L) * B / 2
    assert other.value == pytest.approx(t + (4 * MB - moved) / B, rel=1e-12)
    # The collective's flows moved (t - 2L) * B / 2 (0 -> 1) and (t - 2L) * B (1 -> 0).
    assert net.bytes_sent == pytest.approx(4 * MB + moved + 2 * moved, rel=1e-12)
    assert net.bytes_sent_by(0) == pytest.approx(moved, rel=1e-12)


def test_drop_rank_fails_sends_from_and_to_it_and_leaves_the_others():
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    to, frm, bystander = net.send(0, 3, MB), net.send(3, 1, MB), net.send(1, 2, MB)
    at(env, 100e-6, lambda: net.drop_rank(3))
    env.run()
    assert isinstance(to.value, RankDown) and isinstance(frm.value, RankDown)
    assert bystander.ok and bystander.value == pytest.approx(2 * L + MB / B, rel=1e-12)
    # Later flows to the dead rank are not refused by the network.
    late = net.send(0, 3, MB)
    env.run()
    assert late.ok


def test_drop_rank_fails_a_collective_with_it_as_member_between_its_messages():
    # A ring broadcast from 0: its first round is 0 -> 1 alone; rank 3 is a member all the same.
    env = simpy.Environment()
    net = Network(env, topologies.star(4, bandwidth=B, latency=L))
    coll = net.collective("broadcast", MB, ranks=[0, 1, 2, 3], algorithm="ring", root=0)
    at(env, 10e-6, lambda: net.drop_rank(3))
    env.run()
    assert isinstance(coll.value, RankDown) and coll.value.rank == 3
    assert not net.flows.active[0].size and not net.flows.pending[0].size


def test_cancel_removes_an_operation_without_firing_it():
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    gone, kept = net.send(0, 2, MB), net.send(1, 2, MB)
    coll = net.collective("all_reduce", MB, ranks=[0, 1])
    t = 200e-6
    cancelled = []
    at(env, t, lambda: cancelled.extend([net.cancel(gone), net.cancel(coll)]))
    env.run()
    assert cancelled == [True, True]
    assert not gone.triggered and not coll.triggered
    # kept shared 2's downlink with gone until t; the collective never touched it.
    moved = (t - 2 * L) * B / 2
    assert kept.value == pytest.approx(t + (MB - moved) / B, rel=1e-12)
    assert net.cancel(gone) is False and net.cancel(kept) is False
    # Only what moved counts: gone moved as much as kept until t, and so did each of the
    # collective's first-round messages (0 -> 1 shares 0's uplink with gone, 1 -> 0 shares
    # 1's with kept: every flow had half a link).
    coll_moved = 2 * moved
    assert net.bytes_sent == pytest.approx(MB + moved + coll_moved, rel=1e-12)


# -- arguments and runs without faults ------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda net: net.set_link(0, 1, 0.5), "link (0, 1) is not a link of the topology"),
        (lambda net: net.set_link(0, "s0", 1.5), "factor must be in [0, 1]"),
        (lambda net: net.set_link(0, "s0", "half"), "factor must be in [0, 1]"),
        (lambda net: net.drop_rank(7), "rank must be a host rank in 0..2"),
    ],
)
def test_bad_fault_arguments_get_one_line_errors(call, message):
    net = Network(simpy.Environment(), topologies.star(3, bandwidth=B, latency=L))
    with pytest.raises(NetworkError, match=r"^[^\n]*$") as err:
        call(net)
    assert message in str(err.value)


def test_a_bad_reroute_delay_is_named_when_a_link_goes_down():
    net = Network(simpy.Environment(), topologies.star(3, bandwidth=B, latency=L))
    net.reroute_delay = -1
    with pytest.raises(NetworkError, match="reroute_delay must be a finite number >= 0"):
        net.set_link(0, "s0", 0)


def test_setting_a_healthy_link_to_its_own_bandwidth_changes_nothing():
    def run(touch: bool) -> list[float]:
        env = simpy.Environment()
        net = Network(env, topologies.fat_tree(4, bandwidth=B, latency=L))
        if touch:
            net.set_link("agg0_0", "core0", 1.0)
        coll = net.collective("all_reduce", 8 * MB)
        sends = [net.send(i, 15 - i, MB) for i in range(8)]
        env.run()
        return [*coll.value.values(), *(s.value for s in sends)]

    assert run(True) == run(False)


def test_exceptions_pickle_with_their_fields():
    import pickle

    exc = pickle.loads(pickle.dumps(LinkFailure([("s0", 2)], (0, 2))))
    assert exc.links == [("s0", 2)] and exc.ranks == (0, 2)
    assert pickle.loads(pickle.dumps(RankDown(4))).rank == 4


def test_two_outages_at_once_each_resume_their_own_flows():
    # Two stalls side by side (their reroutes find no route): each link's return puts back
    # its own flow only, whatever the order the stalls were made in.
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    net.reroute_delay = 0.1e-3
    a, b = net.send(1, 0, MB), net.send(2, 0, MB)  # they share 0's downlink
    t = 100e-6
    at(env, t, lambda: net.set_link(1, "s0", 0))
    at(env, t, lambda: net.set_link(2, "s0", 0))
    at(env, 2e-3, lambda: net.set_link(2, "s0", 1))
    at(env, 3e-3, lambda: net.set_link(1, "s0", 1))
    env.run()
    moved = (t - 2 * L) * B / 2
    assert b.value == pytest.approx(2e-3 + (MB - moved) / B, rel=1e-12)
    assert a.value == pytest.approx(3e-3 + (MB - moved) / B, rel=1e-12)
