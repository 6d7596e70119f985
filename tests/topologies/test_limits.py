"""Sizes that cannot be built are refused at once, in one line naming the field."""

from __future__ import annotations

import signal

import pytest

import topologies
from topologies import limits
from topologies.model import TopologyError

#: Every family with a size, asked for far too much: (spec, the field(s) the error names).
TOO_BIG = [
    ("ring:n=1180591620717411303424", "n=1.18e+21"),  # 2**70
    ("star:n=4194305", "n=4,194,305"),  # one above the cap
    ("fully_connected:n=1000000", "n=1,000,000"),
    ("torus2d:rows=1048576,cols=1048576", "rows=1,048,576, cols=1,048,576"),
    ("fat_tree:k=1099511627776", "k=1.1e+12"),  # 2**40
    ("hierarchical:nodes=1048576,gpus_per_node=8", "nodes=1,048,576, gpus_per_node=8"),
    ("random_regular:n=8388608,degree=3", "n=8,388,608, degree=3"),
]


@pytest.fixture(autouse=True)
def _no_hang():
    """A builder that starts building would run for hours: fail instead."""

    def hung(*_):
        raise AssertionError("the builder started building instead of refusing")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


@pytest.mark.parametrize(("spec", "fields"), TOO_BIG, ids=[s.split(":")[0] for s, _ in TOO_BIG])
def test_a_size_that_cannot_be_built_is_refused_before_building(spec, fields):
    with pytest.raises(TopologyError) as caught:
        topologies.from_spec(spec)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{spec.split(':')[0]} with {fields} would have ")
    assert "hosts" in message and "links" in message and "(about " in message
    assert "use a smaller" in message


def test_the_host_cap_allows_the_scale_the_simulator_is_meant_for():
    assert limits.MAX_HOSTS >= 131_072
    # 2**22 + 1 hosts are refused for the cap, whatever the memory.
    with pytest.raises(TopologyError, match="above the limit of 4,194,304 hosts"):
        topologies.star(2**22 + 1)


def test_a_topology_larger_than_the_memory_here_is_refused(monkeypatch):
    monkeypatch.setattr(limits, "memory_limit", lambda: 10**6)  # a 1 MB machine
    # fully_connected(100): 100 nodes and 4,950 links, 55,000 + 1,485,000 bytes.
    with pytest.raises(TopologyError) as caught:
        topologies.fully_connected(100)
    assert str(caught.value) == (
        "fully_connected with n=100 would have 100 hosts and 4,950 links (about 1.54 MB): "
        "more than the 1 MB of memory here; use a smaller n"
    )
    assert len(topologies.hosts(topologies.fully_connected(40))) == 40  # 22 kB + 234 kB: fits


def test_a_refused_topology_in_an_experiment_file_names_its_field(tmp_path):
    from studies.experiment import ExperimentError, load_experiment

    path = tmp_path / "big.toml"
    path.write_text(
        '[run]\nname = "big"\nsteps = 1\n[strategy]\nname = "allreduce"\n'
        '[workload]\nname = "quadratic"\n[topology]\nkind = "ring"\nn = 1180591620717411303424\n'
    )
    with pytest.raises(ExperimentError) as caught:
        load_experiment(path)
    assert "topology" in str(caught.value) and "n=1.18e+21" in str(caught.value)
