"""The real runtime's own parts, without processes: timers, the interruptible wait, and the
watch on peers' heartbeats."""

import threading
import time

from real.runtime import Timers


def test_many_sleeps_share_one_timer_thread_and_end_in_deadline_order():
    start = time.monotonic()
    timers = Timers(lambda: time.monotonic() - start)
    before = threading.active_count()
    handles = [timers.sleep(0.05 * (3 - i % 3), f"sleep {i}") for i in range(300)]
    assert threading.active_count() == before  # no thread per sleep
    deadline = time.monotonic() + 5
    while not all(h.done for h in handles) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(h.done for h in handles)
    for h in handles:
        assert h.finished_at - h.started_at >= 0.049
    shortest = [h for i, h in enumerate(handles) if i % 3 == 2]
    longest = [h for i, h in enumerate(handles) if i % 3 == 0]
    assert max(h.finished_at for h in shortest) <= min(h.finished_at for h in longest)


class FakeStore:
    """The calls a StopSignal makes on a store, in memory (one store for every client)."""

    def __init__(self):
        self.values, self.lock = {}, threading.Lock()

    def add(self, key, n):
        with self.lock:
            self.values[key] = int(self.values.get(key, 0)) + n
            return self.values[key]

    def check(self, keys):
        return all(k in self.values for k in keys)

    def multi_get(self, keys):
        return [str(self.values[k]).encode() for k in keys]

    def get(self, key):
        return str(self.values[key]).encode()

    def set(self, key, value):
        self.values[key] = value

    def compare_set(self, key, expected, value):
        with self.lock:
            if self.values.get(key, "") == expected:
                self.values[key] = value
            return self.values[key]


def test_a_silent_peer_is_reported_only_while_a_rank_waits_and_named(monkeypatch):
    import real.runtime
    from real.runtime import StopSignal
    from strategies.handles import Handle

    monkeypatch.setattr(real.runtime, "HEARTBEAT_EVERY", 0.02)
    store = FakeStore()
    stopped = threading.Event()  # rank 1 is stopped (SIGSTOP): its heartbeat stops

    def peers():  # the heartbeats of ranks 1 and 2
        while True:
            store.add("beat/2", 1)
            if not stopped.is_set():
                store.add("beat/1", 1)
            time.sleep(0.01)

    threading.Thread(target=peers, daemon=True).start()
    signal = StopSignal(store, store, owners=1, rank=0, world_size=3, silence=1.0)
    stopped.set()
    time.sleep(2.0)
    assert not signal.event.is_set()  # a silent rank that nobody waits on is not a failure
    signal.waiting(Handle("comm", "all_reduce on group (0, 1, 2)"))
    deadline = time.monotonic() + 30
    while not signal.event.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert signal.reason == "failed" and store.values["stop"] == "failed"
    assert store.values["failed"] == (
        "rank 1 stopped responding: no heartbeat for 1 s (stopped, hung, or cut off from the "
        "run's store; its own log may say why) while rank 0 waited on all_reduce on group "
        "(0, 1, 2)"
    )
