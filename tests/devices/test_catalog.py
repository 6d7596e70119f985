"""The device table: every number with its source, the old peaks unchanged, one-line errors."""

import pytest

import sim
import sim.compute
from devices import DEVICE_PEAK_FLOPS, DEVICES, UnknownDevice, device
from sim.compute import ComputeModel


def test_peaks_sim_compute_had_are_unchanged_and_importable_where_they_were():
    # The numbers sim/compute.py carried before the table moved (issue 25).
    before = {
        "V100": 125e12,
        "A100": 312e12,
        "L4": 121e12,
        "H100": 989e12,
        "H200": 989e12,
        "MI300X": 1307e12,
    }
    for name, peak in before.items():
        assert DEVICE_PEAK_FLOPS[name] == peak
    assert sim.compute.DEVICE_PEAK_FLOPS is DEVICE_PEAK_FLOPS is sim.DEVICE_PEAK_FLOPS


@pytest.mark.parametrize(
    ("name", "tflops", "tb_per_s", "gb"),
    [
        # dense bf16 TFLOP/s, HBM TB/s, GB: the vendors' datasheets (docs/scale.md)
        ("A100", 312, 2.039, 80),
        ("H100", 989, 3.35, 80),
        ("H200", 989, 4.8, 141),
        ("B200", 2250, 8.0, 180),
        ("MI300X", 1307, 5.3, 192),
    ],
)
def test_issue_25_devices(name, tflops, tb_per_s, gb):
    d = device(name)
    assert d.peak_flops == pytest.approx(tflops * 1e12)
    assert d.memory_bandwidth == pytest.approx(tb_per_s * 1e12)
    assert d.memory == pytest.approx(gb * 1e9) and d.memory_gb == pytest.approx(gb)


def test_every_device_names_its_source():
    for d in DEVICES.values():
        assert d.source.startswith("https://") and d.variant


def test_names_are_case_insensitive():
    assert device("mi300x") is DEVICES["MI300X"] and device(DEVICES["B200"]) is DEVICES["B200"]


@pytest.mark.parametrize(
    ("name", "closest"), [("H1000", "H100"), ("b200x", "B200"), ("A10", "A100")]
)
def test_an_unknown_device_is_one_line_naming_the_closest(name, closest):
    with pytest.raises(UnknownDevice) as err:
        device(name)
    message = str(err.value)
    assert "\n" not in message and f"did you mean {closest!r}" in message
    assert err.value.field == "device"


def test_compute_model_flops_takes_every_device_and_says_the_closest_name():
    model = ComputeModel(base="flops", device="B200", efficiency=0.5)

    class Work:
        def flops_per_step(self):
            return 2.25e15

    model.resolve(Work(), seed=0)
    assert model.seconds == pytest.approx(2.0)  # 2.25 PFLOP at half of 2.25 PFLOP/s
    with pytest.raises(ValueError) as err:
        ComputeModel.parse({"base": "flops", "device": "H10"})
    assert str(err.value).startswith("compute.device: device='H10' is unknown; did you mean")
    assert "\n" not in str(err.value)
