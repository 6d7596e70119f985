"""AllReduceSGD's own checks (its training behaviour is tested in tests/sim and tests/real)."""

import pytest

import sim
from strategies import AllReduceSGD
from strategies.allreduce import ALGORITHMS


def test_algorithm_names_match_the_network_engine():
    # strategies may not import sim, so the names are listed twice; keep them in step.
    assert set(ALGORITHMS) == set(sim.ALGORITHMS)


def test_unknown_algorithm_is_refused_in_one_line():
    with pytest.raises(ValueError, match="algorithm='bogus'") as err:
        AllReduceSGD(algorithm="bogus")
    assert "\n" not in str(err.value)
