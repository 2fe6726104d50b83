"""Analog 1-D and 2-D convolutions.

Each convolution is computed as the matrix product of its unfolded input patches with the
``(out, in_channels / groups * kernel)`` weight matrix of every group, which is exactly what a
crossbar does per patch: the nonlinear parts of the tile model (converters, IR drop, noise) act
per patch and output.

References:
    ``docs/model.md#standard-model``, ``docs/aihwkit.md#torch-tile`` (convolutions by unfolding).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.base import AnalogLayerBase

__all__ = ["AnalogConv1d", "AnalogConv2d"]


class _AnalogConvNd(AnalogLayerBase):
    """Shared implementation; the spatial dimension count is ``_spatial`` (1 or 2)."""

    _spatial = 2
    _digital_type: type[nn.Conv1d] | type[nn.Conv2d] = nn.Conv2d
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[int, ...]
    padding_mode: str
    groups: int

    @classmethod
    def from_digital(cls, module: nn.Module, config: PCMConfig) -> _AnalogConvNd:
        """Analog copy of a ``nn.Conv1d`` / ``nn.Conv2d`` (the module itself is not changed)."""
        assert isinstance(module, (nn.Conv1d, nn.Conv2d))
        layer = cls.__new__(cls)
        AnalogLayerBase.__init__(layer)
        layer.in_channels = module.in_channels
        layer.out_channels = module.out_channels
        layer.kernel_size = tuple(module.kernel_size)
        layer.stride = tuple(module.stride)
        layer.dilation = tuple(module.dilation)
        layer.padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        layer.padding_mode = module.padding_mode
        layer.groups = module.groups
        layer._init_analog(module.weight, module.bias, config, groups=module.groups)
        layer.train(module.training)
        return layer

    def to_digital(self) -> nn.Module:
        """Equivalent digital convolution with the reference (unprogrammed) weights."""
        options: dict[str, Any] = {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias is not None,
            "padding_mode": self.padding_mode,
            "device": self.weight.device,
            "dtype": self.weight.dtype,
        }
        module = self._digital_type(self.in_channels, self.out_channels, **options)
        with torch.no_grad():
            module.weight.copy_(self.digital_weight())
            if self.bias is not None and module.bias is not None:
                module.bias.copy_(self.bias)
        module.train(self.training)
        return module

    def _explicit_padding(self) -> list[int]:
        """``F.pad`` amounts (last dimension first) for the configured padding."""
        pads: list[int] = []
        for dim in reversed(range(self._spatial)):
            if self.padding == "valid":
                left = right = 0
            elif self.padding == "same":
                total = self.dilation[dim] * (self.kernel_size[dim] - 1)
                left, right = total // 2, total - total // 2
            else:
                left = right = int(self.padding[dim])
            pads += [left, right]
        return pads

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == self._spatial + 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != self._spatial + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected input (batch, {self.in_channels}, "
                f"{'L' if self._spatial == 1 else 'H, W'}), got {tuple(x.shape)}."
            )
        pads = self._explicit_padding()
        if any(pads):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pads, mode=mode)
        if self._spatial == 1:  # treat (batch, C, L) as (batch, C, 1, L)
            x = x.unsqueeze(2)
            kernel, dilation, stride = (
                (1, *self.kernel_size),
                (1, *self.dilation),
                (1, *self.stride),
            )
        else:
            kernel, dilation, stride = self.kernel_size, self.dilation, self.stride
        batch = x.shape[0]
        out_h = (x.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        out_w = (x.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        patches = F.unfold(x, kernel, dilation=dilation, stride=stride)  # (batch, C*k, L)
        n_patches = patches.shape[2]
        patches = patches.transpose(1, 2).reshape(batch * n_patches, self.groups, -1)
        y = self.analog_forward(patches)  # (batch * L, out)
        if self.bias is not None:
            y = y + self.bias
        y = y.reshape(batch, n_patches, self.out_channels).transpose(1, 2)
        shape = (
            (batch, self.out_channels, out_w)
            if self._spatial == 1
            else (batch, self.out_channels, out_h, out_w)
        )
        y = y.reshape(shape)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, {super().extra_repr()}"
        )


class AnalogConv1d(_AnalogConvNd):
    """``nn.Conv1d`` on simulated PCM crossbars; build with :meth:`from_digital`.

    Shape:
        Input ``(batch, C_in, L)`` or ``(C_in, L)``, output as ``nn.Conv1d``.
    """

    _spatial = 1
    _digital_type = nn.Conv1d

    def __init__(self, *args: object, config: PCMConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        from analoglib.presets import standard_hwa_2023

        digital = nn.Conv1d(*args, **kwargs)  # type: ignore[arg-type]
        built = AnalogConv1d.from_digital(digital, config or standard_hwa_2023())
        self.__dict__.update(built.__dict__)


class AnalogConv2d(_AnalogConvNd):
    """``nn.Conv2d`` on simulated PCM crossbars; build with :meth:`from_digital`.

    Shape:
        Input ``(batch, C_in, H, W)`` or ``(C_in, H, W)``, output as ``nn.Conv2d``.
    """

    _spatial = 2
    _digital_type = nn.Conv2d

    def __init__(self, *args: object, config: PCMConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        from analoglib.presets import standard_hwa_2023

        digital = nn.Conv2d(*args, **kwargs)  # type: ignore[arg-type]
        built = AnalogConv2d.from_digital(digital, config or standard_hwa_2023())
        self.__dict__.update(built.__dict__)
