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
