"""Forward pass of stacked crossbar tiles (steps 3-9 of the reference order).

The functions here see normalised tile inputs (after the digital input range) and normalised
tile weights, stacked as ``(tiles, batch, rows)`` and ``(tiles, out, rows)``; the digital
periphery (input range, column scales, drift compensation, bias) belongs to the layer.

Order per tile: DAC quantisation and clip, MVM, IR drop, short-term PCM read noise, S-shaped
ADC nonlinearity, additive output noise, ADC quantisation and clip. When the nonlinearity is off,
the read noise and the output noise are drawn as one Gaussian of the summed variance, which has
exactly the same distribution as two draws and saves a pass over the outputs.

The backward pass is that of an ideal crossbar (aihwkit's ``is_perfect`` backward): quantisers and
noise pass gradients straight through, and outputs at the ADC bound pass no gradient to the
inputs (the weight gradient keeps them, as in aihwkit).

References:
    Rasch et al. 2023; ``docs/model.md#forward-order``, ``docs/model.md#tile-forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from analoglib.config import ForwardParameters, quantization_step
from analoglib.random import normal

__all__ = [
    "TileKernels",
    "analog_conv",
    "analog_mvm",
    "correction_dtype",
    "gradient_mask",
    "ir_drop_row_weighting",
    "one_hot_readout",
    "quantize",
    "s_nonlinearity",
    "set_correction_dtype",
    "set_fused_elementwise",
    "tile_kernels",
]

# IR-drop polynomial c(a) = a * (a * (0.05 a - 0.2) + 0.5) (``docs/model.md#ir-drop``).
_IR_C3, _IR_C2, _IR_C1 = 0.05, -0.2, 0.5
# Outputs at or above this fraction of the ADC bound receive no gradient
# (``docs/model.md#backward``).
_BOUND_GRAD_FRACTION = 0.999


_CORRECTION_DTYPE: torch.dtype | None = None
# Opt-in fusion of the elementwise steps with torch.compile (see set_fused_elementwise).
_FUSED: dict[str, Any] | None = None


def set_correction_dtype(dtype: torch.dtype | None) -> None:
    """Choose the precision of the correction products (IR drop and read-noise amplitude).

    The main product ``W x`` is always computed in the weights' dtype. The three correction
    products (``|W||x|`` and ``W x'`` of the IR-drop model, ``|W| x^2`` of the PCM read noise)
    only scale a correction or a noise amplitude, so by default they run in bfloat16 where the
    hardware has fast bfloat16 matrix units (CUDA, or CPUs with oneDNN bfloat16 support): about
    0.4 % relative precision on those terms for a several-fold faster product.

    Args:
        dtype: ``torch.float32`` for full precision, ``torch.bfloat16``, or ``None`` for the
            automatic choice.

    Raises:
        ValueError: For any other dtype.
    """
    global _CORRECTION_DTYPE
    if dtype not in (None, torch.float32, torch.float64, torch.bfloat16):
        raise ValueError(
            f"dtype = {dtype!r} is not allowed: expected torch.float32, torch.float64, "
            "torch.bfloat16 or None (automatic)."
        )
    _CORRECTION_DTYPE = dtype


def set_fused_elementwise(enabled: bool) -> None:
    """Fuse the elementwise steps of the tile forward with ``torch.compile`` (opt-in).

    IR drop, noise variances, output noise and the ADC are a dozen passes over the tile
    outputs; compiled, they become two fused loops around the noise draw (which stays with
    the layer's generator, so the draws are unchanged). Results equal the default up to float
    rounding. The first forward of each tensor layout compiles for several seconds and needs a
    C++ compiler on the CPU; worth it for long evaluations (sweeps, many repetitions), not for
    short runs. The S-shaped nonlinearity and ``additive_constant`` weight noise stay unfused.

    Args:
        enabled: True to fuse, False for the default eager steps.

    Raises:
        ValueError: If ``enabled`` is not a bool.
    """
    global _FUSED
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled = {enabled!r} is not allowed: expected True or False.")
    if not enabled:
        _FUSED = None
    elif _FUSED is None:
        _FUSED = {
            "variance": torch.compile(_ir_drop_and_std, dynamic=True),
            "adc": torch.compile(_noise_and_adc, dynamic=True),
        }


def _ir_drop_and_std(
    z: Tensor,
    z_ir: Tensor | None,
    abs_x_prod: Tensor | None,
    x2_prod: Tensor | None,
    ir_scale: Tensor | None,
    ir_drop: float,
    w_noise_sq: float,
    out_var: float,
) -> tuple[Tensor, Tensor]:
    """IR drop on z and the standard deviation of read plus output noise (fused path)."""
    if z_ir is not None and abs_x_prod is not None and ir_scale is not None:
        p = abs_x_prod.to(z.dtype)
        k1, k2, k3 = _ir_coefficients(ir_scale, ir_drop)
        z = z - ((p * k1 + k2) * p + k3) * p * z_ir.to(z.dtype)
    if x2_prod is not None:
        return z, (x2_prod.to(z.dtype) * w_noise_sq + out_var).sqrt()
    return z, torch.full_like(z, out_var**0.5)


def _ir_coefficients(ir_scale: Tensor, ir_drop: float) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients of ``ir * c(s p) = k1 p^3 + k2 p^2 + k3 p`` per tile (s = ``ir_scale``)."""
    return (
        ir_scale.pow(3) * (_IR_C3 * ir_drop),
        ir_scale.pow(2) * (_IR_C2 * ir_drop),
        ir_scale * (_IR_C1 * ir_drop),
    )


def _noise_and_adc(
    z: Tensor, noise: Tensor, std: Tensor, step: float | None, bound: float | None
) -> Tensor:
    """Output noise and the ADC (quantise, then clip) in one pass (fused path)."""
    z = z + noise * std
    if step is not None:
        z = torch.round(z / step) * step
    if bound is not None:
        z = z.clamp(-bound, bound)
    return z


def correction_dtype(weight: Tensor) -> torch.dtype:
    """Dtype of the correction products for ``weight`` (see :func:`set_correction_dtype`)."""
    if _CORRECTION_DTYPE is not None:
        return _CORRECTION_DTYPE
    if weight.dtype != torch.float32:
        return weight.dtype
    if weight.device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def quantize(x: Tensor, step: float | None, bound: float | None) -> Tensor:
    """Round to multiples of ``step`` (half to even), then clip to ``[-bound, bound]``.

    Works in place on ``x`` when it does not require gradients; otherwise returns a new tensor
    with a straight-through gradient.

    Args:
        x: Values in normalised units.
        step: Quantisation step, or ``None`` for no rounding.
        bound: Clip bound, or ``None`` for no clipping.

    References:
        ``docs/model.md#units`` (quantise first, clip second).
    """
    if step is None and bound is None:
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return x + (quantize(x.detach().clone(), step, bound) - x).detach()
    if step is not None:
        x.div_(step).round_().mul_(step)
    if bound is not None:
        x.clamp_(-bound, bound)
    return x


def ir_drop_row_weighting(rows: int, rows_used: Tensor) -> Tensor:
    """Row weighting ``1 - (1 - j/n)^2`` of the IR-drop term, per stacked tile.

    Args:
        rows: Rows of the stacked layout.
        rows_used: ``(tiles,)`` rows that exist in each tile (``n``).

    Returns:
        ``(tiles, 1, rows)`` weights; rows beyond ``n`` are 0.

    References:
        ``docs/model.md#ir-drop`` (row 0 gets weight 0).
    """
    j = torch.arange(rows, dtype=torch.float64)[None, :]
    n = rows_used.to(torch.float64)[:, None]
    weighting = 1.0 - (1.0 - j / n) ** 2
    weighting = torch.where(j < n, weighting, torch.zeros_like(weighting))
    return weighting.unsqueeze(1).to(torch.get_default_dtype())


def s_nonlinearity(z: Tensor, forward: ForwardParameters) -> Tensor:
    """S-shaped ADC nonlinearity ``f^2 z / (1 + |n z|)``, n = out_nonlinearity / out_bound.

    References:
        ``docs/model.md#adc-nonlinearity``.
    """
    assert forward.out_bound is not None  # guaranteed by config validation
    n = forward.out_nonlinearity / forward.out_bound
    f = 1.0 + n * forward.slope_calibration * forward.out_bound
    denominator = z.abs().mul_(n).add_(1.0)  # before z is scaled in place by f^2
    return z.mul_(f * f).div_(denominator)


def _mvm_forward(
    x: Tensor,
    weight: Tensor,
    forward: ForwardParameters,
    ir_weighting: Tensor | None,
    ir_scale: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Noisy tile forward without autograd; see :func:`analog_mvm`."""
    batch = x.shape[1]
    x = quantize(
        x.clone(), quantization_step(forward.inp_res, forward.inp_bound), forward.inp_bound
    )
    use_ir = forward.ir_drop > 0
    pcm_read = forward.w_noise > 0 and forward.w_noise_type == "pcm_read"

    # Signed products: W x and, for IR drop, W x' with x' = x * row weighting. Unsigned
    # products with |W|: |W||x| for IR drop and |W| x^2 for PCM read noise. The main product is
    # exact; the corrections may use the faster correction dtype.
    z = torch.bmm(x, weight.transpose(1, 2))  # (tiles, batch, out)
    z_ir = abs_x_prod = x2_prod = None
    if use_ir or pcm_read:
        dtype = correction_dtype(weight)
        weight_c = weight.to(dtype)  # weight itself when the dtypes agree
        if use_ir:
            assert ir_weighting is not None
            z_ir = torch.bmm((x * ir_weighting).to(dtype), weight_c.transpose(1, 2))
        abs_c = weight_c.abs() if weight_c is weight else weight_c.abs_()
        parts = ([x.abs()] if use_ir else []) + ([x * x] if pcm_read else [])
        inputs = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        unsigned = torch.bmm(inputs.to(dtype), abs_c.transpose(1, 2))
        abs_x_prod = unsigned[:, :batch] if use_ir else None
        x2_prod = unsigned[:, -batch:] if pcm_read else None
    squared_norm = (
        (x * x).sum(dim=2, keepdim=True) if forward.w_noise_type == "additive_constant" else None
    )
    return _finish(z, z_ir, abs_x_prod, x2_prod, squared_norm, forward, ir_scale, generator)


def _finish(
    z: Tensor,
    z_ir: Tensor | None,
    abs_x_prod: Tensor | None,
    x2_prod: Tensor | None,
    squared_norm: Tensor | None,
    forward: ForwardParameters,
    ir_scale: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """IR drop, read noise, nonlinearity, output noise and ADC on the products (in place on z).

    The correction products may be bfloat16: each is converted once into z's dtype (operations
    on mixed dtypes would convert on every use).
    """
    noisy = forward.out_noise > 0 or forward.w_noise > 0  # else the eager path draws nothing
    fusable = forward.out_nonlinearity == 0 and squared_norm is None and noisy
    if _FUSED is not None and fusable and generator is not None and not z.requires_grad:
        z, std = _FUSED["variance"](
            z,
            z_ir if forward.ir_drop > 0 else None,
            abs_x_prod if forward.ir_drop > 0 else None,
            x2_prod if forward.w_noise > 0 else None,
            ir_scale if forward.ir_drop > 0 else None,
            float(forward.ir_drop),
            float(forward.w_noise**2),
            float(forward.out_noise**2),
        )
        noise = normal(z.shape, generator, z.device, z.dtype)
        out_step = quantization_step(forward.out_res, forward.out_bound or 1.0)
        fused: Tensor = _FUSED["adc"](z, noise, std, out_step, forward.out_bound)
        return fused
    if forward.ir_drop > 0:
        assert abs_x_prod is not None and z_ir is not None and ir_scale is not None
        # ir * c(a) with a = s p, s = n / G, p = sum_j |W_ij||x_j| and
        # c(a) = a (a (0.05 a - 0.2) + 0.5), as a polynomial in p with per-tile coefficients.
        p = abs_x_prod.to(z.dtype)
        k1, k2, k3 = _ir_coefficients(ir_scale, forward.ir_drop)
        c = p.mul(k1).add_(k2).mul_(p).add_(k3).mul_(p)
        z.addcmul_(c, z_ir.to(z.dtype), value=-1.0)

    # Output-referred noise variances (fresh tensors, so they can be overwritten).
    weight_var: Tensor | float = 0.0
    if forward.w_noise > 0 and forward.w_noise_type == "pcm_read":
        assert x2_prod is not None
        weight_var = x2_prod.to(z.dtype, copy=True).mul_(forward.w_noise**2)
    elif forward.w_noise > 0 and forward.w_noise_type == "additive_constant":
        assert squared_norm is not None
        weight_var = squared_norm * forward.w_noise**2

    out_var = forward.out_noise**2
    if forward.out_nonlinearity > 0:
        z = _add_gaussian(z, weight_var, generator)
        z = s_nonlinearity(z, forward)
        z = _add_gaussian(z, out_var, generator)
    elif isinstance(weight_var, Tensor):
        z = _add_gaussian(z, weight_var.add_(out_var), generator)
    else:
        z = _add_gaussian(z, weight_var + out_var, generator)
    out_step = quantization_step(forward.out_res, forward.out_bound or 1.0)
    return quantize(z, out_step, forward.out_bound)


@torch.no_grad()
def one_hot_readout(
    weight: Tensor,
    forward: ForwardParameters,
    *,
    ir_weighting: Tensor | None = None,
    ir_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Tile outputs for the one-hot input of every row, in the weights' layout.

    Equals ``analog_mvm(eye, weight, ...)`` (transposed) in distribution: with ``x = e_j`` the
    products are read off the weights (``W x = W_:j``, ``|W||x| = |W| x^2 = |W_:j|``,
    ``W x' = W_:j * weighting_j``), so no matrix product is needed. Used for drift compensation.

    Args:
        weight: ``(tiles, out, rows)`` normalised weights.
        forward: The ``forward`` config group.
        ir_weighting: ``(tiles, 1, rows)`` IR-drop row weighting (when ``ir_drop > 0``).
        ir_scale: ``(tiles, 1, 1)`` factor ``n / ir_drop_g_ratio``.
        generator: Source of the read and output noise.

    Returns:
        ``(tiles, out, rows)``: entry ``[t, i, j]`` is output i of tile t for input row j.

    References:
        ``docs/model.md#gdc`` (read-out with the identity through the full forward).
    """
    if forward.is_perfect:
        return weight.clone()
    if forward.ir_drop > 0 and (ir_weighting is None or ir_scale is None):
        raise ValueError("one_hot_readout needs ir_weighting and ir_scale when ir_drop > 0.")
    # One-hot inputs of amplitude 1 are exact DAC levels: no input quantisation needed.
    z = weight.clone()
    z_ir = None
    if forward.ir_drop > 0:
        assert ir_weighting is not None
        z_ir = weight * ir_weighting
    abs_weight = weight.abs()
    squared_norm = weight.new_ones(())
    return _finish(z, z_ir, abs_weight, abs_weight, squared_norm, forward, ir_scale, generator)


def gradient_mask(z: Tensor, forward: ForwardParameters) -> Tensor | None:
    """Outputs that pass a gradient: those below the ADC bound (``None``: all of them).

    References:
        ``docs/model.md#backward``.
    """
    if forward.out_bound is None:
        return None
    return z.abs() < _BOUND_GRAD_FRACTION * forward.out_bound


def _add_gaussian(
    values: Tensor, variance: Tensor | float, generator: torch.Generator | None
) -> Tensor:
    """Add zero-mean Gaussian noise of the given variance to ``values`` in place.

    A tensor ``variance`` must be a fresh tensor: it is overwritten by its square root.
    """
    if isinstance(variance, float) and variance == 0.0:
        return values
    if generator is None:
        raise ValueError("a noisy tile forward needs a torch.Generator (generator=None given).")
    noise = normal(values.shape, generator, values.device, values.dtype)
    if isinstance(variance, float):
        return values.add_(noise, alpha=variance**0.5)
    return values.addcmul_(noise, variance.sqrt_())


class _AnalogMVM(torch.autograd.Function):
    """Noisy forward, ideal backward (straight through converters and noise)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        forward: ForwardParameters,
        ir_weighting: Tensor | None,
        ir_scale: Tensor | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        z = _mvm_forward(x, weight, forward, ir_weighting, ir_scale, generator)
        ctx.save_for_backward(x, weight)
        ctx.bound_mask = gradient_mask(z, forward)
        return z

    @staticmethod
    def backward(ctx: Any, grad_z: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_w = torch.bmm(grad_z.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        # The ADC-bound mask acts on the input gradient only (as in aihwkit).
        if ctx.bound_mask is not None:
            grad_z = grad_z * ctx.bound_mask
        grad_x = torch.bmm(grad_z, weight) if ctx.needs_input_grad[0] else None
        return grad_x, grad_w, None, None, None, None


def analog_mvm(
    x: Tensor,
    weight: Tensor,
    forward: ForwardParameters,
    *,
    ir_weighting: Tensor | None = None,
    ir_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Matrix-vector products of stacked crossbar tiles with the configured nonidealities.

    Args:
        x: ``(tiles, batch, rows)`` normalised inputs (after the digital input range).
        weight: ``(tiles, out, rows)`` normalised weights (|W| <= 1 maps to g_max).
        forward: The ``forward`` config group.
        ir_weighting: ``(tiles, 1, rows)`` IR-drop row weighting
            (:func:`ir_drop_row_weighting`); required when ``forward.ir_drop > 0``.
        ir_scale: ``(tiles, 1, 1)`` factor ``n / ir_drop_g_ratio`` with n the used rows.
        generator: Source of the read and output noise.

    Returns:
        ``(tiles, batch, out)`` ADC outputs in normalised units.

    References:
        ``docs/model.md#forward-order``, ``docs/model.md#tile-forward``.
    """
    if forward.is_perfect:
        return torch.bmm(x, weight.transpose(1, 2))
    if forward.ir_drop > 0 and (ir_weighting is None or ir_scale is None):
        raise ValueError("analog_mvm needs ir_weighting and ir_scale when forward.ir_drop > 0.")
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad:
        out: Tensor = _AnalogMVM.apply(x, weight, forward, ir_weighting, ir_scale, generator)
        return out
    with torch.no_grad():
        return _mvm_forward(x, weight, forward, ir_weighting, ir_scale, generator)


@dataclass(frozen=True)
class TileKernels:
    """Convolution kernels of stacked tiles (see :func:`tile_kernels`).

    Attributes:
        weight: ``(tiles * out, channels, kh, kw)`` normalised weights W in the weights' dtype
            (may require gradients).
        ir_weighted: W times the IR-drop row weighting, in the correction dtype (or ``None``).
        magnitude: ``|W|`` in the correction dtype (or ``None`` when no correction needs it).
    """

    weight: Tensor
    ir_weighted: Tensor | None
    magnitude: Tensor | None


def tile_kernels(
    weight: Tensor, ir_weighted: Tensor | None, forward: ForwardParameters
) -> TileKernels:
    """The kernels :func:`analog_conv` needs for ``forward``.

    Args:
        weight: ``(tiles * out, channels, kh, kw)`` normalised tile weights as kernels (may
            require gradients; the correction kernels are detached copies).
        ir_weighted: The same kernels times the IR-drop row weighting; required when
            ``forward.ir_drop > 0``.
        forward: The ``forward`` config group.
    """
    if forward.is_perfect:
        return TileKernels(weight, None, None)
    use_ir = forward.ir_drop > 0
    pcm_read = forward.w_noise > 0 and forward.w_noise_type == "pcm_read"
    if forward.w_noise > 0 and not pcm_read:
        raise ValueError(
            f"forward.w_noise_type = {forward.w_noise_type!r} is not supported by analog_conv: "
            "expected 'pcm_read' (use the unfolded analog_mvm path)."
        )
    if use_ir and ir_weighted is None:
        raise ValueError("tile_kernels needs ir_weighted when forward.ir_drop > 0.")
    with torch.no_grad():
        dtype = correction_dtype(weight)
        ir = ir_weighted.detach().to(dtype) if use_ir and ir_weighted is not None else None
        magnitude = weight.detach().to(dtype).abs() if use_ir or pcm_read else None
    return TileKernels(weight, ir, magnitude)


def analog_conv(
    x: Tensor,
    kernels: TileKernels,
    forward: ForwardParameters,
    *,
    tiles: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ir_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Convolutions of stacked crossbar tiles with the configured nonidealities.

    Every output pixel of a convolution is the MVM of one unfolded input patch, so the tile
    model can run on convolution kernels instead of unfolded patches: the DAC acts elementwise
    (it commutes with unfolding; zero padding stays zero) and the four products of
    :func:`analog_mvm` (``W x``, ``W x'``, ``|W||x|``, ``|W| x^2``) are convolutions whose kernels
    carry the row weighting and the absolute values. IR drop, noise and ADC then act per output
    pixel exactly as per MVM output. Equal in distribution to :func:`analog_mvm` on the unfolded
    patches (the noise is drawn in another order). The backward is that of :func:`analog_mvm`:
    the ideal product of the unquantised input, no input gradient for outputs at the ADC bound.

    Args:
        x: ``(batch, tiles * channels, H, W)`` normalised inputs of every stacked tile (after
            the digital input range); overwritten when no gradient is recorded.
        kernels: The tiles as kernels (:func:`tile_kernels`).
        forward: The ``forward`` config group (``w_noise_type`` 'pcm_read').
        tiles: Number of stacked tiles (the convolution groups).
        stride: Convolution stride.
        padding: Zero padding on each side.
        dilation: Convolution dilation.
        ir_scale: ``(1, tiles, 1, 1, 1)`` factor ``n / ir_drop_g_ratio``.
        generator: Source of the read and output noise.

    Returns:
        ``(batch, tiles, out, H_out, W_out)`` ADC outputs in normalised units.

    References:
        ``docs/model.md#forward-order``, ``docs/model.md#tile-forward``.
    """
    options: dict[str, Any] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": tiles,
    }
    if forward.is_perfect:
        z = F.conv2d(x, kernels.weight, **options)
        return z.view(z.shape[0], tiles, -1, *z.shape[2:])
    if forward.ir_drop > 0 and ir_scale is None:
        raise ValueError("analog_conv needs ir_scale when forward.ir_drop > 0.")
    recorded = torch.is_grad_enabled() and (x.requires_grad or kernels.weight.requires_grad)
    with torch.no_grad():
        x_q = x.detach().clone() if recorded else x
        x_q = quantize(
            x_q, quantization_step(forward.inp_res, forward.inp_bound), forward.inp_bound
        )
        z = F.conv2d(x_q, kernels.weight.detach(), **options)  # (batch, tiles * out, H_out, W_out)
        shape = (z.shape[0], tiles, -1, *z.shape[2:])  # (batch, tiles, out, H_out, W_out)
        z_ir = abs_x_prod = x2_prod = None
        if kernels.magnitude is not None:
            x_c = x_q.to(kernels.magnitude.dtype)  # x_q itself when the dtypes agree
            if kernels.ir_weighted is not None:
                z_ir = F.conv2d(x_c, kernels.ir_weighted, **options).view(shape)
                abs_x_prod = F.conv2d(x_c.abs(), kernels.magnitude, **options).view(shape)
            if forward.w_noise > 0:
                x2_prod = F.conv2d(x_c * x_c, kernels.magnitude, **options).view(shape)
        noisy = _finish(
            z.view(shape), z_ir, abs_x_prod, x2_prod, None, forward, ir_scale, generator
        )
    if not recorded:
        return noisy
    # Straight-through: the value of the noisy forward, the gradients of the ideal product of
    # the unquantised input (as analog_mvm's backward), no input gradient at the ADC bound.
    out: Tensor = _StraightThroughConv.apply(
        x, kernels.weight, noisy, gradient_mask(noisy, forward), options
    )
    return out


class _StraightThroughConv(torch.autograd.Function):
    """The value of a noisy grouped convolution, the gradients of the ideal one.

    The input gradient is that of ``conv2d(x, weight)`` with the output gradient zeroed where
    ``mask`` is False (outputs at the ADC bound); the weight gradient is unmasked (aihwkit).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        noisy: Tensor,
        mask: Tensor | None,
        options: dict[str, Any],
    ) -> Tensor:
        ctx.save_for_backward(x, weight, mask)
        ctx.options = options
        return noisy.view_as(noisy)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, mask = ctx.saved_tensors
        o = ctx.options
        conv_args = (None, o["stride"], o["padding"], o["dilation"], False, [0, 0], o["groups"])
        grad_x = grad_w = None
        # (batch, tiles, out, H_out, W_out) -> (batch, tiles * out, H_out, W_out)
        if ctx.needs_input_grad[1]:
            flat = grad.reshape(grad.shape[0], -1, *grad.shape[3:])
            grad_w = torch.ops.aten.convolution_backward(
                flat, x, weight, *conv_args, [False, True, False]
            )[1]
        if ctx.needs_input_grad[0]:
            masked = grad if mask is None else grad * mask
            flat = masked.reshape(grad.shape[0], -1, *grad.shape[3:])
            grad_x = torch.ops.aten.convolution_backward(
                flat, x, weight, *conv_args, [True, False, False]
            )[0]
        return grad_x, grad_w, None, None, None
