"""Shared machinery of the analog layers: tiling, digital periphery, programming and drift.

Every analog layer holds ``groups`` weight matrices of ``out x in`` (see
:class:`~analoglib.tiles.mapper.TileMapping`). Its trainable ``weight`` stores the normalised
weights W~ (each tile column's abs-max is ``omega``); the digital column scales ``s`` map them
back, so the layer computes, per input tile t and output column i,

    y_{t,i} = alpha_{t,i} * r_t * s_{t,i} * gamma_{t,i} * ADC(MVM(DAC(clip(x_t, -r_t, r_t) / r_t)))

and sums the tiles digitally before adding the digital bias. ``r`` is the input range,
``gamma`` the learned output scale and ``alpha`` the drift-compensation factor (evaluation only).

Programming is an explicit event: :meth:`AnalogLayerBase.program` draws programming noise and
drift exponents once and keeps them; :meth:`AnalogLayerBase.drift` applies drift and read
noise to that realisation. In ``eval()`` mode a programmed layer computes with the drifted
weights; in ``train()`` mode (and before programming) it computes with the reference weights.

References:
    Rasch et al. 2023; ``docs/model.md#standard-model``, ``docs/model.md#pcm``,
    ``docs/model.md#programming``, ``docs/model.md#gdc``, ``docs/model.md#periphery``,
    ``docs/model.md#hwa-noise``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from analoglib.config import PCMConfig
from analoglib.noise.modifier import modify_weights
from analoglib.noise.pcm import PCMNoiseModel
from analoglib.tiles.mapper import TileMapping
from analoglib.tiles.tile import analog_mvm, ir_drop_row_weighting, one_hot_readout

__all__ = [
    "CLIP_CHECK_BATCHES",
    "CLIP_WARNING_FRACTION",
    "AnalogLayerBase",
    "ConfigMismatchError",
    "InputClippingWarning",
]

log = logging.getLogger(__name__)

# Floor of the drift-compensation read-out (``docs/model.md#gdc``).
_GDC_READOUT_FLOOR = 1e-4


class ConfigMismatchError(ValueError):
    """A checkpoint was saved under a different config than the model it is loaded into."""


class _InputRange(torch.autograd.Function):
    """``clip(x, -r, r) / r`` with aihwkit's input-range gradient for ``r``.

    Only clipped inputs contribute to the gradient of ``r``; with ``decay`` the range also
    shrinks while more than ``input_min_percentage`` of the inputs are inside it.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        input_range: Tensor,
        decay: float,
        min_fraction: float,
        relative: bool,
        scale: float,
        tile_dim: int,
    ) -> Tensor:
        r = _broadcast_range(input_range, x.dim(), tile_dim)  # tile axis at tile_dim
        ctx.save_for_backward(x, input_range)
        ctx.options = (decay, min_fraction, relative, scale, tile_dim)
        return torch.clamp(x, -r, r).div_(r)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, input_range = ctx.saved_tensors
        decay, min_fraction, relative, scale, tile_dim = ctx.options
        r = _broadcast_range(input_range, x.dim(), tile_dim)
        others = [dim for dim in range(x.dim()) if dim != tile_dim]  # reduced per tile
        inside = x.abs() < r
        grad_x_units = grad / r  # gradient with respect to the clipped input
        grad_in = grad_x_units * inside
        upper = (grad_x_units.clamp(max=0.0) * (x >= r)).sum(dim=others)
        lower = (grad_x_units.clamp(min=0.0) * (x <= -r)).sum(dim=others)
        grad_r = upper - lower
        grad_r = grad_r * (input_range * scale if relative else scale)
        if decay > 0:
            fraction_inside = inside.float().mean(dim=others)
            grad_r = grad_r + decay * input_range * (fraction_inside > min_fraction)
        return grad_in, grad_r, None, None, None, None, None


def _broadcast_range(input_range: Tensor, dims: int, tile_dim: int) -> Tensor:
    """``(tiles,)`` ranges shaped to broadcast over an input with the tile axis at tile_dim."""
    shape = [1] * dims
    shape[tile_dim] = -1
    return input_range.view(shape)


def _group_max(values: Tensor, index: Tensor, n_groups: int) -> Tensor:
    """Max of ``(tiles, out)`` values over the columns of each output tile -> ``(tiles, n)``."""
    out = values.new_zeros(values.shape[0], n_groups)
    return out.scatter_reduce(1, index.expand_as(values), values, reduce="amax")


def _check_finite_weight(layer: str, name: str, values: Tensor) -> None:
    """Refuse NaN or infinite weights: on a crossbar they would make every output NaN."""
    finite = torch.isfinite(values.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{layer}: {name} holds {bad} NaN or infinite value(s) of {values.numel()}; analog "
            "layers accept finite weights only (a device cannot be programmed to NaN)."
        )


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside analoglib and torch (the user's call)."""
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    return level


_INTERNAL_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) for path in (os.path.dirname(__file__), torch.__file__)
)


class InputClippingWarning(UserWarning):
    """Many inputs of a tile exceed its input range: they are clipped before the DAC."""


#: Fraction of a tile's inputs beyond its input range that triggers an
#: :class:`InputClippingWarning` (checked on the first evaluation batches of each layer).
CLIP_WARNING_FRACTION = 0.01
#: Evaluation batches per layer on which the clipped fraction is checked.
CLIP_CHECK_BATCHES = 4
#: Config groups a programming realisation depends on (see :meth:`set_extra_state`).
_PROGRAMMING_GROUPS = ("mapping", "forward", "noise_model", "drift_compensation")


class AnalogLayerBase(nn.Module):
    """Base class of the analog layers (not used directly).

    Subclasses call :meth:`_init_analog` with their digital weight and implement ``forward``
    around :meth:`analog_forward`.
    """

    config: PCMConfig
    mapping: TileMapping
    weight: nn.Parameter
    bias: nn.Parameter | None
    mapping_scales: Tensor  # (tiles, out) digital column scales s
    out_scales: Tensor  # (tiles, out or 1) learned output scales gamma
    input_range: Tensor  # (tiles,) input ranges r
    input_range_batches: Tensor  # () batches used for the data initialisation of r
    _row_mask: Tensor  # (tiles, 1, rows) rows that exist physically
    _ir_weighting: Tensor  # (tiles, 1, rows) IR-drop row weighting
    _ir_scale: Tensor  # (tiles, 1, 1) n / ir_drop_g_ratio
    _input_index: Tensor  # (tiles_in * rows,) input gather index
    _out_tile: Tensor  # (out,) output tile of every column
    _g_prog: Tensor | None  # (2, tiles, out, rows) programmed G+ and G- (uS)
    _nu: Tensor | None  # (2, tiles, out, rows) drift exponents (float16)
    _g_scale: Tensor | None  # (tiles, out, 1) conductance per weight unit (uS)
    _weight_t: Tensor | None  # (tiles, out, rows) weights at the current inference time
    _gdc_baseline: Tensor | None  # (tiles, tiles_out) read-out right after programming
    _gdc_alpha: Tensor | None  # (tiles, out) drift-compensation factors
    _keep_config_on_load: bool = False
    modifier_strength: float  # ramp factor of the weight modifier (HWA training)
    # Post-training optimisers (analoglib.optim) run the network ideally and watch the tile
    # inputs; see :meth:`ideal_forward`.
    _ideal: bool = False
    _input_observer: Callable[[Tensor], None] | None = None
    # Weight-modifier noise of the current optimiser step: ((weight version, strength), noise).
    _weight_noise: tuple[tuple[int, float], Tensor] | None = None
    # Evaluation batches left on which the clipped input fraction is checked.
    _clip_checks_left: int = CLIP_CHECK_BATCHES

    def _init_analog(
        self,
        weight: Tensor,
        bias: Tensor | None,
        config: PCMConfig,
        groups: int = 1,
    ) -> None:
        """Map a digital weight of native shape ``(out, in_per_group, *kernel)`` onto tiles.

        Args:
            weight: Digital weight; ``out`` must be divisible by ``groups``.
            bias: Digital bias ``(out,)`` or ``None``.
            config: Crossbar configuration (copied).
            groups: Number of independent matrices.
        """
        if not isinstance(config, PCMConfig):
            raise ValueError(f"config = {config!r} is not allowed: expected a PCMConfig.")
        _check_finite_weight(type(self).__name__, "weight", weight)
        if bias is not None:
            _check_finite_weight(type(self).__name__, "bias", bias)
        self.config = config.copy()
        self._native_shape = tuple(weight.shape)
        out_total = weight.shape[0]
        in_per_group = int(weight[0].numel())
        out_per_group = out_total // groups
        self.mapping = TileMapping.build(
            in_per_group,
            out_per_group,
            groups,
            self.config.mapping.max_input_size,
            self.config.mapping.max_output_size,
        )
        m = self.mapping
        n_stacked = m.n_stacked

        # Digital column scales s: the abs-max of each tile column (or tile) maps to omega.
        with torch.no_grad():
            digital = weight.detach().reshape(groups, out_per_group, in_per_group)
            column_max = m.to_tiles(digital).abs().amax(dim=2)  # (tiles, out)
            if not self.config.mapping.weight_scaling_columnwise:
                out_tile = m.output_tile_index().to(weight.device)
                per_tile = _group_max(column_max, out_tile, m.tiles_out)
                column_max = per_tile[:, out_tile]
            scales = column_max / self.config.mapping.weight_scaling_omega
            scales = torch.where(scales > 0, scales, torch.ones_like(scales))
            normalised = digital / m.expand_to_weights(scales)
        self.weight = nn.Parameter(normalised.reshape(self._native_shape).contiguous())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.register_buffer("mapping_scales", scales)

        gamma = torch.ones(
            n_stacked,
            out_per_group if self.config.mapping.out_scaling_columnwise else 1,
            device=weight.device,
            dtype=weight.dtype,
        )
        if self.config.mapping.learn_out_scaling:
            self.out_scales: Tensor = nn.Parameter(gamma)
        else:
            self.register_buffer("out_scales", gamma)

        ranges = self.config.pre_post.input_range
        r = torch.full((n_stacked,), ranges.init_value, device=weight.device, dtype=weight.dtype)
        if ranges.enable and ranges.learn_input_range:
            self.input_range: Tensor = nn.Parameter(r)
        else:
            self.register_buffer("input_range", r)
        self.register_buffer("input_range_batches", torch.zeros((), dtype=torch.long))

        # Static layout tensors (derived from the mapping, never saved).
        rows_used = m.row_counts().to(weight.device)
        self.register_buffer("_row_mask", m.row_mask().to(weight.device), persistent=False)
        self.register_buffer(
            "_ir_weighting", ir_drop_row_weighting(m.rows, rows_used).to(weight), persistent=False
        )
        ir_scale = rows_used.to(weight.dtype) / self.config.forward.ir_drop_g_ratio
        self.register_buffer("_ir_scale", ir_scale.view(-1, 1, 1), persistent=False)
        self.register_buffer(
            "_input_index", m.input_gather_index().to(weight.device), persistent=False
        )
        self.register_buffer("_out_tile", m.output_tile_index().to(weight.device), persistent=False)

        # Programmed state (carried in the extra state, see get_extra_state).
        for name in ("_g_prog", "_nu", "_g_scale", "_weight_t", "_gdc_baseline", "_gdc_alpha"):
            self.register_buffer(name, None, persistent=False)
        self._t_inference_s: float | None = None
        self._program_seed: int | None = None
        self._programmed_version: int | None = None
        self._forward_seed = 0
        self._generator: torch.Generator | None = None
        self.noise_model = PCMNoiseModel(self.config.noise_model)
        # Ramp factor of the weight modifier (training state, not config; see
        # analoglib.training.set_modifier_strength).
        self.modifier_strength = 1.0

    def __deepcopy__(self, memo: dict[int, Any]) -> AnalogLayerBase:
        """A copy that keeps the programmed realisation usable.

        The programmed state remembers the weight tensor's version counter (edits after
        programming are refused); a copied tensor starts a new counter, so the copy's record
        is moved to it when the original was in sync, and stays stale when it was not.
        """
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        if self._programmed_version is not None:
            in_sync = self.weight._version == self._programmed_version
            new._programmed_version = new.weight._version if in_sync else -1
        return new

    # -- properties ---------------------------------------------------------------------------
    @property
    def is_programmed(self) -> bool:
        """True once :meth:`program` has drawn a programming realisation."""
        return self._g_prog is not None

    @property
    def t_inference_s(self) -> float | None:
        """Seconds after programming of the current weights (None before programming)."""
        return self._t_inference_s

    @property
    def analog_weight_count(self) -> int:
        """Number of weights mapped to crossbars."""
        return self.weight.numel()

    def extra_repr(self) -> str:
        m = self.mapping
        state = "unprogrammed"
        if self.is_programmed:
            state = f"programmed, t_inference={self._t_inference_s:g} s"
        return (
            f"tiles={m.n_tiles} ({m.groups}x{m.tiles_in}x{m.tiles_out} of "
            f"{m.tile_shape[0]}x{m.tile_shape[1]}), utilization={m.utilization:.1%}, {state}"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["_generator"] = None  # generators are rebuilt from the seed on demand
        state["_weight_noise"] = None  # keyed on the version of this weight tensor only
        return state

    # -- randomness -----------------------------------------------------------------------------
    def set_forward_seed(self, seed: int) -> None:
        """Restart the stream of forward noise (read noise, output noise, weight modifier)."""
        self._forward_seed = int(seed)
        self._generator = None

    def _forward_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self._forward_seed)
        return self._generator

    # -- weights --------------------------------------------------------------------------------
    def _matrices(self, weight: Tensor) -> Tensor:
        m = self.mapping
        return weight.reshape(m.groups, m.out_features, m.in_features)

    def reference_tiles(self) -> Tensor:
        """Normalised reference weights in the stacked tile layout ``(tiles, out, rows)``."""
        return self.mapping.to_tiles(self._matrices(self.weight), self._input_index)

    def digital_weight(self) -> Tensor:
        """Digital weight of native shape equivalent to the reference (unprogrammed) weights."""
        m = self.mapping
        factor = self.mapping_scales * self.out_scales.expand(m.n_stacked, m.out_features)
        weight = self._matrices(self.weight) * m.expand_to_weights(factor)
        return weight.reshape(self._native_shape)

    def _modified_tiles(self, tiles: Tensor, generator: torch.Generator) -> Tensor:
        """The HWA weight-noise modifier of this layer (:func:`analoglib.noise.modify_weights`)."""
        return modify_weights(
            tiles, self.config.modifier, self.modifier_strength, self.noise_model, generator
        )

    def _step_modified_tiles(self, tiles: Tensor, generator: torch.Generator) -> Tensor:
        """The weight-modifier noise of the current optimiser step on ``tiles`` (training).

        One draw per optimiser step, as aihwkit's C++ tile does: the noise is kept until the
        weights change (an optimiser step, clipping or remapping bumps their version) or the
        ramp strength changes, so every call of the layer between two steps (the time steps
        of a recurrent layer, a layer shared in the network) sees the same noisy weights.
        The gradient passes straight through.
        """
        modifier = self.config.modifier
        if modifier.type == "none" and modifier.pdrop == 0:
            return tiles
        key = (self.weight._version, self.modifier_strength)
        if self._weight_noise is None or self._weight_noise[0] != key:
            base = tiles.detach()
            noise = self._modified_tiles(base, generator).sub_(base)  # (tiles, out, rows)
            self._weight_noise = (key, noise)
        return tiles + self._weight_noise[1]

    # -- forward --------------------------------------------------------------------------------
    def _tile_inputs(self, x: Tensor) -> Tensor:
        """``(batch, groups, in)`` -> ``(groups * tiles_in, batch, rows)``."""
        m = self.mapping
        batch = x.shape[0]
        if m.is_padded:
            x = torch.nn.functional.pad(x, (0, 1))[..., self._input_index]
        # (batch, groups, tiles_in, rows) -> (groups, tiles_in, batch, rows)
        x = x.reshape(batch, m.groups, m.tiles_in, m.rows).permute(1, 2, 0, 3)
        return x.reshape(m.n_stacked, batch, m.rows)

    def _initialising_ranges(self) -> bool:
        """True while the input ranges are set from the data of the training batches."""
        ranges = self.config.pre_post.input_range
        return (
            ranges.enable
            and self.training
            and bool(self.input_range_batches < ranges.init_from_data)
        )

    def _checking_clipping(self) -> bool:
        """True while the input clipping of a directly converted model is checked."""
        return (
            self.config.pre_post.input_range.enable
            and not self.training
            and self._clip_checks_left > 0
            and int(self.input_range_batches) == 0
        )

    def _update_ranges_from_data(self, std: Tensor) -> None:
        """Running mean of ``init_std_alpha * std`` per tile, ``std``: ``(tiles,)``."""
        ranges = self.config.pre_post.input_range
        with torch.no_grad():
            k = float(self.input_range_batches)
            std = std.clamp(min=1e-6)
            # Out of place, swapped in through .data (as aihwkit does): an in-place update
            # would bump the version of r saved for backward by an earlier call of this layer
            # in the same forward (RNN cells, shared layers) and break backward.
            self.input_range.data = (self.input_range * k + ranges.init_std_alpha * std) / (k + 1)
            self.input_range_batches += 1

    def _apply_input_range(
        self, x: Tensor, tile_dim: int = 0, range_gradient: bool = True
    ) -> Tensor:
        """``clip(x, -r, r) / r`` per tile; the tiles are ``x``'s axis ``tile_dim``.

        Args:
            x: Tile inputs, ``(tiles, batch, rows)`` (the default ``tile_dim = 0``) or any
                layout with one axis of tiles, whose caller then sets the ranges from data and
                checks the clipping itself.
            tile_dim: The axis of the tiles in ``x``.
            range_gradient: False when the caller computes the range gradient itself (the
                convolution path, whose inputs are pixels rather than patch entries).
        """
        ranges = self.config.pre_post.input_range
        if not ranges.enable:
            return x
        if tile_dim == 0 and self._initialising_ranges():
            self._update_ranges_from_data(x.detach().std(dim=(1, 2)))
        # Ranges set from data (trained or calibrated) clip by choice: only the initial value
        # of a directly converted model is checked.
        if tile_dim == 0 and self._checking_clipping():
            self._check_input_clipping(x)
        decay = ranges.decay if self.training else 0.0
        out: Tensor = _InputRange.apply(
            x,
            self.input_range if range_gradient else self.input_range.detach(),
            decay,
            ranges.input_min_percentage,
            ranges.gradient_relative,
            ranges.gradient_scale,
            tile_dim,
        )
        return out

    @torch.no_grad()
    def _check_input_clipping(self, x: Tensor) -> None:
        """Warn once if more than :data:`CLIP_WARNING_FRACTION` of a tile's inputs clip."""
        self._clip_checks_left -= 1
        rows = self._row_mask.sum(dim=(1, 2)).clamp(min=1)  # (tiles,) inputs per vector
        r = self.input_range.detach().view(-1, 1, 1)
        clipped = (x.abs() > r).sum(dim=(1, 2)) / (rows * x.shape[1])  # (tiles,)
        worst = float(clipped.max())
        if worst > CLIP_WARNING_FRACTION:
            self._clip_checks_left = 0  # once per layer
            tile = int(clipped.argmax())
            log.info(
                "%s: %.1f%% of the inputs of tile %d exceed its input range %.3g",
                type(self).__name__,
                100 * worst,
                tile,
                float(r.view(-1)[tile]),
            )
            # One message per layer type, so Python's warning filter shows it once per model.
            warnings.warn(
                f"{type(self).__name__}: more than {CLIP_WARNING_FRACTION:.0%} of a tile's "
                "inputs exceed the tile's input range and are clipped. Calibrate the input "
                "ranges on a few training batches first (analoglib.optim."
                "calibrate_input_ranges), or train them (HWA training).",
                InputClippingWarning,
                stacklevel=_caller_stacklevel(),
            )

    def _current_tiles(self, generator: torch.Generator) -> Tensor:
        if not self.training and self.is_programmed:
            if self.weight._version != self._programmed_version:
                raise RuntimeError(
                    f"{type(self).__name__}: the weights changed after programming; call "
                    "analoglib.program(model, seed) again before evaluating."
                )
            assert self._weight_t is not None
            return self._weight_t
        tiles = self.reference_tiles()
        if self.training:
            return self._step_modified_tiles(tiles, generator)
        if self.config.modifier.enable_during_test:
            tiles = self._modified_tiles(tiles, generator)
        return tiles

    def _periphery_scale(self) -> Tensor:
        """``(tiles, out)`` digital factor ``alpha * r * s * gamma`` of every tile column."""
        m = self.mapping
        scale = self.mapping_scales * self.out_scales.expand(m.n_stacked, m.out_features)
        if self.config.pre_post.input_range.enable:
            scale = scale * self.input_range.detach().view(-1, 1)
        if (
            not self.training
            and self._gdc_alpha is not None
            and self.config.drift_compensation.type != "none"
        ):
            scale = scale * self._gdc_alpha
        return scale

    def _check_input(self, x: Tensor) -> None:
        """Refuse inputs with NaN or infinite values or of another dtype than the layer's."""
        # One pass: a non-finite sum flags NaN/inf (or an overflow, confirmed by the exact test).
        if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
            raise ValueError(
                f"{type(self).__name__}: the input holds NaN or infinite values; analog layers "
                "accept finite inputs only."
            )
        if x.dtype != self.weight.dtype:
            raise ValueError(
                f"{type(self).__name__}: the input has dtype {x.dtype}, the layer "
                f"{self.weight.dtype}; cast the input (x.to({self.weight.dtype})) or the model "
                "(model.to(dtype))."
            )

    def analog_forward(self, x: Tensor) -> Tensor:
        """Tiled analog MVM with the digital periphery, without bias.

        Args:
            x: ``(batch, groups, in)`` inputs of every matrix.

        Returns:
            ``(batch, groups * out)`` outputs.

        Raises:
            ValueError: If ``x`` holds NaN or infinite values, or its dtype is not the layer's.
        """
        self._check_input(x)
        if self._ideal:
            return self._ideal_forward(x)
        m = self.mapping
        batch = x.shape[0]
        generator = self._forward_generator(x.device)
        tiles = self._current_tiles(generator)
        x_tiles = self._apply_input_range(self._tile_inputs(x))  # (tiles, batch, rows)
        z = analog_mvm(
            x_tiles,
            tiles,
            self.config.forward,
            ir_weighting=self._ir_weighting,
            ir_scale=self._ir_scale,
            generator=generator,
        )  # (tiles, batch, out)
        scale = self._periphery_scale().unsqueeze(1)  # (tiles, 1, out)
        if z.requires_grad or scale.requires_grad:
            z = z * scale
        else:
            z.mul_(scale)
        # (groups, tiles_in, batch, out) -> digital sum over tiles_in -> (batch, groups, out)
        y = z.reshape(m.groups, m.tiles_in, batch, m.out_features)
        y = y.sum(dim=1) if m.tiles_in > 1 else y[:, 0]
        return y.transpose(0, 1).reshape(batch, m.groups * m.out_features)

    def set_ideal_forward(
        self, enabled: bool, input_observer: Callable[[Tensor], None] | None = None
    ) -> None:
        """Switch the exact digital forward on or off (for post-training calibration).

        While enabled, the layer computes the exact product of its reference weights with
        its digital scales (no input range, no noise, no quantisation, no drift; the
        programmed state is kept but not used) and passes every ``(tiles, batch, rows)``
        tile input to ``input_observer``, before any clipping.
        """
        self._ideal = enabled
        self._input_observer = input_observer if enabled else None

    def _ideal_forward(self, x: Tensor) -> Tensor:
        m = self.mapping
        batch = x.shape[0]
        x_tiles = self._tile_inputs(x)  # (tiles, batch, rows)
        if self._input_observer is not None:
            self._input_observer(x_tiles.detach())
        z = torch.bmm(x_tiles, self.reference_tiles().transpose(1, 2))  # (tiles, batch, out)
        scale = self.mapping_scales * self.out_scales.expand(m.n_stacked, m.out_features)
        z = z * scale.unsqueeze(1)
        y = z.reshape(m.groups, m.tiles_in, batch, m.out_features).sum(dim=1)
        return y.transpose(0, 1).reshape(batch, m.groups * m.out_features)

    # -- programming and drift ------------------------------------------------------------------
    def _gdc_readout(self, tiles: Tensor, generator: torch.Generator) -> Tensor:
        """Mean |output| of every physical tile for one-hot inputs, ``(tiles, tiles_out)``."""
        m = self.mapping
        y = one_hot_readout(
            tiles,
            self.config.forward,
            ir_weighting=self._ir_weighting,
            ir_scale=self._ir_scale,
            generator=generator,
        )  # (tiles, out, rows)
        y.abs_()
        if m.is_padded:  # padded rows are no inputs of the tile
            y.mul_(self._row_mask)
        column_sum = y.sum(dim=2)  # (tiles, out)
        tile_sum = column_sum.new_zeros(m.n_stacked, m.tiles_out)
        tile_sum.index_add_(1, self._out_tile, column_sum)
        out_sizes = torch.tensor(m.out_sizes, device=tiles.device, dtype=tiles.dtype)
        rows_used = self._row_mask.sum(dim=2).to(tiles.dtype)  # (tiles, 1)
        return (tile_sum / (rows_used * out_sizes)).clamp(min=_GDC_READOUT_FLOOR)

    def _tile_max(self, magnitude: Tensor) -> Tensor:
        """``(tiles, out, 1)`` abs-max of the physical tile of every column of ``magnitude``.

        Args:
            magnitude: ``(tiles, out, rows)`` absolute weights in the stacked tile layout.
        """
        column_max = magnitude.amax(dim=2)  # (tiles, out)
        wmax = _group_max(column_max, self._out_tile.expand_as(column_max), self.mapping.tiles_out)
        return wmax[:, self._out_tile].unsqueeze(2)

    @torch.no_grad()
    def program(self, generator: torch.Generator, seed: int | None = None) -> None:
        """Draw one programming realisation of every device and keep it.

        Both devices of each differential pair are programmed: programming noise on the target
        conductance, stuck devices if ``noise_model.stuck_fraction > 0`` (they keep their stuck
        value), and one drift exponent per device drawn from its target (or stuck) conductance. With
        ``noise_model.pair_model = "net_weight"`` (aihwkit's convention) the kept pair is then
        the net programmed weight re-split onto one device per sign, rescaled to the tile's
        programmed abs-max; drift and read noise act on it. The weights are then those right
        after programming (no drift, no read noise), and the drift-compensation baseline is
        read out.

        Args:
            generator: Source of every draw (on the layer's device).
            seed: Seed the generator came from, kept for the record.

        References:
            ``docs/model.md#pcm``, ``docs/model.md#programming``, ``docs/model.md#gdc``.
        """
        _check_finite_weight(type(self).__name__, "weight", self.weight)
        m = self.mapping
        tiles = self.reference_tiles().detach()  # (tiles, out, rows)
        # (2, tiles, out, rows): targets of G+ and G-, then both devices programmed at once.
        g_target, g_scale = self.noise_model.weight_to_conductance(
            tiles, self._tile_max(tiles.abs())
        )
        g_prog = self.noise_model.apply_programming_noise(g_target, generator)
        # Stuck devices (if any) replace their programmed value and the state nu is drawn from.
        g_prog, g_state, _ = self.noise_model.apply_stuck_devices(g_prog, g_target, generator)
        if m.is_padded:  # padded rows hold no device
            g_prog.mul_(self._row_mask)
        nu = self.noise_model.generate_drift_coefficients(g_state, generator).half()
        del g_target, g_state
        if self.config.noise_model.pair_model == "net_weight":
            # aihwkit's convention: drift and read noise act on the net weight re-split onto
            # one device per sign, rescaled to the tile's programmed abs-max.
            g_prog, g_scale = self.noise_model.net_weight_pair(g_prog, g_scale, self._tile_max)
            if m.is_padded:
                g_prog.mul_(self._row_mask)
        self._g_prog, self._nu, self._g_scale = g_prog, nu, g_scale
        self._weight_t = (g_prog[0] - g_prog[1]).div_(g_scale)
        self._t_inference_s = 0.0
        self._program_seed = seed
        self._programmed_version = self.weight._version
        self._gdc_alpha = None
        self._gdc_baseline = None
        if self.config.drift_compensation.type != "none":
            self._gdc_baseline = self._gdc_readout(self._weight_t, generator)
            self._gdc_alpha = torch.ones_like(self.mapping_scales)

    @torch.no_grad()
    def drift(self, t_inference_s: float, generator: torch.Generator) -> None:
        """Apply drift and accumulated read noise to the kept programming realisation.

        Args:
            t_inference_s: Seconds after programming, >= 0.
            generator: Source of the read-noise and read-out draws.

        Raises:
            RuntimeError: If the layer was never programmed.
            ValueError: If ``t_inference_s`` is negative or not finite.

        References:
            ``docs/model.md#drift``, ``docs/model.md#read-noise``, ``docs/model.md#programming``,
            ``docs/model.md#gdc``.
        """
        if (
            not isinstance(t_inference_s, (int, float))
            or not math.isfinite(t_inference_s)
            or (t_inference_s < 0)
        ):
            raise ValueError(
                f"t_inference_s = {t_inference_s!r} is not allowed: expected a finite time >= 0 s."
            )
        if not self.is_programmed:
            raise RuntimeError(
                f"{type(self).__name__} is not programmed: call analoglib.program(model, seed) "
                "before analoglib.drift(...)."
            )
        assert self._g_prog is not None and self._nu is not None and self._g_scale is not None
        g = self.noise_model.apply_drift_noise(
            self._g_prog, self._nu, float(t_inference_s), generator
        )  # (2, tiles, out, rows)
        # Padded rows hold g_prog = 0, which drift and read noise keep at 0.
        self._weight_t = g[0].sub_(g[1]).div_(self._g_scale)
        self._t_inference_s = float(t_inference_s)
        if self._gdc_baseline is not None:
            readout = self._gdc_readout(self._weight_t, generator)
            self._gdc_alpha = (self._gdc_baseline / readout)[:, self._out_tile]

    #: Config groups that fix the layer's structure (tiles, scales, input-range parameters);
    #: :meth:`replace_config` refuses to change them.
    STRUCTURAL_GROUPS = ("mapping", "pre_post")

    def replace_config(self, config: PCMConfig) -> None:
        """Use another crossbar config for the same mapped weights.

        The counterpart of aihwkit's ``replace_rpu_config``. The forward model, the PCM noise
        model, drift compensation, modifier, clip and remap settings may change; the
        programming realisation is dropped, because it was drawn under the old noise model
        (program again before evaluating).

        Args:
            config: The new config (copied).

        Raises:
            ValueError: If ``config`` is not a :class:`~analoglib.config.PCMConfig` or differs in
                a structural group (``mapping``, ``pre_post``), which would need a new
                conversion.
        """
        if not isinstance(config, PCMConfig):
            raise ValueError(f"config = {config!r} is not allowed: expected a PCMConfig.")
        structural = [
            line
            for line in self.config.differences(config)
            if line.split(".", 1)[0] in self.STRUCTURAL_GROUPS
        ]
        if structural:
            raise ValueError(
                f"config differs in structural fields ({'; '.join(structural)}): these fix the "
                "tiles and parameters of the layer; convert the digital model again instead."
            )
        self.config = config.copy()
        self.noise_model = PCMNoiseModel(self.config.noise_model)
        rows_used = self._row_mask.sum(dim=2).to(self._ir_scale.dtype)  # (tiles, 1)
        self._ir_scale = (rows_used / self.config.forward.ir_drop_g_ratio).view(-1, 1, 1)
        self.reset_programming()

    def reset_programming(self) -> None:
        """Forget the programming realisation (back to the reference weights)."""
        for name in ("_g_prog", "_nu", "_g_scale", "_weight_t", "_gdc_baseline", "_gdc_alpha"):
            setattr(self, name, None)
        self._t_inference_s = None
        self._program_seed = None
        self._programmed_version = None

    # -- state ----------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """Config, programmed state and seeds, saved with the state dict."""
        programmed = None
        if self.is_programmed:
            programmed = {
                name: getattr(self, name)
                for name in (
                    "_g_prog",
                    "_nu",
                    "_g_scale",
                    "_weight_t",
                    "_gdc_baseline",
                    "_gdc_alpha",
                )
            }
        return {
            "config": self.config.to_dict(),
            "programmed": programmed,
            "t_inference_s": self._t_inference_s,
            "program_seed": self._program_seed,
            "forward_seed": self._forward_seed,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the programmed state; refuse a checkpoint saved under another config."""
        saved = PCMConfig.from_dict(state["config"])
        differences = self.config.differences(saved)
        if differences and not getattr(self, "_keep_config_on_load", False):
            raise ConfigMismatchError(
                f"{type(self).__name__}: the checkpoint was saved under a different config "
                f"(model != checkpoint): {'; '.join(differences)}. The model's config is never "
                "replaced on load; build the model with the checkpoint's config, or load with "
                "analoglib.load(model, path, config='keep') to keep the model's config."
            )
        # Programming draws from noise_model and reads the drift-compensation baseline through
        # the forward path: a difference there makes the saved realisation stale.
        stale = [d for d in differences if d.split(".", 1)[0] in _PROGRAMMING_GROUPS]
        if differences:
            log.warning(
                "%s: keeping the model's config; checkpoint differs in: %s.%s",
                type(self).__name__,
                "; ".join(differences),
                " Its programmed state was drawn under the checkpoint's config and is dropped: "
                "program again."
                if stale and state["programmed"] is not None
                else "",
            )
        self.reset_programming()
        if state["programmed"] is not None and not stale:
            device = self.weight.device
            for name, value in state["programmed"].items():
                setattr(self, name, None if value is None else value.to(device))
            self._t_inference_s = state["t_inference_s"]
            self._program_seed = state["program_seed"]
            self._programmed_version = self.weight._version
        self.set_forward_seed(state["forward_seed"])
