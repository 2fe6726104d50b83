"""Analog fully connected layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.base import AnalogLayerBase
from analoglib.presets import standard_hwa_2023

__all__ = ["AnalogLinear"]


class AnalogLinear(AnalogLayerBase):
    """``nn.Linear`` computed on simulated PCM crossbar tiles (bias digital).

    Args:
        in_features: Input size.
        out_features: Output size.
        bias: Keep a digital bias.
        config: Crossbar configuration; defaults to :func:`~analoglib.presets.standard_hwa_2023`.
        device: Device of the parameters.
        dtype: Floating-point type of the parameters.

    Shape:
        Input ``(*, in_features)``, output ``(*, out_features)``.

    References:
        Rasch et al. 2023; ``docs/model.md#standard-model``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: PCMConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        digital = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.in_features = in_features
        self.out_features = out_features
        self._init_analog(digital.weight, digital.bias, config or standard_hwa_2023())

    @classmethod
    def from_digital(cls, module: nn.Linear, config: PCMConfig) -> AnalogLinear:
        """Analog copy of an ``nn.Linear`` (the module itself is not changed)."""
        layer = cls.__new__(cls)
        AnalogLayerBase.__init__(layer)
        layer.in_features = module.in_features
        layer.out_features = module.out_features
        layer._init_analog(module.weight, module.bias, config)
        layer.train(module.training)
        return layer

    def to_digital(self) -> nn.Linear:
        """Equivalent ``nn.Linear`` with the reference (unprogrammed) weights."""
        module = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            module.weight.copy_(self.digital_weight())
            if self.bias is not None:
                module.bias.copy_(self.bias)
        module.train(self.training)
        return module

    def forward(self, x: Tensor) -> Tensor:
        leading = x.shape[:-1]
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"AnalogLinear: input has {x.shape[-1]} features, expected {self.in_features}."
            )
        y = self.analog_forward(x.reshape(-1, 1, self.in_features))  # (batch, out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {super().extra_repr()}"
        )
