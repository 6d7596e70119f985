"""AllReduceSGD's own checks (its training behaviour is tested in tests/sim and tests/real)."""

import pytest

import sim
from strategies import AllReduceSGD
from strategies.comm import ALGORITHMS


def test_algorithm_names_match_the_network_engine():
    # strategies may not import sim, so the names are listed twice; keep them in step.
    assert set(ALGORITHMS) == set(sim.ALGORITHMS)


def test_unknown_algorithm_is_refused_in_one_line():
    with pytest.raises(ValueError, match="algorithm='bogus'") as err:
        AllReduceSGD(algorithm="bogus")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "op", ["all_reduce", "reduce_scatter", "all_gather", "broadcast", "reduce"]
)
def test_the_communicators_algorithm_table_matches_the_network_engine(op):
    # The shared communicator refuses an algorithm a collective lacks; sim builds exactly these.
    from strategies.comm import ALGORITHMS_FOR

    assert set(ALGORITHMS_FOR[op]) == set(sim.supported(op))
