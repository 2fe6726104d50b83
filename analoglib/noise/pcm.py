"""PCM statistical model: programming noise, drift and accumulated 1/f read noise.

All conductances are in microsiemens (uS), times in seconds. Every random draw takes an explicit
``torch.Generator``; nothing here touches the global RNG.

References:
    S. R. Nandakumar et al., ICECS 2019 (PCM model calibrated on a 1-million-device array);
    Rasch et al. 2023; ``aimc-model.md`` section 5.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from analoglib.config import PCMNoiseParameters

__all__ = ["PCMNoiseModel"]

# Drift-exponent statistics (aimc-model.md 5.3): mu/sigma = a * ln(g_rel) + b, then clipped.
_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # slope, offset, lower clip, upper clip
_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
# 1/f read noise (aimc-model.md 5.4): Q_s = min(0.0088 / max(g_rel**0.65, 1e-3), 0.2).
_QS_COEFF, _QS_EXPONENT, _QS_FLOOR, _QS_MAX = 0.0088, 0.65, 1e-3, 0.2
_G_REL_FLOOR = 1e-7


class PCMNoiseModel:
    """Statistical PCM device model (aihwkit's ``PCMLikeNoiseModel``).

    Args:
        params: The ``noise_model`` config group; defaults to the standard model.

    Example:
        >>> model = PCMNoiseModel()
        >>> gen = torch.Generator().manual_seed(0)
        >>> g_prog = model.apply_programming_noise(torch.full((4,), 12.5), gen)

    References:
        ``aimc-model.md`` sections 5.1-5.4.
    """

    def __init__(self, params: PCMNoiseParameters | None = None) -> None:
        self.params = params if params is not None else PCMNoiseParameters()

    def __repr__(self) -> str:
        p = self.params
        return (
            f"PCMNoiseModel(g_max_uS={p.g_max_uS}, t0_s={p.t0_s}, prog_noise_scale="
            f"{p.prog_noise_scale}, drift_scale={p.drift_scale}, "
            f"read_noise_scale={p.read_noise_scale})"
        )

    # -- differential pair ------------------------------------------------------------------
    def weight_to_conductance(self, weight: Tensor, wmax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Map weights onto a differential pair ``(g_plus, g_minus)``.

        Args:
            weight: Normalised weights, any shape.
            wmax: Abs-max weight per tile, broadcastable to ``weight``; it maps to ``g_max``.

        Returns:
            ``(g_plus, g_minus, scale)`` in uS and uS per weight unit; ``weight = (g_plus -
            g_minus) / scale`` up to clipping.

        References:
            ``aimc-model.md`` section 5.1.
        """
        p = self.params
        scale = (p.g_max_uS - p.g_min_uS) / wmax.clamp(min=1e-7)
        g_span = p.g_max_uS - p.g_min_uS
        g_plus = (weight * scale).clamp(0.0, g_span) + p.g_min_uS
        g_minus = (-weight * scale).clamp(0.0, g_span) + p.g_min_uS
        return g_plus, g_minus, scale

    # -- statistics (deterministic) ---------------------------------------------------------
    def prog_noise_std(self, g_target_uS: Tensor) -> Tensor:
        """Programming-noise standard deviation sigma_prog(g_T) in uS (before the scale knob)."""
        p = self.params
        c0, c1, c2 = p.prog_coeff
        g_rel = g_target_uS / p.g_max_uS
        sigma = c0 + c1 * g_rel + c2 * g_rel * g_rel
        return sigma * (p.g_max_uS / p.prog_coeff_g_max_reference_uS)

    def drift_nu_mean_std(self, g_target_uS: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and spread of the drift exponent for a target conductance (clipped)."""
        g_rel = (g_target_uS.abs() / self.params.g_max_uS).clamp(min=_G_REL_FLOOR).log()
        mean = (_NU_MEAN[0] * g_rel + _NU_MEAN[1]).clamp(_NU_MEAN[2], _NU_MEAN[3])
        std = (_NU_STD[0] * g_rel + _NU_STD[1]).clamp(_NU_STD[2], _NU_STD[3])
        return mean, std

    def read_noise_qs(self, g_prog_uS: Tensor) -> Tensor:
        """1/f read-noise coefficient Q_s of a programmed conductance."""
        g_rel = g_prog_uS.abs() / self.params.g_max_uS
        return (_QS_COEFF / g_rel.pow(_QS_EXPONENT).clamp(min=_QS_FLOOR)).clamp(max=_QS_MAX)

    def read_noise_time_factor(self, t_inference_s: float) -> float:
        """sqrt(ln((t + t_read) / (2 t_read))) with t = t_inference + t0."""
        p = self.params
        t = t_inference_s + p.t0_s
        return math.sqrt(math.log((t + p.t_read_s) / (2.0 * p.t_read_s)))

    def drift_time_log(self, t_inference_s: float) -> float:
        """ln(t / t0) with t = t_inference + t0 (0 when there is no drift yet)."""
        p = self.params
        t = t_inference_s + p.t0_s
        return math.log(t / p.t0_s) if t > p.t0_s else 0.0

    # -- random draws -----------------------------------------------------------------------
    def apply_programming_noise(self, g_target_uS: Tensor, generator: torch.Generator) -> Tensor:
        """Programmed conductance ``max(0, g_T + scale * sigma_prog(g_T) * xi)`` in uS."""
        noise = torch.randn(
            g_target_uS.shape, generator=generator, device=g_target_uS.device,
            dtype=g_target_uS.dtype,
        )
        sigma = self.prog_noise_std(g_target_uS).mul_(self.params.prog_noise_scale)
        return noise.mul_(sigma).add_(g_target_uS).clamp_(min=0.0)

    def generate_drift_coefficients(
        self, g_target_uS: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Drift exponents ``nu = |mu(g_T) + sigma(g_T) * xi| * drift_scale`` (one per device)."""
        noise = torch.randn(
            g_target_uS.shape, generator=generator, device=g_target_uS.device,
            dtype=g_target_uS.dtype,
        )
        mean, std = self.drift_nu_mean_std(g_target_uS)
        return noise.mul_(std).add_(mean).abs_().mul_(self.params.drift_scale)

    def apply_drift_noise(
        self,
        g_prog_uS: Tensor,
        nu: Tensor,
        t_inference_s: float,
        generator: torch.Generator,
    ) -> Tensor:
        """Conductance at ``t_inference_s`` after programming: drift, then 1/f read noise.

        ``g_drift = g_prog * (t / t0) ** -nu`` (t = t_inference + t0) and
        ``g = max(0, g_drift + |g_drift| * read_noise_scale * Q_s(g_prog) * sqrt(ln((t +
        t_read) / (2 t_read))) * xi)``.

        Args:
            g_prog_uS: Programmed conductances (uS).
            nu: Drift exponents, same shape (any float dtype).
            t_inference_s: Seconds after programming, >= 0.
            generator: Source of the read-noise draw.

        Returns:
            Conductances in uS, same shape and dtype as ``g_prog_uS``.
        """
        if not math.isfinite(t_inference_s) or t_inference_s < 0:
            raise ValueError(
                f"t_inference_s = {t_inference_s!r} is not allowed: expected a finite time >= 0 s."
            )
        log_t = self.drift_time_log(t_inference_s)
        g = g_prog_uS * nu.to(g_prog_uS.dtype).mul(-log_t).exp_() if log_t > 0 else g_prog_uS.clone()
        scale = self.params.read_noise_scale * self.read_noise_time_factor(t_inference_s)
        if scale > 0:
            noise = torch.randn(
                g.shape, generator=generator, device=g.device, dtype=g.dtype
            )
            noise.mul_(self.read_noise_qs(g_prog_uS)).mul_(g.abs()).mul_(scale)
            g.add_(noise).clamp_(min=0.0)
        return g

    def apply_noise(
        self, weight: Tensor, t_inference_s: float, generator: torch.Generator
    ) -> Tensor:
        """Programming noise, fresh drift exponents, drift and read noise in one go.

        Args:
            weight: Normalised weights of one tile (abs-max maps to ``g_max``).
            t_inference_s: Seconds after programming.
            generator: Source of every draw.

        Returns:
            The noisy weights in the same units as ``weight``.
        """
        wmax = weight.abs().max()
        g_plus, g_minus, scale = self.weight_to_conductance(weight, wmax)
        result = []
        for g_target in (g_plus, g_minus):
            g_prog = self.apply_programming_noise(g_target, generator)
            nu = self.generate_drift_coefficients(g_target, generator)
            result.append(self.apply_drift_noise(g_prog, nu, t_inference_s, generator))
        return (result[0] - result[1]) / scale
