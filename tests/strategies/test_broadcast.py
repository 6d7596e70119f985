"""Broadcast (reduce to a root, step there, broadcast its parameters): options, the maths
against AllReduceSGD, simulated time and bytes against the network engine, and conformance."""

import pytest
import simpy
import torch

import sim
import topologies
from strategies.allreduce import AllReduceSGD
from strategies.broadcast import Broadcast
from strategies.comm import ALGORITHMS_FOR
from strategies.registry import get
from studies.conformance import check

SGD = {"name": "sgd", "lr": 0.1}
COMPUTE = 0.001  # seconds a gradient, constant: a step is COMPUTE plus its communication
STEPS = 8


def simulate(strategy, topology, optimizer=SGD, steps=STEPS):
    return sim.run(
        strategy,
        "mlp_digits",
        topology,
        steps=steps,
        optimizer=optimizer,
        compute={"base": COMPUTE},
        eval_every=steps,
    )


def step_rows(result):
    return result.metrics[result.metrics["kind"] == "step"].sort_values("step")


def engine_bytes(topology, op, nbytes, ranks, root, algorithm):
    """Bytes the network engine injects for one collective on an idle network."""
    env = simpy.Environment()
    net = sim.Network(env, topology, record=False)
    net.collective(op, nbytes, ranks=ranks, algorithm=algorithm, root=root)
    env.run()
    return net.bytes_sent


# -- options ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"root": -1}, "root=-1"),
        ({"root": True}, "root=True"),
        ({"root": 1.0}, "root=1.0"),
        ({"reduce_algorithm": "halving_doubling"}, "reduce_algorithm='halving_doubling'"),
        ({"reduce_algorithm": "bogus"}, "reduce_algorithm='bogus'"),
        ({"broadcast_algorithm": "hierarchical"}, "broadcast_algorithm='hierarchical'"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named) as err:
        Broadcast(**kwargs)
    assert "\n" not in str(err.value)


def test_every_algorithm_of_the_collectives_is_accepted_and_registered_by_name():
    for algorithm in ALGORITHMS_FOR["reduce"]:
        assert Broadcast(reduce_algorithm=algorithm).reduce_algorithm == algorithm
    for algorithm in ALGORITHMS_FOR["broadcast"]:
        assert Broadcast(broadcast_algorithm=algorithm).broadcast_algorithm == algorithm
    built = get("broadcast", root=1)
    assert isinstance(built, Broadcast) and built.config() == {
        "name": "broadcast",
        "root": 1,
        "reduce_algorithm": "auto",
        "broadcast_algorithm": "auto",
        "compression": None,
    }


def test_a_root_outside_the_workers_is_refused_when_the_run_starts():
    with pytest.raises(ValueError, match="root=4 is not a worker index") as err:
        simulate(Broadcast(root=4), topologies.star(4))
    assert "\n" not in str(err.value)


def test_the_roots_replica_is_the_global_model():
    assert Broadcast(root=2).owners(4) == ([2], "one")


# -- the maths ----------------------------------------------------------------------------
@pytest.mark.parametrize("root", [0, 3])
@pytest.mark.parametrize(
    "optimizer", [SGD, {"name": "sgd", "lr": 0.1, "momentum": 0.9}], ids=["sgd", "momentum"]
)
def test_it_trains_exactly_as_allreduce_sgd(root, optimizer):
    # One optimizer (the root's) stepping on the mean gradient at parameters every worker
    # shares is AllReduceSGD, whatever the optimizer's state.
    topology = topologies.hierarchical(2, 2)
    ours = simulate(Broadcast(root=root), topology, optimizer)
    reference = simulate(AllReduceSGD(), topology, optimizer)
    assert ours.summary["steps"] == STEPS
    torch.testing.assert_close(ours.parameters, reference.parameters, rtol=1e-5, atol=1e-7)


# -- time and bytes against the network engine ----------------------------------------------
@pytest.mark.parametrize(
    "topology,root,algorithms",
    [
        (topologies.star(4, bandwidth="1Gbps", latency="5us"), 0, ("auto", "auto")),
        (topologies.star(4, bandwidth="1Gbps", latency="5us"), 2, ("ring", "direct")),
        (topologies.hierarchical(2, 2), 3, ("tree", "ring")),
    ],
    ids=["star-auto", "star-ring-direct", "hierarchical-tree-ring"],
)
def test_a_step_takes_compute_plus_the_engines_reduce_and_broadcast(topology, root, algorithms):
    reduce_algorithm, broadcast_algorithm = algorithms
    result = simulate(Broadcast(root, reduce_algorithm, broadcast_algorithm), topology)
    nbytes = 4 * result.parameters.numel()  # float32
    ranks = list(range(4))
    expected = (
        COMPUTE
        + sim.collective_time(
            topology, "reduce", nbytes, ranks=ranks, root=root, algorithm=reduce_algorithm
        )
        + sim.collective_time(
            topology, "broadcast", nbytes, ranks=ranks, root=root, algorithm=broadcast_algorithm
        )
    )
    rows = step_rows(result)
    # Steady state: the first interval starts at time 0, not at a step.
    intervals = rows["time"].diff().iloc[1:]
    assert intervals.to_numpy() == pytest.approx([expected] * (STEPS - 1), rel=1e-9)
    # Bytes: the engine's own count, and the documented formula 2 (n - 1) M.
    per_step = engine_bytes(
        topology, "reduce", nbytes, ranks, root, reduce_algorithm
    ) + engine_bytes(topology, "broadcast", nbytes, ranks, root, broadcast_algorithm)
    assert per_step == 2 * 3 * nbytes
    assert rows["bytes"].diff().iloc[1:].to_numpy() == pytest.approx([per_step] * (STEPS - 1))


# -- the real backend -----------------------------------------------------------------------
def test_it_conforms_on_real_gloo_processes():
    report = check(Broadcast(root=1), "mlp_digits", world_size=4, steps=20, optimizer=SGD)
    report.raise_for_differences()


# -- compression ----------------------------------------------------------------------------
LOSSLESS = {"name": "topk", "ratio": 1.0, "error_feedback": False}


def test_a_lossless_compressed_gather_trains_exactly_as_allreduce_sgd():
    star = topologies.star(4)
    gathered = simulate(Broadcast(root=2, compression=LOSSLESS), star)
    plain = simulate(AllReduceSGD(), star)
    torch.testing.assert_close(gathered.parameters, plain.parameters, rtol=1e-6, atol=0)


def test_compressed_payloads_travel_to_the_root_and_parameters_back():
    star = topologies.star(4)
    result = simulate(Broadcast(compression="qsgd"), star, steps=4)
    numel = result.parameters.numel()
    broadcast = engine_bytes(star, "broadcast", 4 * numel, [0, 1, 2, 3], 0, "auto")
    # Three steps complete: three qsgd payloads (a byte a value, a 4-byte norm, 8 bytes of
    # message header framing are not charged) into the root and one broadcast each.
    per_step = 3 * (numel + 4) + broadcast
    rows = step_rows(result).set_index("step")["bytes"]
    assert rows[4] - rows[1] == pytest.approx(3 * per_step)


def test_powersgd_is_refused_for_a_gather():
    with pytest.raises(ValueError, match="powersgd"):
        Broadcast(compression="powersgd")
