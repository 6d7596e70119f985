"""Parameter servers with compressed pushes: against the uncompressed server, in bytes, and
on the real backend (the modes themselves are tested in tests/sim and tests/real)."""

import pytest
import torch

import topologies
from sim.run import run
from strategies import ParameterServer
from studies.conformance import check

SGD = {"name": "sgd", "lr": 0.1}
LOSSLESS = {"name": "topk", "ratio": 1.0, "error_feedback": False}


def simulate(strategy, steps=6):
    return run(strategy, "mlp_digits", topologies.star(5), steps=steps, optimizer=SGD, eval_every=2)


@pytest.mark.parametrize("servers", [1, 2])
def test_lossless_compressed_pushes_give_the_uncompressed_servers_model(servers):
    compressed = simulate(ParameterServer(servers=servers, compression=LOSSLESS))
    plain = simulate(ParameterServer(servers=servers))
    torch.testing.assert_close(compressed.parameters, plain.parameters, rtol=0, atol=0)


def test_pushes_weigh_what_the_scheme_says():
    def nbytes(strategy, steps):
        return simulate(strategy, steps=steps).summary["bytes"]

    qsgd = ParameterServer(compression={"name": "qsgd", "cost": 0})
    numel = simulate(ParameterServer(), steps=1).parameters.numel()
    # Two more steps: four pushes each, of numel + 4 bytes instead of 4 numel (pulls and
    # the 8-byte version headers are the same).
    saved = (nbytes(ParameterServer(), 5) - nbytes(ParameterServer(), 3)) - (
        nbytes(qsgd, 5) - nbytes(qsgd, 3)
    )
    assert saved == 2 * 4 * (4 * numel - (numel + 4))
    logged = simulate(qsgd, steps=3).logs["compression_ratio"].dropna()
    assert list(logged) == [pytest.approx((numel + 4) / (4 * numel))]  # once, at step 2


def test_powersgd_is_refused_in_one_line():
    with pytest.raises(ValueError, match="powersgd") as err:
        ParameterServer(compression="powersgd")
    assert "\n" not in str(err.value)


def test_a_sync_server_with_compressed_pushes_conforms_on_gloo():
    strategy = ParameterServer(mode="sync", servers=2, compression="qsgd")
    check(strategy, "mlp_digits", world_size=5, steps=20, optimizer=SGD).raise_for_differences()
