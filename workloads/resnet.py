"""ResNet-50 (He et al. 2016) as a workload, written out plainly (torchvision is not a
dependency), on seeded synthetic images.

The network is torchvision's ``resnet50`` (v1.5: the stride on the bottleneck's 3x3
convolution): a 7x7 stem, bottleneck stages of 3, 4, 6 and 3 blocks, 25,557,032 parameters
with 1,000 classes. Its forward pass is 4.1 G multiply-accumulates per 224x224 image (the
"4.1 GFLOPs" torchvision and most papers quote; He et al.'s table 1 says 3.8 for v1),
which ``FlopCounterMode`` counts as 8.2 GFLOPs, two per multiply-accumulate.

The data are images whose class is a seeded pattern plus noise, so the model can learn them
(at small ``image_size`` and ``n_classes``); a timing-only run reads only their shape.

Examples
--------
>>> w = resnet50()
>>> w.parameter_count(), tuple(w.x_train.shape[1:])
(25557032, (3, 224, 224))
>>> from torch.utils.flop_counter import FlopCounterMode
>>> with FlopCounterMode(display=False) as forward:
...     _ = w.meta_model()(w.meta_batch()[0][:1])
>>> round(forward.get_total_flops() / 2 / 1e9, 2)  # G multiply-accumulates, one image
4.09
"""

from __future__ import annotations

import functools
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from options.declare import OptionError, declared
from workloads.base import Workload
from workloads.fields import Alpha, BatchSize, Count, Partition
from workloads.transformer import DTYPES, Dtype

__all__ = ["ResNet", "resnet50"]


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand by 4; a projection shortcut where the
    shape changes."""

    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        out = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A bottleneck ResNet: ``blocks`` per stage (ResNet-50: 3, 4, 6, 3), images
    ``(batch, 3, H, W)`` to logits ``(batch, n_classes)``."""

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 6, 3), n_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        inputs = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2**stage
            for i in range(count):
                layers.append(_Bottleneck(inputs, width, 2 if i == 0 and stage > 0 else 1))
                inputs = 4 * width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(inputs, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _build(n_classes: int, dtype: str) -> nn.Module:
    return ResNet(n_classes=n_classes).to(DTYPES[dtype])


@declared
def resnet50(
    *,
    batch_size: BatchSize = 32,
    image_size: Annotated[int, Field(ge=32, description="pixels per side")] = 224,
    n_classes: Annotated[int, Field(ge=2)] = 1000,
    n_samples: Count = 64,
    noise: Annotated[float, Field(ge=0)] = 1.0,
    dtype: Dtype = "float32",
    partition: Partition = "iid",
    alpha: Alpha = 0.5,
    data_seed: Annotated[int, Field(ge=0)] = 0,
) -> Workload:
    """ResNet-50 on ``n_samples`` seeded images (1/8 held out): each class a random
    pattern (8x8 blocks of colour), each image its class's pattern plus ``noise`` times standard normal noise."""
    n_test = max(1, n_samples // 8)
    if n_samples - n_test < batch_size:
        raise OptionError(
            f"n_samples={n_samples} leaves {n_samples - n_test} training images, fewer than "
            f"batch_size={batch_size}; raise n_samples",
            "n_samples",
        )
    generator = torch.Generator().manual_seed(data_seed)
    # Patterns of 8x8 blocks, scaled up: a few kB per class, whatever the image size.
    patterns = torch.randn(n_classes, 3, 8, 8, generator=generator)
    labels = torch.randint(n_classes, (n_samples,), generator=generator)
    pictures = nn.functional.interpolate(patterns[labels], size=(image_size, image_size))
    images = pictures + noise * torch.randn(
        n_samples, 3, image_size, image_size, generator=generator
    )
    split = n_samples - n_test
    return Workload(
        "resnet50",
        functools.partial(_build, n_classes, dtype),
        (images[:split], labels[:split]),
        (images[split:], labels[split:]),
        nn.functional.cross_entropy,
        batch_size=batch_size,
        partition=partition,
        alpha=alpha,
    )
