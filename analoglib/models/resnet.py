"""CIFAR-family ResNets (ResNet-8/20/32/...) in plain PyTorch, without torchvision.

The network of He et al. 2016, section 4.2: a 3x3 stem convolution, three stages of ``n`` basic
blocks with 16, 32 and 64 channels (the first block of stages 2 and 3 halves the resolution
with stride 2), global average pooling and a linear classifier; depth ``6n + 2`` (ResNet-8:
n = 1, ResNet-20: n = 3, ResNet-32: n = 5). Shortcuts are option A: the identity, subsampled
with stride 2 and zero-padded in channels where a stage changes shape, so they carry no
weights. Every convolution is followed by a BatchNorm layer, which stays digital when the
model is converted with :func:`analoglib.convert_to_analog` (only the convolutions and the
classifier are mapped onto crossbars).

References:
    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
    section 4.2 (CIFAR-10 networks, option-A shortcuts); ``docs/model.md#recipe-resnet-lstm``
    (ResNet-32 / CIFAR-10, the CNN of Rasch et al. 2023).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["BasicBlock", "CifarResNet", "ShortcutA", "resnet8", "resnet20", "resnet32"]


class ShortcutA(nn.Module):
    """Option-A shortcut: stride subsampling and zero-padded channels, no weights.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output (>= ``in_channels``).
        stride: Spatial subsampling factor (1 or 2).

    Raises:
        ValueError: If ``out_channels < in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"out_channels = {out_channels} is not allowed: expected >= in_channels "
                f"= {in_channels} (option-A shortcuts only pad channels)."
            )
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        """Subsample and zero-pad ``x`` of shape ``(batch, in_channels, H, W)``."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (batch, in, H/s, W/s)
        if self.extra_channels:
            before = self.extra_channels // 2
            after = self.extra_channels - before
            x = F.pad(x, (0, 0, 0, 0, before, after))  # (batch, out, H/s, W/s)
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and ReLU, plus an option-A shortcut.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (2 at the start of stages 2 and 3).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            ShortcutA(in_channels, out_channels, stride)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Block output of shape ``(batch, out_channels, H/stride, W/stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))  # (batch, out, H/s, W/s)
        out = self.bn2(self.conv2(out))  # (batch, out, H/s, W/s)
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of the CIFAR family (depth ``6n + 2``) with option-A shortcuts.

    Layers: ``conv3x3(in_channels -> w)`` + BN + ReLU; stages of ``n`` basic blocks with
    ``w``, ``2w`` and ``4w`` channels (strides 1, 2, 2); global average pooling;
    ``Linear(4w, num_classes)``. With the standard width ``w = 16``: ResNet-20 has 0.27 M
    weights, ResNet-32 0.46 M. Any input size works (28x28 Fashion-MNIST gives 28 -> 14 -> 7,
    8x8 digits 8 -> 4 -> 2). Convolutions carry no bias (BatchNorm follows each); weights use
    Kaiming-normal initialisation.

    Args:
        depth: Number of weight layers, ``6n + 2`` with ``n >= 1`` (8, 14, 20, 32, 44, 56, ...).
        num_classes: Output classes.
        in_channels: Image channels (1 for grey-scale, 3 for RGB).
        width: Channels of the first stage (16 in He et al. 2016; smaller for quick tests).

    Raises:
        ValueError: If ``depth`` is not ``6n + 2`` or a size is not a positive integer.

    Inputs are ``(batch, in_channels, H, W)``; outputs are ``(batch, num_classes)`` logits.

    References:
        He et al. 2016, section 4.2; ``docs/model.md#recipe-resnet-lstm``.
    """

    def __init__(
        self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 16
    ) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth = {depth!r} is not allowed: expected 6n + 2 with n >= 1 "
                "(8, 14, 20, 26, 32, ...)."
            )
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("width", width),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= 1.")
        self.depth = depth
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a batch of images.

        Args:
            x: Images ``(batch, in_channels, H, W)``.

        Returns:
            Logits ``(batch, num_classes)``.
        """
        x = F.relu(self.bn1(self.conv1(x)))  # (batch, w, H, W)
        x = self.layers(x)  # (batch, 4w, H/4, W/4)
        x = x.mean(dim=(2, 3))  # (batch, 4w)
        return self.fc(x)  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return f"depth={self.depth}"


def resnet8(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-8 (one basic block per stage); see :class:`CifarResNet`."""
    return CifarResNet(8, num_classes, in_channels, width)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-20 (three basic blocks per stage); see :class:`CifarResNet`."""
    return CifarResNet(20, num_classes, in_channels, width)


def resnet32(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> CifarResNet:
    """ResNet-32 (five basic blocks per stage), the CNN of Rasch et al. 2023.

    See :class:`CifarResNet`; ``docs/model.md#recipe-resnet-lstm``.
    """
    return CifarResNet(32, num_classes, in_channels, width)
