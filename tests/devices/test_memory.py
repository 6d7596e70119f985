"""A rank's memory on its device: the parts by optimizer and precision, and the refusal."""

import pytest

import workloads
from devices import DoesNotFit, check_fits, optimizer_states, peak_memory, training_memory
from strategies.optim import OptimizerSpec


@pytest.mark.parametrize(
    ("optimizer", "param_bytes", "master", "per_parameter"),
    [
        ("adam", 2, None, 16),  # ZeRO's 16 Psi: bf16 params + grads, fp32 master, m and v
        ("adamw", 4, None, 16),  # fp32: params, grads, two moments
        ("sgd", 4, None, 8),
        ("momentum", 4, None, 12),
        ("sgd", 2, None, 8),  # bf16 + fp32 master weights, no state
        ("adam", 2, False, 8),  # pure bf16 Adam: state in bf16
    ],
)
def test_bytes_per_parameter(optimizer, param_bytes, master, per_parameter):
    m = training_memory(
        1000, 0, optimizer=optimizer, param_bytes=param_bytes, master_weights=master
    )
    assert m.bytes_per_parameter == per_parameter and m.total == 1000 * per_parameter


def test_optimizer_state_is_read_from_specs_as_runs_write_them():
    assert optimizer_states(OptimizerSpec.parse("sgd")) == ("sgd", 0)
    assert optimizer_states(OptimizerSpec.parse({"name": "sgd", "momentum": 0.9})) == (
        "momentum",
        1,
    )
    assert optimizer_states(OptimizerSpec.parse({"name": "adam", "lr": 1e-4})) == ("adam", 2)
    assert optimizer_states({"name": "rmsprop", "momentum": 0.9, "centered": True})[1] == 3
    with pytest.raises(ValueError, match="did you mean 'adamw'"):
        optimizer_states("adamww")


def test_llama3_70b_does_not_fit_one_h100_and_says_so_in_one_line():
    estimate = peak_memory(workloads.get("llama3_70b"), optimizer="adam")
    # 70.55e9 parameters x 16 bytes (bf16 + fp32 master + Adam), plus activations.
    assert estimate.total - estimate.activations == pytest.approx(70_553_706_496 * 16)
    with pytest.raises(DoesNotFit) as err:
        check_fits(estimate, "H100")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"llama3_70b needs {estimate.gb:,.0f} GB per rank (parameters 141,")
    assert message.endswith(
        "and the H100 has 80 GB; use a smaller model (a data-parallel rank holds a whole replica)"
    )  # no device holds 2 TB, and neither Adam's state nor the activations alone are the cause


def test_the_fix_named_is_one_that_works():
    # GPT-2 XL with Adam: 1.56e9 x 16 = 25 GB of state; 16 x 1,024 tokens add ~84 GB of
    # activations without recomputation: more than an A100's 80 GB, less than an H200's 141.
    w = workloads.get("gpt2_xl", batch_size=16)
    estimate = peak_memory(w, optimizer="adam")
    assert 80 < estimate.gb < 141
    with pytest.raises(DoesNotFit) as err:
        check_fits(estimate, "A100")
    message = str(err.value)
    assert "recompute='selective' or 'full' (activations)" in message
    assert "a device with more memory (H200, B200, MI300X)" in message
    check_fits(estimate, "H200")
    recomputed = peak_memory(workloads.get("gpt2_xl", batch_size=16, recompute="full"))
    check_fits(recomputed, "A100")  # what the message suggested fits


def test_summary_fields_for_a_run():
    summary = peak_memory(workloads.get("gpt2_small"), optimizer="sgd").summary()
    assert summary["peak_memory_gb"] == pytest.approx(
        sum(v for k, v in summary.items() if k != "peak_memory_gb")
    )
    assert summary["memory_optimizer_gb"] == 0


def test_generic_workloads_measure_their_activations_on_meta():
    estimate = peak_memory(workloads.get("resnet50", batch_size=2, image_size=64), optimizer="sgd")
    assert estimate.n_parameters == 25_557_032
    assert estimate.parameters == 25_557_032 * 4 and estimate.master == 0
    assert estimate.activations > 0
