"""Analog fully connected layers: ``nn.Linear`` and transformers' ``Conv1D``."""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.base import AnalogLayerBase
from analoglib.presets import standard_hwa_2023

__all__ = ["AnalogHFConv1D", "AnalogLinear", "hf_conv1d_type"]


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


def hf_conv1d_type() -> type[nn.Module] | None:
    """The class ``transformers.pytorch_utils.Conv1D`` if transformers is imported, else None.

    A model holding a ``Conv1D`` has imported ``transformers.pytorch_utils``, so the class is
    looked up there and never imported here (transformers is an optional dependency).

    Returns:
        ``transformers.pytorch_utils.Conv1D`` or ``None``.
    """
    module = sys.modules.get("transformers.pytorch_utils")
    found = getattr(module, "Conv1D", None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, nn.Module) else None


class AnalogHFConv1D(AnalogLinear):
    """transformers' ``Conv1D`` (GPT-2 family) on simulated PCM crossbars (bias digital).

    ``Conv1D(nf, nx)`` is a linear layer with its weight stored transposed: ``(nx, nf)`` =
    ``(in, out)``, ``y = x @ W + b``. The analog layer maps ``W.T`` (``out x in``), exactly as
    :class:`AnalogLinear` maps an ``nn.Linear``; :meth:`to_digital` gives back a ``Conv1D``.
    Build it with :meth:`from_digital`.

    Shape:
        Input ``(*, nx)``, output ``(*, nf)``.
    """

    @classmethod
    def from_digital(cls, module: nn.Module, config: PCMConfig) -> AnalogHFConv1D:
        """Analog copy of a transformers ``Conv1D`` (the module itself is not changed).

        Args:
            module: A ``transformers.pytorch_utils.Conv1D``.
            config: Crossbar configuration (copied).

        Returns:
            The analog layer, in the training mode of ``module``.

        Raises:
            ValueError: If ``module`` is not a ``Conv1D`` (weight ``(in, out)``, bias or none).
        """
        conv1d = hf_conv1d_type()
        weight = getattr(module, "weight", None)
        if conv1d is None or not isinstance(module, conv1d) or not isinstance(weight, Tensor):
            raise ValueError(
                f"module = {type(module).__name__} is not allowed: expected a transformers "
                "pytorch_utils.Conv1D."
            )
        bias = getattr(module, "bias", None)
        layer = cls.__new__(cls)
        AnalogLayerBase.__init__(layer)
        layer.in_features, layer.out_features = weight.shape  # (nx, nf) = (in, out)
        layer._init_analog(weight.t(), bias if isinstance(bias, Tensor) else None, config)
        layer.train(module.training)
        return layer

    def to_digital(self) -> nn.Module:  # type: ignore[override]
        """Equivalent ``Conv1D`` with the reference (unprogrammed) weights.

        Returns:
            A ``transformers.pytorch_utils.Conv1D`` in this layer's training mode.

        Raises:
            ModuleNotFoundError: If transformers is not installed.
        """
        from transformers.pytorch_utils import Conv1D

        module = Conv1D(self.out_features, self.in_features).to(
            device=self.weight.device, dtype=self.weight.dtype
        )
        with torch.no_grad():
            module.weight.copy_(self.digital_weight().t())  # (in, out)
            if self.bias is not None:
                module.bias.copy_(self.bias)
            else:  # a Conv1D always has a bias
                module.bias.zero_()
        module.train(self.training)
        return module
