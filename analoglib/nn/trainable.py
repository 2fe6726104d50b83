"""Analog layers trained on the crossbar itself (in-memory training).

:class:`AnalogTrainLinear` and :class:`AnalogTrainConv2d` keep their weights as device
conductances in a :class:`~analoglib.tiles.training.TrainingTile`. The forward pass reads the
tiles through the forward periphery; the backward pass reads the **live** conductances (not a
copy saved at forward time) through the backward periphery, and hands the layer's input x and
error d to the update:

* ``update_mode="step"`` (default): (x, d) wait in the layer until
  :class:`~analoglib.training.analog_sgd.AnalogSGD` calls :meth:`apply_update` at
  ``optimizer.step()``;
* ``update_mode="backward"``: the pulses are applied inside the backward pass, right after the
  input gradient was read (what an asynchronous pipeline needs); the learning rate comes from
  the optimiser group the layer was registered with, or from :attr:`lr`.

The bias stays digital and gets plain SGD. Under ``torch.distributed`` the layers can keep
one chip's semantics across data-parallel ranks (``sync_ranks=True``): before an update every
rank gathers the x and d of all ranks, so that identically seeded tiles apply identical pulses.

References:
    ``docs/training.md#trainable-layers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.tiles.training import TrainingConfig, TrainingTile

__all__ = [
    "UPDATE_MODES",
    "AnalogHandle",
    "AnalogTrainConv2d",
    "AnalogTrainLayer",
    "AnalogTrainLinear",
]

_Digital = TypeVar("_Digital", nn.Linear, nn.Conv2d)

#: Supported ``update_mode`` values.
UPDATE_MODES = ("step", "backward")


class AnalogHandle(nn.Parameter):
    """Empty parameter that stands for an analog layer in an optimiser's parameter list."""


class _TileRead(torch.autograd.Function):
    """Forward read of the tiles; backward read of the live tiles plus the update hand-off."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, handle: Tensor, layer: AnalogTrainLayer
    ) -> Tensor:
        ctx.layer = layer
        ctx.save_for_backward(x)
        tile = layer.tile
        return tile.forward_read(tile.to_tiles_input(x.detach()))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        layer: AnalogTrainLayer = ctx.layer
        grad_x = layer.tile.backward_read(grad) if ctx.needs_input_grad[0] else None
        layer._received(x.detach(), grad.detach())
        return grad_x, grad.new_zeros(0), None


class AnalogTrainLayer(nn.Module):
    """Shared machinery of the trainable analog layers (see the module docstring).

    Attributes:
        tile: The layer's trainable tiles.
        bias: Digital bias (or ``None``).
        analog_handle: Empty parameter that lets an optimiser find the layer.
        update_mode: ``"step"`` or ``"backward"``.
        lr: Learning rate of in-backward updates when no optimiser group is attached.
        sync_ranks: Gather x and d over ``torch.distributed`` ranks before updating.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        config: TrainingConfig,
        seed: int,
        update_mode: str,
    ) -> None:
        super().__init__()
        if not isinstance(config, TrainingConfig):
            raise ValueError(f"config = {config!r} is not allowed: expected a TrainingConfig.")
        if update_mode not in UPDATE_MODES:
            raise ValueError(
                f"update_mode = {update_mode!r} is not allowed: expected one of {UPDATE_MODES}."
            )
        self.tile = TrainingTile(in_features, out_features, config, seed)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.analog_handle = AnalogHandle(torch.zeros(0))
        self.update_mode = update_mode
        self.lr = 0.0
        self.sync_ranks = False
        self._group: Mapping[str, Any] | None = None
        self._pending: list[tuple[Tensor, Tensor]] = []

    @property
    def config(self) -> TrainingConfig:
        return self.tile.config

    def attach(self, group: Mapping[str, Any]) -> None:
        """Read the learning rate of in-backward updates from an optimiser's param group."""
        self._group = group

    def current_lr(self) -> float:
        """Learning rate of the next in-backward update."""
        return float(self._group["lr"]) if self._group is not None else float(self.lr)

    def _read(self, x: Tensor) -> Tensor:
        """``(N, in)`` -> ``(N, out)`` through the tiles, with the digital bias."""
        y = _TileRead.apply(x, self.analog_handle, self)
        if self.config.weight_scaling_omega > 0:
            y = y * self.tile.out_scale  # the tile's error d is out_scale times the layer's
        return y + self.bias if self.bias is not None else y

    def _received(self, x: Tensor, d: Tensor) -> None:
        """Backward hand-off of the layer input x ``(N, in)`` and error d ``(N, out)``."""
        if self.update_mode == "backward":
            self._update(x, d, self.current_lr())
        else:
            self._pending.append((x, d))

    @property
    def has_pending_update(self) -> bool:
        return bool(self._pending)

    def apply_update(self, lr: float) -> None:
        """Apply the queued (x, d) of every backward since the last update (one batch)."""
        if not self._pending:
            return
        x = torch.cat([p[0] for p in self._pending])
        d = torch.cat([p[1] for p in self._pending])
        self._pending.clear()
        self._update(x, d, lr)

    def _update(self, x: Tensor, d: Tensor, lr: float) -> None:
        if self.sync_ranks and dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            xs = [torch.empty_like(x) for _ in range(world)]
            ds = [torch.empty_like(d) for _ in range(world)]
            dist.all_gather(xs, x.contiguous())
            dist.all_gather(ds, d.contiguous())
            # every rank's d is the gradient of its own mean loss: the union's mean needs 1/W
            x, d = torch.cat(xs), torch.cat(ds) / world
        self.tile.update(x, d, lr)

    def get_weights(self) -> Tensor:
        """The ``(out, in)`` weights the layer computes with (a copy)."""
        return self.tile.get_weights().clone()

    def _digital_copy(self, module: _Digital) -> _Digital:
        """``module`` (a fresh digital layer of this shape) with the weights computed with now."""
        with torch.no_grad():
            module.weight.copy_(self.get_weights().reshape(module.weight.shape))
            if self.bias is not None and module.bias is not None:
                module.bias.copy_(self.bias)
        return module.to(self.tile.c.device)

    def set_weights(self, weight: Tensor, bias: Tensor | None = None) -> None:
        """Program the weights onto the devices (clipped to their bounds) and set the bias."""
        self.tile.set_weights(weight.detach().reshape(self.tile.mapping.out_features, -1))
        if bias is not None and self.bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias)


class AnalogTrainLinear(AnalogTrainLayer):
    """``nn.Linear`` trained in memory (see the module docstring).

    Args:
        in_features: Inputs.
        out_features: Outputs.
        bias: Digital bias.
        config: Devices, periphery, pulses and algorithm.
        seed: Seed of the tile's device draws and stochastic streams.
        update_mode: ``"step"`` or ``"backward"``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: TrainingConfig | None = None,
        seed: int = 0,
        update_mode: str = "step",
    ) -> None:
        super().__init__(
            in_features, out_features, bias, config or TrainingConfig(), seed, update_mode
        )
        self.in_features, self.out_features = in_features, out_features

    @classmethod
    def from_digital(
        cls, module: nn.Linear, config: TrainingConfig, seed: int = 0, update_mode: str = "step"
    ) -> AnalogTrainLinear:
        """A trainable copy of ``module`` with its weights programmed onto the devices."""
        layer = cls(
            module.in_features,
            module.out_features,
            module.bias is not None,
            config,
            seed,
            update_mode,
        )
        layer.set_weights(module.weight, module.bias)
        return layer.to(module.weight.device)

    def to_digital(self) -> nn.Linear:
        """``nn.Linear`` with the weights the layer computes with now."""
        linear = nn.Linear(self.in_features, self.out_features, self.bias is not None)
        return self._digital_copy(linear)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = self._read(x.reshape(-1, shape[-1]))
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"{self.tile.extra_repr()}, bias={self.bias is not None}, update={self.update_mode!r}"
        )


class AnalogTrainConv2d(AnalogTrainLayer):
    """``nn.Conv2d`` (groups 1) trained in memory: every unfolded patch is one mat-vec.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size, as ``nn.Conv2d``.
        stride: Stride.
        padding: Zero padding on each side.
        dilation: Dilation.
        bias: Digital bias.
        config: Devices, periphery, pulses and algorithm.
        seed: Seed of the tile's device draws and stochastic streams.
        update_mode: ``"step"`` or ``"backward"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        config: TrainingConfig | None = None,
        seed: int = 0,
        update_mode: str = "step",
    ) -> None:
        pair = nn.modules.utils._pair
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding, self.dilation = pair(padding), pair(dilation)
        in_features = in_channels * self.kernel_size[0] * self.kernel_size[1]
        super().__init__(
            in_features, out_channels, bias, config or TrainingConfig(), seed, update_mode
        )
        self.in_channels, self.out_channels = in_channels, out_channels

    @classmethod
    def from_digital(
        cls, module: nn.Conv2d, config: TrainingConfig, seed: int = 0, update_mode: str = "step"
    ) -> AnalogTrainConv2d:
        """A trainable copy of ``module`` (groups 1, zero padding) with its weights programmed."""
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError(
                f"Conv2d with groups = {module.groups}, padding = {module.padding!r}, "
                f"padding_mode = {module.padding_mode!r} is not allowed for in-memory training: "
                "expected groups 1 and integer zero padding."
            )
        pair = nn.modules.utils._pair
        layer = cls(
            module.in_channels, module.out_channels, pair(module.kernel_size),
            pair(module.stride), pair(module.padding), pair(module.dilation),
            module.bias is not None, config, seed, update_mode,
        )  # fmt: skip
        layer.set_weights(module.weight, module.bias)
        return layer.to(module.weight.device)

    def to_digital(self) -> nn.Conv2d:
        """``nn.Conv2d`` with the weights the layer computes with now."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
            self.dilation, bias=self.bias is not None,
        )  # fmt: skip
        return self._digital_copy(conv)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        patches = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        # (batch, C kh kw, L) -> (batch L, C kh kw)
        flat = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        y = self._read(flat)  # (batch L, out)
        h_out, w_out = (
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip(
                (height, width),
                self.padding,
                self.dilation,
                self.kernel_size,
                self.stride,
                strict=True,
            )
        )
        return y.reshape(batch, h_out, w_out, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, {self.tile.extra_repr()}"
        )
