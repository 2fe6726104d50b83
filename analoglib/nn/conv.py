"""Analog 1-D and 2-D convolutions.

A crossbar computes a convolution patch by patch: the ``(out, in_channels / groups * kernel)``
weight matrix of every group multiplies each unfolded input patch, and the nonlinear parts of
the tile model (converters, IR drop, noise) act per patch and output. Two paths compute this:

- the **convolution path** (the default) runs every product of the tile model as a grouped
  convolution whose kernels are the stacked tiles (:func:`~analoglib.tiles.tile.analog_conv`),
  one convolution group per stacked tile; a tile whose rows start or end inside a channel's
  kernel block sees the whole channels it touches, with zero kernel entries for the rows it does
  not hold, and each tile keeps its own input range;
- the **unfolded path** multiplies explicit patches with the tiles
  (:func:`~analoglib.tiles.tile.analog_mvm`); it serves the input-clipping check of the first
  evaluation batches, the exact forward of the post-training optimisers, the
  ``additive_constant`` weight noise, and training (gradients, input ranges set from data) of
  layers whose tiles begin or end inside a channel's kernel block.

Training on the convolution path keeps aihwkit's input-range gradient, which sums the clipped
inputs' gradients per patch entry (not per pixel), and the range initialisation's standard
deviation over patch entries: both are computed one kernel position at a time from strided
views of the padded input.

Both are the same model: equal without noise up to float rounding, equal in distribution with
it (the noise is drawn in another order).

References:
    ``docs/model.md#standard-model``, ``docs/aihwkit.md#torch-tile`` (convolutions by unfolding).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.nn.base import AnalogLayerBase
from analoglib.tiles.mapper import TileMapping
from analoglib.tiles.tile import TileKernels, analog_conv, gradient_mask, tile_kernels

__all__ = ["AnalogConv1d", "AnalogConv2d", "conv_tile_layout"]


def conv_tile_layout(mapping: TileMapping, kernel_numel: int) -> tuple[int, Tensor, Tensor]:
    """How the stacked tiles of a convolution read input channels and hold kernel entries.

    Input row ``c * kernel_numel + k`` of a group is kernel entry k of channel c. Input tile i
    holds rows ``[start_i, start_i + n_i)``, so it reads the channels ``[c0_i, c1_i)`` that
    touch them; every tile reads ``channels`` slots (the most any tile touches), padded with an
    all-zero channel.

    Args:
        mapping: The layer's tile mapping (``in_features`` a multiple of ``kernel_numel``).
        kernel_numel: Entries per channel kernel (``kh * kw``).

    Returns:
        ``channels``; the ``(groups * tiles_in * channels,)`` input-channel index into the
        layer's channels followed by one zero channel (index ``groups * in_channels``); the
        ``(tiles_in, channels * kernel_numel)`` index of every kernel entry into the tile's rows
        followed by one zero row (index ``rows``).
    """
    k = kernel_numel
    group_channels = mapping.in_features // k
    starts = [sum(mapping.in_sizes[:i]) for i in range(mapping.tiles_in)]
    first = [start // k for start in starts]
    last = [math.ceil((start + n) / k) for start, n in zip(starts, mapping.in_sizes, strict=True)]
    channels = max(c1 - c0 for c0, c1 in zip(first, last, strict=True))
    zero_channel = mapping.groups * group_channels
    slot = torch.arange(channels)
    channel_index = torch.stack(
        [
            torch.where(
                c0 + slot < c1, g * group_channels + c0 + slot, torch.full_like(slot, zero_channel)
            )
            for g in range(mapping.groups)
            for c0, c1 in zip(first, last, strict=True)
        ]
    ).reshape(-1)
    position = torch.arange(channels * k)
    row_index = torch.stack(
        [
            torch.where(
                (position >= start - c0 * k) & (position < start - c0 * k + n),
                position - (start - c0 * k),
                torch.full_like(position, mapping.rows),
            )
            for start, n, c0 in zip(starts, mapping.in_sizes, first, strict=True)
        ]
    )
    return channels, channel_index, row_index


def _patch_entries(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Iterator[tuple[int, int, Tensor]]:
    """Entry ``(i, j)`` of every patch: ``(i, j, view (..., H_out, W_out))`` of padded ``x``."""
    height, width = x.shape[-2:]
    out_h = (height - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            top, left = i * dilation[0], j * dilation[1]
            yield (
                i,
                j,
                x[
                    ...,
                    top : top + (out_h - 1) * stride[0] + 1 : stride[0],
                    left : left + (out_w - 1) * stride[1] + 1 : stride[1],
                ],
            )


def _patch_counts(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """How many patch entries every pixel of ``x`` (``(..., H, W)``, padded) is: ``(H, W)``."""
    counts = x.new_zeros(x.shape[-2:], dtype=torch.float64)
    for _, _, entry in _patch_entries(counts, kernel, stride, dilation):
        entry += 1.0  # a strided view into counts
    return counts


def _patch_entry_std(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """Standard deviation per tile of all patch entries of ``x`` (as of the unfolded patches).

    Each pixel counts as often as it is a patch entry.

    Args:
        x: ``(batch, tiles, channels, H, W)`` padded inputs.
        kernel: Kernel size ``(kh, kw)``.
        stride: Convolution stride.
        dilation: Convolution dilation.

    Returns:
        ``(tiles,)`` sample standard deviations (denominator N - 1, as ``torch.std``).
    """
    counts = _patch_counts(x, kernel, stride, dilation)  # (H, W)
    values = x.double()
    weighted = values * counts
    total = weighted.sum(dim=(0, 2, 3, 4))
    squares = (weighted * values).sum(dim=(0, 2, 3, 4))
    n = float(counts.sum()) * x.shape[0] * x.shape[2]
    variance = (squares - total * total / n) / max(n - 1.0, 1.0)
    return variance.clamp(min=0.0).sqrt().to(x.dtype)


class _PatchRangeGradient(torch.autograd.Function):
    """Identity on the tile outputs that adds aihwkit's input-range gradient per patch entry.

    The range gradient sums, per tile, the negative gradients of the inputs clipped at +r and
    the positive ones of those clipped at -r, entry by entry of every unfolded patch (and the
    decay term counts the entries inside the range). A convolution's input gradient has summed
    each pixel's entries already, so this computes the entries' gradients from the output
    gradient, one kernel position at a time, where any input clips
    (``docs/model.md#input-ranges``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        z: Tensor,
        input_range: Tensor,
        x: Tensor,
        weight: Tensor,
        mask: Tensor | None,
        geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
        options: tuple[float, float, bool, float],
    ) -> Tensor:
        # x: (batch, tiles, channels, H, W) padded raw inputs; weight: (tiles, out, channels,
        # kh, kw) the tiles' weights as used in the forward.
        decay = options[0]
        r = input_range.view(1, -1, 1, 1, 1)
        # +1 where an input clips at +r, -1 at -r, else 0: min(g * side, 0) is then the
        # upper-minus-lower term of every entry.
        side = (x >= r).to(x.dtype) - (x <= -r).to(x.dtype)
        ctx.save_for_backward(side, weight, input_range, mask)
        ctx.geometry, ctx.options = geometry, options
        ctx.fraction_inside = None
        if decay > 0:
            counts = _patch_counts(x, *geometry).to(x.dtype)  # (H, W)
            inside = ((x.abs() < r) * counts).sum(dim=(0, 2, 3, 4))
            ctx.fraction_inside = inside / (float(counts.sum()) * x.shape[0] * x.shape[2])
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        side, weight, input_range, mask = ctx.saved_tensors
        decay, min_fraction, relative, scale = ctx.options
        tiles, batch = side.shape[1], side.shape[0]
        clipped = input_range.new_zeros(input_range.shape)
        if bool(side.any()):
            g = grad if mask is None else grad * mask  # (batch, tiles, out, H_out, W_out)
            out_h, out_w = g.shape[-2:]
            # (tiles, batch * H_out * W_out, out): one matrix product per kernel position.
            g = g.permute(1, 0, 3, 4, 2).reshape(tiles, -1, g.shape[2])
            depthwise = weight.shape[1] == 1 and weight.shape[2] == 1  # 1 x 1 matrices
            for i, j, entry in _patch_entries(side.transpose(0, 1), *ctx.geometry):
                # Gradient of entry (i, j) of every channel: (tiles, batch, channels, Ho, Wo).
                w = weight[..., i, j]  # (tiles, out, channels)
                entry_grad = g * w if depthwise else torch.bmm(g, w)
                entry_grad = entry_grad.view(tiles, batch, out_h, out_w, -1)
                term = entry_grad.permute(0, 1, 4, 2, 3) * entry
                clipped = clipped + term.clamp_(max=0.0).sum(dim=(1, 2, 3, 4))
        grad_r = clipped / input_range * (input_range * scale if relative else scale)
        if ctx.fraction_inside is not None:
            grad_r = grad_r + decay * input_range * (ctx.fraction_inside > min_fraction)
        return grad, grad_r, None, None, None, None, None


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
    _conv_channels: int  # input channels every stacked tile reads (conv_tile_layout)
    _conv_channel_index: Tensor | None
    _conv_row_index: Tensor | None

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
        layer._init_conv_layout()
        layer.train(module.training)
        return layer

    def _init_conv_layout(self) -> None:
        """Index buffers of the convolution path (:func:`conv_tile_layout`).

        Identity indices are left out: the input is then a view and the tiles are the kernels
        as they lie.
        """
        m = self.mapping
        device = self.weight.device
        channels, channel_index, row_index = conv_tile_layout(m, math.prod(self.kernel_size))
        self._conv_channels = channels
        identity_channels = torch.equal(channel_index, torch.arange(channel_index.numel()))
        identity_rows = channels * math.prod(self.kernel_size) == m.rows and torch.equal(
            row_index, torch.arange(m.rows).expand_as(row_index)
        )
        self.register_buffer(
            "_conv_channel_index",
            None if identity_channels else channel_index.to(device),
            persistent=False,
        )
        self.register_buffer(
            "_conv_row_index",
            None if identity_rows else row_index.repeat(m.groups, 1).to(device),
            persistent=False,
        )  # (tiles, channels * kernel) when present
        self._kernel_cache: tuple[Tensor, int, Any, TileKernels] | None = None

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
        y = self._unfolded_forward(x) if self._needs_unfolding(x) else self._conv_forward(x)
        return y.squeeze(0) if unbatched else y

    def _records_gradient(self, x: Tensor) -> bool:
        """True when autograd records this forward (for ``x`` or any parameter)."""
        return torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )

    def _geometry_2d(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``(kernel, stride, dilation)`` as 2-D pairs (1-D convolutions as 1 x L)."""
        if self._spatial == 1:
            return (1, self.kernel_size[0]), (1, self.stride[0]), (1, self.dilation[0])
        k, s, d = self.kernel_size, self.stride, self.dilation
        return (k[0], k[1]), (s[0], s[1]), (d[0], d[1])

    def _needs_unfolding(self, x: Tensor) -> bool:
        """True for the forwards the convolution path does not serve (see the module doc)."""
        forward = self.config.forward
        recorded = self._records_gradient(x)
        # Range gradients and range statistics need each tile's rows to be whole channel
        # kernels: the patch entries of a tile are then exactly its rows.
        whole_channels = self._conv_row_index is None and not self.mapping.is_padded
        return (
            ((recorded or self._initialising_ranges()) and not whole_channels)
            or self._ideal
            or (forward.w_noise > 0 and forward.w_noise_type != "pcm_read")
            or self._checking_clipping()
        )

    def _kernels(self, tiles: Tensor) -> TileKernels:
        """The ``(tiles, out, rows)`` tiles as kernels ``(tiles * out, channels, kh, kw)``.

        Cached while the tiles are the programmed weights at one inference time.
        """
        forward = self.config.forward
        cache = self._kernel_cache
        if cache is not None and cache[0] is tiles and cache[1] == tiles._version:
            if cache[2] == forward:
                return cache[3]
        kernel, _, _ = self._geometry_2d()

        def as_kernel(values: Tensor) -> Tensor:
            if self._conv_row_index is not None:
                index = self._conv_row_index.unsqueeze(1).expand(-1, values.shape[1], -1)
                values = F.pad(values, (0, 1)).gather(2, index)  # (tiles, out, channels * k)
            return values.reshape(-1, self._conv_channels, *kernel)

        ir_weighted = None
        if forward.ir_drop > 0 and not forward.is_perfect:
            with torch.no_grad():  # a noise amplitude: no gradient
                ir_weighted = as_kernel(tiles * self._ir_weighting)
        kernels = tile_kernels(as_kernel(tiles), ir_weighted, forward)
        programmed = tiles is self._weight_t
        self._kernel_cache = (
            (tiles, tiles._version, copy.copy(forward), kernels) if programmed else None
        )
        return kernels

    def _conv_forward(self, x: Tensor) -> Tensor:
        """The convolution path: ``(batch, C, *spatial)`` -> ``(batch, out, *spatial_out)``."""
        self._check_input(x)
        m = self.mapping
        ranges = self.config.pre_post.input_range
        forward = self.config.forward
        recorded = self._records_gradient(x)
        pads = self._explicit_padding()
        padding = (0, 0)
        symmetric = all(pads[i] == pads[i + 1] for i in range(0, len(pads), 2))
        # Zero inputs stay zero through the DAC, so the convolution may pad, except where the
        # range gradient or the range statistics read the padded patches.
        entry_statistics = recorded or self._initialising_ranges()
        if self.padding_mode == "zeros" and symmetric and not entry_statistics:
            padding = (0, pads[0]) if self._spatial == 1 else (pads[2], pads[0])
        elif any(pads):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pads, mode=mode)
        if self._spatial == 1:  # treat (batch, C, L) as (batch, C, 1, L)
            x = x.unsqueeze(2)
        geometry = self._geometry_2d()
        _, stride, dilation = geometry
        # Channels-last is the layout oneDNN and cuDNN convolve fastest; the outputs keep it.
        x = x.contiguous(memory_format=torch.channels_last)
        generator = self._forward_generator(x.device)
        kernels = self._kernels(self._current_tiles(generator))
        scale = self._periphery_scale()[None, :, :, None, None]  # (1, tiles, out, 1, 1)

        batch, _, height, width = x.shape
        if self._conv_channel_index is not None:  # (batch, tiles * channels, H, W)
            x = F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, self._conv_channel_index)
        x = x.reshape(batch, m.n_stacked, self._conv_channels, height, width)
        if self._initialising_ranges():
            self._update_ranges_from_data(_patch_entry_std(x.detach(), *geometry))
        range_tap = recorded and ranges.enable and self.input_range.requires_grad
        x_tiles = self._apply_input_range(x, tile_dim=1, range_gradient=not range_tap)
        if x_tiles is x:  # no input range: keep the caller's tensor intact
            x_tiles = x.clone()
        z = analog_conv(
            x_tiles.view(batch, -1, height, width),
            kernels,
            forward,
            tiles=m.n_stacked,
            stride=stride,
            padding=padding,
            dilation=dilation,
            ir_scale=self._ir_scale.view(1, -1, 1, 1, 1),
            generator=generator,
        )  # (batch, tiles, out, H_out, W_out)
        if range_tap:
            weight = kernels.weight.detach()  # (tiles * out, channels, kh, kw)
            z = _PatchRangeGradient.apply(
                z,
                self.input_range,
                x.detach(),
                weight.view(m.n_stacked, m.out_features, *weight.shape[1:]),
                None if forward.is_perfect else gradient_mask(z.detach(), forward),
                geometry,
                (
                    ranges.decay if self.training else 0.0,
                    ranges.input_min_percentage,
                    ranges.gradient_relative,
                    ranges.gradient_scale,
                ),
            )
        z = z * scale if recorded else z.mul_(scale)
        # Digital sum over the input tiles, in the memory order of channels-last (reducing the
        # tile axis of the 5-D view directly is several times slower).
        out_size = z.shape[3:]
        z = z.permute(0, 3, 4, 1, 2)  # (batch, H_out, W_out, tiles, out)
        if m.tiles_in > 1:
            z = z.reshape(batch, *out_size, m.groups, m.tiles_in, m.out_features).sum(dim=4)
        y = z.reshape(batch, *out_size, self.out_channels).permute(0, 3, 1, 2)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.squeeze(2) if self._spatial == 1 else y

    def _unfolded_forward(self, x: Tensor) -> Tensor:
        """The unfolded path: patches times tiles (:meth:`analog_forward`)."""
        pads = self._explicit_padding()
        if any(pads):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pads, mode=mode)
        if self._spatial == 1:  # treat (batch, C, L) as (batch, C, 1, L)
            x = x.unsqueeze(2)
        kernel, stride, dilation = self._geometry_2d()
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
        return y.reshape(shape)

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
