"""The weight-noise modifier of hardware-aware training: one noise draw per forward call.

During HWA training the forward pass sees the normalised weights with noise added, so the
network learns weights that tolerate the crossbar's programming and read noise. The types
follow aihwkit's ``WeightModifierType``: ``add_normal`` and ``mult_normal`` (Gaussian noise
relative to the abs-max ``a`` of the tile), ``prog_noise`` (the PCM programming-noise
polynomial) and ``pcm_noise`` (programming noise, drift variation and accumulated 1/f read
noise of the PCM model), each optionally with ``pdrop`` (weights set to 0 at random). The noise
is straight-through: the gradient flows to the clean weights.

References:
    Rasch et al. 2023; ``docs/model.md#hwa-noise``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from analoglib.config import WeightModifierParameters
from analoglib.noise.pcm import PCMNoiseModel
from analoglib.random import normal

__all__ = ["modify_weights", "weight_noise"]


def modify_weights(
    tiles: Tensor,
    modifier: WeightModifierParameters,
    strength: float,
    noise_model: PCMNoiseModel,
    generator: torch.Generator,
) -> Tensor:
    """The weights with one draw of the modifier noise, straight-through.

    The noise strength is ``modifier.std_dev * strength`` (``strength`` is the training ramp's
    factor, 1 at full strength); ``pdrop`` is not ramped.

    Args:
        tiles: Normalised weights ``(tiles, out, rows)``.
        modifier: The ``modifier`` config group.
        strength: Ramp factor >= 0 on ``modifier.std_dev``.
        noise_model: The layer's PCM model (``pcm_noise`` takes its statistics and read time).
        generator: Source of every draw.

    Returns:
        ``tiles`` plus the (detached) noise: the value is noisy, the gradient is the identity.
    """
    if modifier.type == "none" and modifier.pdrop == 0:
        return tiles
    std_dev = modifier.std_dev * strength
    with torch.no_grad():
        if modifier.rel_to_actual_wmax:
            wmax = tiles.abs().amax(dim=(1, 2), keepdim=True)  # (tiles, 1, 1)
            wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
        else:
            wmax = torch.full_like(tiles[:, :1, :1], modifier.assumed_wmax)
        noisy = tiles.detach().clone()  # (tiles, out, rows)
        if modifier.type != "none" and std_dev > 0:
            noisy = weight_noise(noisy, wmax, std_dev, modifier, noise_model, generator)
        if modifier.pdrop > 0:
            keep = torch.rand(
                tiles.shape, generator=generator, device=tiles.device, dtype=tiles.dtype
            )
            noisy.mul_(keep >= modifier.pdrop)
    return tiles + (noisy - tiles).detach()


def weight_noise(
    w: Tensor,
    wmax: Tensor,
    std_dev: float,
    modifier: WeightModifierParameters,
    noise_model: PCMNoiseModel,
    generator: torch.Generator,
) -> Tensor:
    """One draw of the modifier noise on ``w`` ``(tiles, out, rows)`` (may work in place).

    Args:
        w: Normalised weights ``(tiles, out, rows)``; overwritten.
        wmax: The abs-max ``a`` per tile, ``(tiles, 1, 1)``.
        std_dev: Noise strength (the ramped ``modifier.std_dev``).
        modifier: The ``modifier`` config group (type, coefficients, ``g_max_uS``, PCM times).
        noise_model: PCM statistics of ``pcm_noise``: drift-exponent spread, read-noise
            amplitude and the read time ``t_read_s`` of the 1/f factor.
        generator: Source of every draw.

    Returns:
        The noisy weights.
    """
    xi = normal(w.shape, generator, w.device, w.dtype)  # (tiles, out, rows)
    if modifier.type == "add_normal":
        return w.add_(xi.mul_(wmax * std_dev))
    if modifier.type == "mult_normal":
        return w.add_(xi.mul_(wmax * std_dev).mul_(w))
    c0, c1, c2 = modifier.coeffs
    if modifier.type == "prog_noise":
        rel = w.abs() / wmax  # |w| / a
        sigma = (rel * c2 + c1).mul_(rel).add_(c0).mul_(std_dev / modifier.g_max_uS)
        # sign kept, reflected at 0: sign(w) * |w + a * sigma * xi|
        return w.sign().mul_(w.add(xi.mul_(sigma).mul_(wmax)).abs_())
    # pcm_noise: programming noise, drift variation (no mean drift), 1/f read noise in uS.
    g_max = modifier.g_max_uS
    sign = w.sign()  # zero weights stay exactly 0
    g = torch.minimum(w.abs(), wmax).mul_(g_max / wmax)  # |g| in uS
    rel = g / g_max
    sigma_prog = (rel * c2 + c1).mul_(rel).add_(c0).mul_(std_dev)
    g_prog = g.add_(xi.mul_(sigma_prog)).abs_()  # |g_p|
    # The PCM statistics are tabulated for the noise model's g_max: rescale to it.
    g_model = g_prog * (noise_model.params.g_max_uS / g_max)
    t = modifier.pcm_t_inference_s + modifier.pcm_t0_s
    g_out = g_prog
    if t > modifier.pcm_t0_s:
        _, nu_std = noise_model.drift_nu_mean_std(g_model)
        nu = normal(w.shape, generator, w.device, w.dtype).mul_(nu_std).abs_()
        g_out = g_prog * torch.exp(-nu * math.log(t / modifier.pcm_t0_s))
    q_s = noise_model.read_noise_qs(g_model)
    t_read = noise_model.params.t_read_s
    time_factor = math.sqrt(math.log((t + t_read) / (2.0 * t_read)))
    read = normal(w.shape, generator, w.device, w.dtype)
    g_final = g_out + read.mul_(q_s).mul_(g_out.abs()).mul_(std_dev * time_factor)
    return sign.mul_(g_final.abs_().mul_(wmax / g_max))
