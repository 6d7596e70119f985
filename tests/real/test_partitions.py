"""A testbed's partitions as its ranks see them, and the quorums they leave out (no root:
the link agent's records are written on an in-process store)."""

import threading

import torch.distributed as dist

from real.membership import Membership, PartitionStuck
from real.partitions import Partitions, cuts, is_out

LINKS = [("s0", 0), ("s0", 1), ("s0", 2)]


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def agent(store, at, event, link='["s0", "2"]'):
    """What real.testbed.links writes for a change it made."""
    index = int(store.add("testbed/links", 0))
    store.set(f"testbed/links/{index}", f"{at!r} {event} {link}")
    store.add("testbed/links", 1)


def parts_on(store, clock, repairs=0):
    return Partitions(store, LINKS, [0, 1, 2], detect=2.0, repairs=repairs, clock=clock)


def test_a_link_down_is_known_detect_after_and_a_link_back_at_once():
    store, clock = dist.HashStore(), Clock(1.5)
    parts = parts_on(store, clock, repairs=1)
    agent(store, 1.0, "link_down")
    assert parts.primary([0, 1, 2]) is None and parts.cut_by() == []
    # Not known yet, but an operation that failed over it is named, and when to say so.
    assert parts.separated(0, [1, 2]) == ((2,), 3.0)
    assert parts.separated(2, [0, 1]) == ((0, 1), 3.0)
    clock.now = 3.0
    assert parts.primary([0, 1, 2]) == {0, 1} and parts.cut_by() == [("s0", 2)]
    assert parts.since() == 1.0
    # A repair is to come: a part too small waits for it instead of ending the run.
    assert parts.stuck(frozenset({0, 1}), [0, 1, 2], 3) is None
    agent(store, 3.5, "link_up")
    assert parts.primary([0, 1, 2]) is None and parts.separated(0, [1, 2])[0] == ()


def test_a_part_too_small_with_no_repair_to_come_is_the_runs_one_line():
    store, clock = dist.HashStore(), Clock(5.0)
    agent(store, 1.0, "link_down")
    parts = parts_on(store, clock)
    assert parts.stuck(frozenset({0, 1}), [0, 1, 2], 2) is None  # big enough
    line = parts.stuck(frozenset({0, 1}), [0, 1, 2], 3)
    assert line is not None and "\n" not in line
    assert line.startswith("link ('s0', 2) down cut ranks [2] off")


def test_each_quorums_cuts_are_recorded_once_for_the_launcher():
    store, clock = dist.HashStore(), Clock(4.0)
    agent(store, 1.0, "link_down")
    parts = parts_on(store, clock)
    parts.mark("", 2, cut=[2], back=[])
    parts.mark("", 2, cut=[2], back=[])  # another member of the same quorum: nothing
    assert is_out(store, 2) and not is_out(store, 1)
    clock.now = 9.0
    parts.mark("", 5, cut=[], back=[2])
    assert cuts(store) == [(4.0, 2, True, 1.0), (9.0, 2, False, 9.0)]
    assert not is_out(store, 2)


class Cut:
    """A partition that leaves rank 2 out while ``down`` is set (RankFaults' interface)."""

    def __init__(self, min_left=1):
        self.down = threading.Event()
        self.min_left = min_left

    def primary(self, live):
        return frozenset(r for r in live if r != 2) if self.down.is_set() else None

    def stuck(self, left, live, min_size):
        return "too few" if len(left) < min_size and self.min_left == 0 else None


def test_a_cut_off_rank_waits_out_of_the_quorums_and_is_admitted_again_once_back():
    store, cut = dist.HashStore(), Cut()
    cut.down.set()
    members = [Membership(lambda: store, r, 3, interval=0.05) for r in range(3)]
    got = {}

    def ask(r, name):
        m = members[r]
        q = m.announce(1, step=0)
        got[r, name] = m.wait(q, 1, 10.0, 5.0, live=lambda: (0, 1, 2), partition=cut)

    waiting = threading.Thread(target=ask, args=(2, "cut"))
    waiting.start()
    first = [threading.Thread(target=ask, args=(r, "first")) for r in (0, 1)]
    for t in first:
        t.start()
    for t in first:
        t.join(10)
    assert got[0, "first"].members == (0, 1) and got[0, "first"].cut == (2,)
    assert waiting.is_alive()  # rank 2 waits for a quorum that can hold it
    cut.down.clear()  # its link is back
    again = [threading.Thread(target=ask, args=(r, "again")) for r in (0, 1)]
    for t in again:
        t.start()
    for t in [*again, waiting]:
        t.join(10)
    assert got[0, "again"].members == (0, 1, 2) == got[2, "cut"].members
    assert got[0, "again"].reconnected == (2,) == got[2, "cut"].reconnected
    for m in members:
        m.close()


def test_a_partition_that_can_never_hold_the_quorum_raises_its_line():
    store, cut = dist.HashStore(), Cut(min_left=0)
    cut.down.set()
    with Membership(lambda: store, 0, 3, interval=0.05) as m:
        q = m.announce(3, step=0)
        try:
            m.wait(q, 3, 5.0, 5.0, live=lambda: (0, 1, 2), partition=cut)
        except PartitionStuck as stuck:
            assert str(stuck) == "too few"
        else:
            raise AssertionError("no PartitionStuck")
