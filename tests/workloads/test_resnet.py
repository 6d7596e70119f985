"""ResNet-50, written out: torchvision's parameter count and FLOPs, and it trains."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import workloads
from workloads.resnet import resnet50


def test_parameters_and_forward_flops_are_the_published_ones():
    w = resnet50(n_samples=16, batch_size=2)
    # torchvision's ResNet50_Weights.IMAGENET1K_V1: 25,557,032 parameters, 4.09 GFLOPS
    # (multiply-accumulates) per 224x224 image.
    assert w.parameter_count() == 25_557_032
    with FlopCounterMode(display=False) as forward:
        w.meta_model()(w.meta_batch()[0][:1])
    assert forward.get_total_flops() / 2 == pytest.approx(4.1e9, rel=0.02)
    # Forward and backward: 3x forward, less the first convolution's input gradient.
    assert w.flops_per_step() == pytest.approx(2 * 3 * forward.get_total_flops(), rel=0.02)


def test_trains_at_a_small_size():
    """Training loss falls in a few Adam steps (held-out loss needs BatchNorm's running
    statistics to settle first, which takes longer than a test should)."""
    w = resnet50(image_size=32, n_classes=2, n_samples=40, batch_size=8, noise=0.5)
    model = w.make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = w.batches(0, 1, seed=0)
    losses = []
    for _ in range(6):
        x, y = next(stream)
        opt.zero_grad()
        loss = w.loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-2:]) / 2 < 0.5 * losses[0]


def test_data_are_seeded_and_sized():
    a = workloads.get("resnet50", image_size=32, n_samples=16, batch_size=4)
    b = workloads.get("resnet50", image_size=32, n_samples=16, batch_size=4)
    assert torch.equal(a.x_train, b.x_train) and tuple(a.x_train.shape) == (14, 3, 32, 32)
    with pytest.raises(ValueError, match="n_samples=8 leaves 7 training images"):
        resnet50(n_samples=8, batch_size=8)
