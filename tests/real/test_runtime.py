"""The real runtime's own parts, without processes: timers and the interruptible wait."""

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
