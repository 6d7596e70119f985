"""NCCL on GPUs: skipped without CUDA (run them with ``pytest -m gpu`` on a GPU machine).

The smoke test runs the real backend with one process and with one per GPU, tensors on the
ranks' devices, and checks the simulator's numbers (to GPU float precision: cuBLAS sums in
another order than the CPU), a server strategy whose receives from any worker go through the
portable path NCCL needs, and CUDA-event compute times.
"""

import pytest
import torch

import real
import sim
import topologies
from strategies import AllReduceSGD, ParameterServer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and NCCL"),
]

OPTIMIZER = {"name": "sgd", "lr": 0.1}


def _gpus() -> list[int]:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return sorted({1, count} - {0})


@pytest.mark.parametrize("nproc", _gpus())
def test_allreduce_on_nccl_gives_the_simulators_losses(nproc):
    measured = real.run(
        AllReduceSGD(), "mlp_digits", nproc=nproc, steps=20, eval_every=10, optimizer=OPTIMIZER
    )
    assert measured.config["backend"] == "real-nccl"
    simulated = sim.run(
        AllReduceSGD(),
        "mlp_digits",
        topologies.star(nproc),
        steps=20,
        eval_every=10,
        optimizer=OPTIMIZER,
    )
    assert list(measured.evals["loss"]) == pytest.approx(list(simulated.evals["loss"]), rel=1e-3)
    assert measured.summary["steps"] == 20


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="a server and a worker need 2 GPUs",
)
def test_an_async_server_receives_from_any_worker_on_nccl():
    nproc = torch.cuda.device_count()
    result = real.run(
        ParameterServer(mode="async"),
        "mlp_digits",
        nproc=nproc,
        steps=30,
        eval_every=10,
        optimizer=OPTIMIZER,
    )
    assert result.summary["steps"] == 30
    assert result.summary["final_loss"] < result.evals["loss"].iloc[0]


def test_gloo_refuses_nothing_and_nccl_refuses_gloos_any_source_receive():
    with pytest.raises(ValueError, match="portable=False needs gloo"):
        real.run("allreduce", "quadratic", nproc=1, steps=2, backend="nccl", portable=False)
