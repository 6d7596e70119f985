"""The network's one timer: stale wake-ups ignored, each instant handled once."""

from __future__ import annotations

import pytest
import simpy

import topologies
from sim.network import Network

B, L = 1e9, 1e-6  # bytes/s and seconds per link


def test_traffic_due_before_the_pending_timer_is_served_on_time_and_the_stale_wake_is_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = simpy.Environment()
    net = Network(env, topologies.star(3, bandwidth=B, latency=L))
    woken: list[float] = []
    advance = net.timer._advance
    monkeypatch.setattr(net.timer, "_advance", lambda: (woken.append(env.now), advance())[1])
    first = net.send(0, 1, 1e6)

    def later():
        yield env.timeout(5e-4)  # the timer is set for the first's end, 2 L + 1 ms
        second = net.send(2, 0, 1e3)  # disjoint links, due long before the first ends
        assert (yield second) == pytest.approx(5e-4 + 2 * L + 1e3 / B, rel=1e-12)

    env.process(later())
    env.run()
    assert first.value == pytest.approx(2 * L + 1e6 / B, rel=1e-12)
    # The network is advanced once per instant something starts or finishes; the timer set for
    # the first's end before the second arrived is stale when it wakes, and does nothing.
    expected = [2 * L, 5e-4 + 2 * L, 5e-4 + 2 * L + 1e3 / B, 2 * L + 1e6 / B]
    assert woken == pytest.approx(expected, rel=1e-12)
    assert net.timer.t_last == first.value and not net.timer.busy


def _allreduces(inline: bool, disturb: float | None = None) -> tuple[list, object, int]:
    """Three all-reduces on a fat tree at awkward start times (rounding differs from zero's),
    with a send started at ``disturb`` where given; the timer's events processed in place
    (``inline``) or all through SimPy's queue (a horizon before every event)."""
    env = simpy.Environment()
    net = Network(env, topologies.fat_tree(4))
    if not inline:
        net.timer.horizon = -float("inf")
    values: list = []

    def program():
        for k in range(3):
            yield env.timeout(0.1234567 * (k + 1))
            values.append((yield net.collective("all_reduce", 203_560.0)))

    def other():
        yield env.timeout(disturb)
        values.append((yield net.send(3, 12, 1e5)))

    env.process(program())
    if disturb is not None:
        env.process(other())
    env.run()
    return values, net.link_stats().to_csv(float_format="%.17g"), net.timer.inlined


def test_timer_events_processed_in_place_keep_every_time_and_link_counter_bit_for_bit() -> None:
    queued, links_queued, none = _allreduces(inline=False)
    inlined, links_inlined, count = _allreduces(inline=True)
    assert none == 0 and count > 0  # most of the rounds' timers never went through the queue
    assert inlined == queued  # dicts of floats: == is bit for bit here
    assert links_inlined == links_queued


def test_an_event_queued_before_the_next_timer_is_served_first() -> None:
    # A send that starts during the second all-reduce: the timers after it go through the
    # queue (or in place again once it is the next event), and every time is the queue's.
    (_, _, undisturbed) = _allreduces(inline=True)
    mid = 0.1234567 * 3 + 1e-5
    queued, links_queued, _ = _allreduces(inline=False, disturb=mid)
    inlined, links_inlined, count = _allreduces(inline=True, disturb=mid)
    assert inlined == queued and links_inlined == links_queued
    assert 0 < count < undisturbed + 10


def test_no_timer_is_processed_in_place_past_the_horizon() -> None:
    # sim.run stops at max_time without processing later events: a horizon mid-collective
    # leaves the network where the queue-driven loop leaves it.
    states = []
    for inline in (False, True):
        env = simpy.Environment()
        net = Network(env, topologies.fat_tree(4))
        horizon = 2.5e-5
        net.timer.horizon = horizon if inline else -float("inf")
        done = net.collective("all_reduce", 203_560.0)
        while env.peek() <= horizon:
            env.step()
        states.append((env.now, net.timer.t_last, done.triggered, net.bytes_sent))
        assert env.now <= horizon
    assert states[0] == states[1]
