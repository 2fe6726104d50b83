"""Stochastic pulse trains: how an outer-product update becomes device pulses.

The SGD update of a crossbar, ``W <- W - lr * delta x^T``, is done in memory by firing a
stochastic pulse train of length BL on every row (input x_j) and every column (error delta_i):
a device receives one pulse per coincidence of a row pulse and a column pulse, in the
direction of ``-sign(x_j) sign(delta_i)``. Row j fires in each slot with probability
``p_x = B |x_j|``, column i with ``p_d = A |delta_i|``, so the expected number of pulses is
``BL A B |x_j delta_i|``. The rules that choose BL, A and B (aihwkit's):

* ``BL = desired_bl`` and ``A = B = sqrt(lr / (dw_min BL))`` (so the expected count is
  ``lr |x delta| / dw_min``, the SGD step in units of pulses);
* update BL management: ``k = lr max|x| um_grad_scale max|delta| / dw_min`` is the largest
  expected count; ``BL = min(ceil(k), desired_bl)`` (no pulses when k = 0);
* update management: if ``k > BL`` delta is scaled by ``BL / k`` (the update is clipped);
  then ``A *= sqrt(x_max / d_max)`` and ``B *= sqrt(d_max / x_max)``, so that the largest x
  and the largest delta fire with probability 1 when k = BL.

Modes (``pulse_type``): ``"stochastic_compressed"`` (one Bernoulli train per row and column,
shared by all devices of that row or column, so coincidences are correlated as in hardware),
``"stochastic"`` (two passes with independent trains, one for the up and one for the down
pulses, as aihwkit's CPU-only mode; within one sample all pulses of a device share one sign, so
each device's count has the same distribution, only the correlations between devices of one
row whose pulses differ in sign change), ``"mean_count"`` (the expected count, rounded to the
nearest integer) and ``"none"`` (the floating-point update, for reference).

References:
    Gokmen & Vlasov 2016; aihwkit's pulsed update; ``docs/devices.md#pulse-trains``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = [
    "PULSE_TYPES",
    "PulseTrainParameters",
    "bit_line_parameters",
    "expected_counts",
    "pulse_counts",
]

#: Supported ``pulse_type`` values.
PULSE_TYPES = ("stochastic_compressed", "stochastic", "mean_count", "none")


@dataclass(frozen=True)
class PulseTrainParameters:
    """How updates are turned into pulse trains (aihwkit's ``UpdateParameters`` names).

    Attributes:
        desired_bl: Longest pulse train (bit-line length), >= 1.
        update_bl_management: Shorten the train to the largest expected count.
        update_management: Balance A and B and clip the update to BL pulses.
        um_grad_scale: Scale of delta in the BL-management estimate.
        pulse_type: One of :data:`PULSE_TYPES`.
    """

    _name: ClassVar[str] = "update"

    desired_bl: int = 31
    update_bl_management: bool = True
    update_management: bool = True
    um_grad_scale: float = 1.0
    pulse_type: str = "stochastic_compressed"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.desired_bl, int)
            or isinstance(self.desired_bl, bool)
            or (self.desired_bl < 1)
        ):
            raise ValueError(
                f"update.desired_bl = {self.desired_bl!r} is not allowed: expected an integer >= 1."
            )
        if self.pulse_type not in PULSE_TYPES:
            raise ValueError(
                f"update.pulse_type = {self.pulse_type!r} is not allowed: expected one of "
                f"{PULSE_TYPES}."
            )
        if not (isinstance(self.um_grad_scale, (int, float)) and self.um_grad_scale > 0):
            raise ValueError(
                f"update.um_grad_scale = {self.um_grad_scale!r} is not allowed: expected > 0."
            )


def bit_line_parameters(
    x: Tensor, d: Tensor, lr: float, dw_min: float, params: PulseTrainParameters
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample train length and pulse probabilities.

    Args:
        x: Inputs ``(..., batch, n_in)`` (leading dims: independent arrays such as tiles).
        d: Errors ``(..., batch, n_out)``.
        lr: Learning rate (> 0).
        dw_min: Mean step of one pulse.
        params: The rules.

    Returns:
        ``(bl, p_x, p_d, d_scale)``: train lengths ``(..., batch)`` (int64, 0 where nothing is
        updated), row probabilities ``(..., batch, n_in)``, column probabilities
        ``(..., batch, n_out)`` (both clamped to [0, 1]) and the factor applied to delta by
        update management ``(..., batch)``.
    """
    x_max = x.abs().amax(dim=-1)  # (..., batch)
    d_max = d.abs().amax(dim=-1)  # (..., batch)
    k = lr * x_max * params.um_grad_scale * d_max / dw_min  # largest expected count
    if params.update_bl_management:
        bl = torch.clamp(torch.ceil(k), max=params.desired_bl)
    else:
        bl = torch.full_like(k, float(params.desired_bl))
    bl = torch.where(k > 0, bl, torch.zeros_like(bl))
    safe_bl = bl.clamp(min=1)
    a = torch.sqrt(lr / (dw_min * safe_bl))
    b = a.clone()
    d_scale = torch.ones_like(k)
    if params.update_management:
        d_scale = torch.where(k > safe_bl, safe_bl / k.clamp(min=1e-30), d_scale)
        ratio = torch.sqrt(x_max / (d_max * d_scale).clamp(min=1e-30))
        a = a * ratio
        b = b / ratio.clamp(min=1e-30)
    p_x = (b[..., None] * x.abs()).clamp(max=1.0)  # (..., batch, n_in)
    p_d = (a[..., None] * (d.abs() * d_scale[..., None])).clamp(max=1.0)  # (..., batch, n_out)
    return bl.to(torch.int64), p_x, p_d, d_scale


def pulse_counts(
    x: Tensor,
    d: Tensor,
    lr: float,
    dw_min: float,
    params: PulseTrainParameters,
    generator: torch.Generator | None = None,
    aggregate: str = "sample",
) -> Tensor:
    """Signed pulse counts of ``W <- W - lr d x^T`` (> 0: up pulses).

    Args:
        x: Inputs ``(..., batch, n_in)``; leading dims are independent arrays (tiles), each
            with its own trains and update management.
        d: Errors ``(..., batch, n_out)``.
        lr: Learning rate.
        dw_min: Mean step of one pulse of the device.
        params: Train rules and ``pulse_type`` (not ``"none"``: that update is not in pulses).
        generator: Source of the Bernoulli trains.
        aggregate: ``"sample"``: signed counts ``(..., batch, n_out, n_in)``, one update per
            sample in order; ``"batch"``: the up and the down pulses of the whole batch kept
            apart, ``(2, ..., n_out, n_in)`` (both >= 0; netting them would hide the device's
            asymmetry, which acts on every pulse). The batch counts come from two matrix
            products over all slots of all samples (signed and unsigned firings), equal to
            the sums of the per-sample counts without forming them.

    Returns:
        Integer counts (int64) of the shape described under ``aggregate``.
    """
    if params.pulse_type == "none":
        raise ValueError("pulse_type 'none' is a floating-point update, not pulses.")
    if aggregate not in ("sample", "batch"):
        raise ValueError(f"aggregate = {aggregate!r} is not allowed: expected 'sample' or 'batch'.")
    if not (lr > 0 and dw_min > 0):
        raise ValueError(f"lr = {lr!r}, dw_min = {dw_min!r} are not allowed: expected > 0.")
    bl, p_x, p_d, _ = bit_line_parameters(x, d, lr, dw_min, params)
    sign_x, sign_d = torch.sign(x), torch.sign(d)
    if params.pulse_type == "mean_count":
        expected = bl[..., None, None] * p_d[..., :, None] * p_x[..., None, :]
        counts = torch.round(expected).to(torch.int64)
        signed = -(sign_d[..., :, None] * sign_x[..., None, :]).to(torch.int64) * counts
        if aggregate == "batch":
            return torch.stack([signed.clamp(min=0).sum(-3), (-signed).clamp(min=0).sum(-3)])
        return signed
    max_bl = int(bl.max().item()) if bl.numel() else 0
    slots = torch.arange(max_bl, device=x.device) < bl[..., None]  # (..., batch, BL) in use

    def trains() -> tuple[Tensor, Tensor]:
        # (..., batch, BL, n): signed firing of each row / column in each slot
        lead = x.shape[:-1]  # (..., batch)
        u_x = torch.rand((*lead, max_bl, x.shape[-1]), generator=generator, device=x.device)
        u_d = torch.rand((*lead, max_bl, d.shape[-1]), generator=generator, device=x.device)
        fire_x = ((u_x < p_x[..., None, :]) & slots[..., None]).to(x.dtype) * sign_x[..., None, :]
        fire_d = ((u_d < p_d[..., None, :]) & slots[..., None]).to(x.dtype) * sign_d[..., None, :]
        if aggregate == "sample":
            return fire_x, fire_d.transpose(-1, -2)  # (..., batch, n_out, BL)
        # the batch form takes all slots of all samples at once
        return fire_x.flatten(-3, -2), fire_d.flatten(-3, -2).transpose(-1, -2)

    def up_and_down(fire_x: Tensor, fire_d: Tensor) -> tuple[Tensor, Tensor]:
        # the signed product counts same-sign coincidences (down pulses) minus opposite-sign
        # ones (up pulses), the unsigned product both
        signed = torch.matmul(fire_d, fire_x)
        total = torch.matmul(fire_d.abs(), fire_x.abs())
        up = torch.round((total - signed) / 2).to(torch.int64)
        return up, torch.round(total).to(torch.int64) - up

    up, down = up_and_down(*trains())
    if params.pulse_type == "stochastic":
        # a second pass with fresh trains delivers the down pulses
        down = up_and_down(*trains())[1]
    if aggregate == "sample":
        return up - down  # (..., batch, n_out, n_in)
    return torch.stack([up, down])  # (2, ..., n_out, n_in)


def expected_counts(x: Tensor, d: Tensor, lr: float, dw_min: float) -> Tensor:
    """``-lr d x^T / dw_min`` per sample ``(batch, n_out, n_in)``: the unclipped mean."""
    return -lr * d[:, :, None] * x[:, None, :] / dw_min
