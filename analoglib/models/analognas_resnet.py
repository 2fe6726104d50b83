"""The ResNet-like macro network of AnalogNAS, built from a 22-number configuration.

A 7x7 stem convolution (padding 1) with BatchNorm, then ``M`` groups; group i has ``R_i``
residual blocks, each summing ``B_i`` parallel branches (ReLU, 3x3 convolution, BatchNorm,
ReLU, 3x3 convolution, BatchNorm) and a shortcut; then ReLU, global average pooling and one
linear classifier. Group i has ``floor(c_{i-1} / widenfact_i)`` channels; the first block of
each of the last two groups (never the first group) has stride 2. Where a block changes the
shape, the shortcut is two 1x1 convolutions of half the channels each (the second on the input
shifted by one pixel), concatenated and normalised; otherwise it is the identity.

Deviations from the released AnalogNAS code, all deliberate:

* global average pooling instead of ``AvgPool2d(8)``, so any input size works (28x28
  Fashion-MNIST, 8x8 digits);
* convolutions without bias (BatchNorm follows each);
* ``convblock_i`` is not used (one block type), as in the released code, which samples it but
  always builds 3x3 convolutions;
* a group has at least one block (the code allows empty groups 2-5, which change nothing).

References:
    Benmeziane et al. 2023 (AnalogNAS); ``docs/nas.md#resnet-like-space``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["AnalogNASResNet", "group_channels", "group_strides"]


def group_channels(config: Mapping[str, Any]) -> list[int]:
    """Output channels of the stem and of every active group: ``[c0, c1, ..., cM]``."""
    channels = [int(config["out_channel0"])]
    for i in range(int(config["M"])):
        # the small epsilon keeps e.g. 12 / 0.6 = 19.999... at 20
        channels.append(int(math.floor(channels[-1] / float(config[f"widenfact{i + 1}"]) + 1e-9)))
    return channels


def group_strides(m: int) -> list[int]:
    """Stride of the first block of each of ``m`` groups: 2 in the last two, never the first."""
    return [2 if g >= 1 and g >= m - 2 else 1 for g in range(m)]


class _Shortcut(nn.Module):
    """Two 1x1 convolutions (the second on the input shifted by one pixel), concatenated."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.stride = stride
        self.conv_a = nn.Conv2d(in_channels, out_channels - half, 1, stride, bias=False)
        self.conv_b = nn.Conv2d(in_channels, half, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv_a(x)  # (batch, out - half, H', W')
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # (batch, in, H, W)
        b = self.conv_b(shifted)  # (batch, half, H', W')
        return self.bn(torch.cat([a, b], dim=1))  # type: ignore[no-any-return]


class _Branch(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class _Block(nn.Module):
    """``shortcut(x) + sum of the branches(x)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, branches: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            _Branch(in_channels, out_channels, stride) for _ in range(branches)
        )
        changes = in_channels != out_channels or stride != 1
        self.shortcut = _Shortcut(in_channels, out_channels, stride) if changes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.shortcut(x)
        for branch in self.branches:
            out = out + branch(x)
        return out  # type: ignore[no-any-return]


class AnalogNASResNet(nn.Module):
    """The AnalogNAS ResNet-like network of one configuration (see the module docstring).

    Args:
        config: The 22 features of :data:`analoglib.nas.FEATURES` (a dict; groups above ``M``
            are ignored).
        in_channels: Image channels.
        num_classes: Output classes.

    Inputs are ``(batch, in_channels, H, W)`` with H, W >= 5; outputs ``(batch, num_classes)``.
    """

    def __init__(self, config: Mapping[str, Any], in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        m = int(config["M"])
        if m < 1:
            raise ValueError(f"config['M'] = {m!r} is not allowed: expected at least 1 group.")
        self.config = dict(config)
        channels = group_channels(config)
        if min(channels) < 2:
            raise ValueError(
                f"config gives channels {channels}: every group needs at least 2 channels."
            )
        self.stem = nn.Conv2d(in_channels, channels[0], 7, 1, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels[0])
        blocks: list[nn.Module] = []
        for i, stride in enumerate(group_strides(m)):
            for block in range(int(config[f"R{i + 1}"])):
                blocks.append(
                    _Block(
                        channels[i] if block == 0 else channels[i + 1],
                        channels[i + 1],
                        stride if block == 0 else 1,
                        int(config[f"B{i + 1}"]),
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem_bn(self.stem(x))  # (batch, c0, H - 4, W - 4)
        x = F.relu(self.blocks(x))  # (batch, cM, H', W')
        return self.fc(x.mean(dim=(2, 3)))  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        channels = group_channels(self.config)
        depth = [int(self.config[f"R{i + 1}"]) for i in range(int(self.config["M"]))]
        return f"channels={channels}, blocks per group={depth}"
