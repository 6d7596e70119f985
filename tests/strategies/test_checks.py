"""Groups: what a large world's every call uses is computed once per group."""

import pytest

from strategies.checks import CommError, Group, make_group


def test_a_group_hashes_and_compares_as_its_ranks_and_epoch():
    group = Group((0, 2, 5), epoch=3)
    assert hash(group) == hash(((0, 2, 5), 3))
    assert group == Group((0, 2, 5), epoch=3) != Group((0, 2, 5))
    assert {group.key: 1}[Group((0, 2, 5), epoch=3).key] == 1


def test_membership_and_index_look_ranks_up():
    group = Group((1, 4, 9))
    assert [r in group for r in range(10)] == [r in (1, 4, 9) for r in range(10)]
    assert [group.index(r) for r in (1, 4, 9)] == [0, 1, 2]
    with pytest.raises(ValueError, match="not in tuple"):  # as tuple.index says
        group.index(3)


def test_the_group_table_is_built_once_not_per_call():
    group = Group(tuple(range(1000)))
    group.index(999)
    table = group.__dict__["_positions"]
    assert 500 in group and group.index(10) == 10
    assert group.__dict__["_positions"] is table


def test_make_group_still_checks_its_ranks():
    with pytest.raises(CommError, match="group rank=7 is not a rank of this world"):
        make_group([0, 7], 4)
    with pytest.raises(CommError, match="repeat a rank"):
        make_group([1, 1], 4)
