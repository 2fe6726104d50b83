"""Forward pass of stacked crossbar tiles (steps 3-9 of the reference order).

The functions here see normalised tile inputs (after the digital input range) and normalised
tile weights, stacked as ``(tiles, batch, rows)`` and ``(tiles, out, rows)``; the digital
periphery (input range, column scales, drift compensation, bias) belongs to the layer.

Order per tile: DAC quantisation and clip, MVM, IR drop, short-term PCM read noise, S-shaped
ADC nonlinearity, additive output noise, ADC quantisation and clip. When the nonlinearity is off,
the read noise and the output noise are drawn as one Gaussian of the summed variance, which has
exactly the same distribution as two draws and saves a pass over the outputs.

The backward pass is that of an ideal crossbar (aihwkit's ``is_perfect`` backward): quantisers and
noise pass gradients straight through, and outputs at the ADC bound get no gradient.

References:
    Rasch et al. 2023; ``aimc-model.md`` sections 3.2, 4.3-4.7.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from analoglib.config import ForwardParameters, quantization_step
from analoglib.random import normal

__all__ = ["analog_mvm", "ir_drop_row_weighting", "quantize", "s_nonlinearity"]

# IR-drop polynomial c(a) = a * (a * (0.05 a - 0.2) + 0.5) (aimc-model.md 4.4).
_IR_C3, _IR_C2, _IR_C1 = 0.05, -0.2, 0.5
# Outputs at or above this fraction of the ADC bound receive no gradient (aimc-model.md 4.7).
_BOUND_GRAD_FRACTION = 0.999


def quantize(x: Tensor, step: float | None, bound: float | None) -> Tensor:
    """Round to multiples of ``step`` (half to even), then clip to ``[-bound, bound]``.

    Works in place on ``x`` when it does not require gradients; otherwise returns a new tensor
    with a straight-through gradient.

    Args:
        x: Values in normalised units.
        step: Quantisation step, or ``None`` for no rounding.
        bound: Clip bound, or ``None`` for no clipping.

    References:
        ``aimc-model.md`` section 2 (quantise first, clip second).
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
        ``aimc-model.md`` section 4.4 (row 0 gets weight 0).
    """
    j = torch.arange(rows, dtype=torch.float64)[None, :]
    n = rows_used.to(torch.float64)[:, None]
    weighting = 1.0 - (1.0 - j / n) ** 2
    weighting = torch.where(j < n, weighting, torch.zeros_like(weighting))
    return weighting.unsqueeze(1).to(torch.get_default_dtype())


def s_nonlinearity(z: Tensor, forward: ForwardParameters) -> Tensor:
    """S-shaped ADC nonlinearity ``f^2 z / (1 + |n z|)``, n = out_nonlinearity / out_bound.

    References:
        ``aimc-model.md`` section 4.6.
    """
    assert forward.out_bound is not None  # guaranteed by config validation
    n = forward.out_nonlinearity / forward.out_bound
    f = 1.0 + n * forward.slope_calibration * forward.out_bound
    denominator = z.abs().mul_(n).add_(1.0)  # before z is scaled in place by f^2
    return z.mul_(f * f).div_(denominator)


def _mvm_forward(
    x: Tensor | None,
    weight: Tensor,
    forward: ForwardParameters,
    ir_weighting: Tensor | None,
    ir_scale: Tensor | None,
    generator: torch.Generator | None,
    one_hot: bool,
) -> Tensor:
    """Noisy tile forward without autograd; see :func:`analog_mvm`."""
    batch = weight.shape[2] if x is None else x.shape[1]
    if x is not None:  # one-hot inputs (x is None) of amplitude 1 are exact DAC levels
        inp_step = quantization_step(forward.inp_res, forward.inp_bound)
        x = quantize(x.clone(), inp_step, forward.inp_bound)
    row_weighting = ir_weighting if forward.ir_drop > 0 and ir_scale is not None else None
    use_ir = row_weighting is not None
    pcm_read = forward.w_noise > 0 and forward.w_noise_type == "pcm_read"

    # Signed products: W x and, for IR drop, W x' with x' = x * row weighting.
    if one_hot:  # x is the identity: the products are the weights themselves
        z = weight.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        z_ir = (weight * row_weighting).transpose(1, 2) if row_weighting is not None else None
    elif row_weighting is not None:
        assert x is not None
        signed = torch.bmm(torch.cat([x, x * row_weighting], dim=1), weight.transpose(1, 2))
        z, z_ir = signed[:, :batch], signed[:, batch:]
    else:
        assert x is not None
        z, z_ir = torch.bmm(x, weight.transpose(1, 2)), None  # (tiles, batch, out)

    # Unsigned products with |W|: |W||x| for IR drop and |W| x^2 for PCM read noise.
    abs_x_prod = x2_prod = None
    if use_ir or pcm_read:
        abs_wt = weight.abs().transpose(1, 2)  # (tiles, rows, out)
        if one_hot:
            abs_x_prod = abs_wt if use_ir else None
            x2_prod = abs_wt if pcm_read else None
        else:
            assert x is not None
            parts = ([x.abs()] if use_ir else []) + ([x * x] if pcm_read else [])
            unsigned = torch.bmm(torch.cat(parts, dim=1), abs_wt)
            abs_x_prod = unsigned[:, :batch] if use_ir else None
            x2_prod = unsigned[:, -batch:] if pcm_read else None

    if use_ir:
        assert abs_x_prod is not None and z_ir is not None and ir_scale is not None
        # a = (n / G) sum_j |W_ij||x_j|; c(a) = a (a (0.05 a - 0.2) + 0.5). In one-hot mode
        # abs_x_prod is shared with x2_prod, so it must not be overwritten.
        a = abs_x_prod.mul(ir_scale) if one_hot else abs_x_prod.mul_(ir_scale)
        c = a.mul(_IR_C3).add_(_IR_C2).mul_(a).add_(_IR_C1).mul_(a)
        z.addcmul_(c, z_ir, value=-forward.ir_drop)

    # Output-referred noise variances (fresh tensors, so they can be overwritten).
    weight_var: Tensor | float = 0.0
    if pcm_read:
        assert x2_prod is not None
        w2 = forward.w_noise**2
        weight_var = x2_prod.mul(w2) if one_hot else x2_prod.mul_(w2)
    elif forward.w_noise > 0 and forward.w_noise_type == "additive_constant":
        squared_norm = weight.new_ones(()) if x is None else (x * x).sum(dim=2, keepdim=True)
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
        z = _mvm_forward(x, weight, forward, ir_weighting, ir_scale, generator, one_hot=False)
        ctx.save_for_backward(x, weight)
        ctx.bound_mask = (
            z.abs() < _BOUND_GRAD_FRACTION * forward.out_bound
            if forward.out_bound is not None
            else None
        )
        return z

    @staticmethod
    def backward(ctx: Any, grad_z: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        if ctx.bound_mask is not None:
            grad_z = grad_z * ctx.bound_mask
        grad_x = torch.bmm(grad_z, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad_z.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None, None, None


def analog_mvm(
    x: Tensor | None,
    weight: Tensor,
    forward: ForwardParameters,
    *,
    ir_weighting: Tensor | None = None,
    ir_scale: Tensor | None = None,
    generator: torch.Generator | None = None,
    one_hot: bool = False,
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
        one_hot: The inputs are the one-hot vectors of every row (drift-compensation read-out):
            ``x`` is ignored and the products are read off the weights without GEMMs; the
            result has shape ``(tiles, rows, out)``.

    Returns:
        ``(tiles, batch, out)`` ADC outputs in normalised units.

    References:
        ``aimc-model.md`` sections 3.2 and 4.
    """
    if one_hot:
        if forward.is_perfect:
            return weight.transpose(1, 2).clone(memory_format=torch.contiguous_format)
        with torch.no_grad():
            return _mvm_forward(None, weight, forward, ir_weighting, ir_scale, generator, True)
    assert x is not None
    if forward.is_perfect:
        return torch.bmm(x, weight.transpose(1, 2))
    if forward.ir_drop > 0 and (ir_weighting is None or ir_scale is None):
        raise ValueError("analog_mvm needs ir_weighting and ir_scale when forward.ir_drop > 0.")
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad:
        out: Tensor = _AnalogMVM.apply(x, weight, forward, ir_weighting, ir_scale, generator)
        return out
    with torch.no_grad():
        return _mvm_forward(x, weight, forward, ir_weighting, ir_scale, generator, False)
