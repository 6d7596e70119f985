"""Local SGD against all-reduce SGD, its warm-up, AdaComm's rule, and the real backend."""

import pytest
import torch

import topologies
from sim.run import run
from strategies import AllReduceSGD, LocalSGD
from strategies.averaging import adacomm_period
from studies.conformance import check

SGD = {"name": "sgd", "lr": 0.1}


def simulate(strategy, steps=12, workload="mlp_digits", hosts=4, **kwargs):
    kwargs.setdefault("optimizer", SGD)
    return run(strategy, workload, topologies.star(hosts), steps=steps, **kwargs)


def test_period_one_equals_all_reduce_sgd():
    # Averaging parameters after one plain SGD step is averaging the gradients.
    local, allreduce = simulate(LocalSGD(period=1)), simulate(AllReduceSGD())
    torch.testing.assert_close(local.parameters, allreduce.parameters, rtol=1e-5, atol=1e-6)
    assert list(local.evals["loss"]) == pytest.approx(list(allreduce.evals["loss"]), rel=1e-5)


def test_warmup_steps_are_all_reduce_sgd_then_workers_drift_apart():
    warm = simulate(LocalSGD(period=5, warmup=4), steps=4)
    allreduce = simulate(AllReduceSGD(), steps=4)
    torch.testing.assert_close(warm.parameters, allreduce.parameters)
    later = simulate(LocalSGD(period=5, warmup=4), steps=7, eval_every=1)
    consensus = later.evals.set_index("step")["consensus"]
    assert consensus[4] == 0 and consensus[6] > 0  # local steps after the warm-up


def test_workers_agree_after_each_averaging_and_the_bytes_are_one_all_reduce_per_period():
    result = simulate(LocalSGD(period=4), steps=12, eval_every=1)
    consensus = result.evals.set_index("step")["consensus"]
    assert all(consensus[k] == 0 for k in (4, 8))
    assert all(consensus[k] > 0 for k in (1, 2, 3, 5))

    # A window of 8 steps holds two averagings; one all-reduce is what period 1 adds a step.
    # (Windows end between averagings: the bytes of a run include the flows it started at
    # the instant it stopped.)
    def nbytes(strategy, steps):
        return simulate(strategy, steps=steps).summary["bytes"]

    one = nbytes(LocalSGD(period=1), 3) - nbytes(LocalSGD(period=1), 2)
    assert nbytes(LocalSGD(period=4), 13) - nbytes(LocalSGD(period=4), 5) == 2 * one


def test_adaptive_period_follows_adacomm_and_is_logged():
    result = simulate(
        LocalSGD(period="adaptive", initial_period=8), steps=120, workload="quadratic"
    )
    periods = list(result.logs["period"])
    assert periods[0] == 8 and len(periods) > 2
    # The loss falls, so periods shorten (not monotonically: each period's mean loss is noisy).
    half = len(periods) // 2
    assert sum(periods[half:]) / (len(periods) - half) < sum(periods[:half]) / half
    assert adacomm_period(8, 4.0, 1.0) == 4


def test_options_are_checked_in_one_line():
    for kwargs, field in [
        ({"period": 0}, "period=0"),
        ({"warmup": -1}, "warmup=-1"),
        ({"period": 4, "initial_period": 8}, "initial_period=8 applies only"),
        ({"compression": "zip"}, "zip"),
        ({"compression": "signsgd"}, "signsgd' averages signs"),
        ({"compression": "topk", "algorithm": "tree"}, "algorithm='tree' cannot carry"),
    ]:
        with pytest.raises(ValueError, match=field) as err:
            LocalSGD(**kwargs)
        assert "\n" not in str(err.value)


def test_local_sgd_with_warmup_and_adaptive_periods_conforms_on_gloo():
    strategy = LocalSGD(period="adaptive", initial_period=4, warmup=2)
    check(strategy, "mlp_digits", world_size=4, steps=20, optimizer=SGD).raise_for_differences()


def test_the_summary_reports_the_final_consensus_and_the_compression_achieved():
    result = simulate(LocalSGD(period=3, compression="qsgd"), steps=25, eval_every=5)
    numel = result.parameters.numel()
    assert result.summary["final_consensus"] == result.evals["consensus"].iloc[-1] > 0
    # Each averaging sends a qsgd payload: a byte a value and a 4-byte norm.
    assert result.summary["compression_ratio"] == pytest.approx((numel + 4) / (4 * numel))
