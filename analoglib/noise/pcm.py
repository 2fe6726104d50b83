"""PCM statistical model: programming noise, drift and accumulated 1/f read noise.

All conductances are in microsiemens (uS), times in seconds. Every random draw takes an explicit
``torch.Generator``; nothing here touches the global RNG.

References:
    S. R. Nandakumar et al., ICECS 2019 (PCM model calibrated on a 1-million-device array);
    Rasch et al. 2023; ``docs/model.md#pcm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from analoglib.config import PCMNoiseParameters
from analoglib.random import normal

__all__ = ["PCMNoiseModel"]

# Drift-exponent statistics (``docs/model.md#drift``): mu/sigma = a * ln(g_rel) + b, then clipped.
_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # slope, offset, lower clip, upper clip
_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
# 1/f read noise (``docs/model.md#read-noise``): Q_s = min(0.0088 / max(g_rel**0.65, 1e-3), 0.2).
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
        ``docs/model.md#pcm``.
    """

    def __init__(self, params: PCMNoiseParameters | None = None) -> None:
        self.params = params if params is not None else PCMNoiseParameters()

    def __repr__(self) -> str:
        p = self.params
        return (
            f"PCMNoiseModel(g_max_uS={p.g_max_uS}, t0_s={p.t0_s}, prog_noise_scale="
            f"{p.prog_noise_scale}, drift_scale={p.drift_scale}, "
            f"read_noise_scale={p.read_noise_scale}"
            + (
                f", stuck_fraction={p.stuck_fraction}, stuck_kind={p.stuck_kind!r})"
                if p.stuck_fraction
                else ")"
            )
        )

    # -- differential pair ------------------------------------------------------------------
    def weight_to_conductance(self, weight: Tensor, wmax: Tensor) -> tuple[Tensor, Tensor]:
        """Map weights onto differential pairs: target conductances of both devices.

        Args:
            weight: Normalised weights, any shape.
            wmax: Abs-max weight per tile, broadcastable to ``weight``; it maps to ``g_max``.

        Returns:
            ``(g_target, scale)``: ``g_target[0]`` is G+ and ``g_target[1]`` is G- (uS), shape
            ``(2, *weight.shape)``; ``scale`` is the conductance per weight unit, so that
            ``weight = (g_target[0] - g_target[1]) / scale`` up to clipping.

        References:
            ``docs/model.md#differential-pair``.
        """
        p = self.params
        g_span = p.g_max_uS - p.g_min_uS
        scale = g_span / wmax.clamp(min=1e-7)
        g_target = torch.empty((2, *weight.shape), device=weight.device, dtype=weight.dtype)
        torch.mul(weight, scale, out=g_target[0])
        torch.neg(g_target[0], out=g_target[1])
        g_target.clamp_(0.0, g_span)
        if p.g_min_uS:
            g_target.add_(p.g_min_uS)
        return g_target, scale

    def net_weight_pair(
        self, g_prog_uS: Tensor, g_scale: Tensor, tile_max: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Re-split a programmed pair onto one device per sign (``pair_model="net_weight"``).

        The net programmed weight ``w = (G+ - G-) / g_scale`` is rescaled so that the largest
        |w| of each tile maps to ``g_max`` and mapped with :meth:`weight_to_conductance`: the
        weight sits on one device, the other is at ``g_min``. The weight is unchanged (up to
        rounding); the conductances that carry it, and hence its drift and read noise, are not.

        Args:
            g_prog_uS: Programmed pair ``(2, *shape)`` in uS.
            g_scale: Conductance per weight unit of the programming, broadcastable to
                ``shape``.
            tile_max: Maps ``|w|`` (``shape``) to the abs-max of each weight's tile,
                broadcastable to ``shape``.

        Returns:
            ``(g_pair, scale)`` as :meth:`weight_to_conductance` returns them.

        References:
            ``docs/model.md#pair-model``, ``docs/aihwkit.md#differences``.
        """
        weight = (g_prog_uS[0] - g_prog_uS[1]).div_(g_scale)
        return self.weight_to_conductance(weight, tile_max(weight.abs()))

    # -- statistics (deterministic) ---------------------------------------------------------
    def prog_noise_std(self, g_target_uS: Tensor) -> Tensor:
        """Programming-noise standard deviation sigma_prog(g_T) in uS (before the scale knob).

        ``sigma = (c0 + c1 g + c2 g^2) * g_max / g_max_ref`` with ``g = g_T / g_max``.
        """
        return self._prog_sigma(g_target_uS, 1.0)

    def _prog_sigma(self, g_target_uS: Tensor, scale: float) -> Tensor:
        # The polynomial in g_T (uS) with every constant folded in: one allocation, 4 passes.
        p = self.params
        c0, c1, c2 = p.prog_coeff
        k = scale * p.g_max_uS / p.prog_coeff_g_max_reference_uS
        a1, a2 = c1 * k / p.g_max_uS, c2 * k / p.g_max_uS**2
        return g_target_uS.mul(a2).add_(a1).mul_(g_target_uS).add_(c0 * k)

    def drift_nu_mean_std(self, g_target_uS: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and spread of the drift exponent for target conductances >= 0 (clipped).

        ``mu = clip(-0.0155 ln g + 0.0244, 0.049, 0.1)``,
        ``sigma = clip(-0.0125 ln g - 0.0059, 0.008, 0.045)``, ``g = max(g_T / g_max, 1e-7)``.
        """
        g_max = self.params.g_max_uS
        # ln(g_T / g_max) = ln(g_T) - ln(g_max): fold the division into the offsets.
        log_g = g_target_uS.clamp(min=_G_REL_FLOOR * g_max).log_()
        log_g_max = math.log(g_max)
        mean = log_g.mul(_NU_MEAN[0]).add_(_NU_MEAN[1] - _NU_MEAN[0] * log_g_max)
        mean.clamp_(_NU_MEAN[2], _NU_MEAN[3])
        std = log_g.mul_(_NU_STD[0]).add_(_NU_STD[1] - _NU_STD[0] * log_g_max)
        return mean, std.clamp_(_NU_STD[2], _NU_STD[3])

    def read_noise_qs(self, g_prog_uS: Tensor) -> Tensor:
        """1/f read-noise coefficient ``Q_s = min(0.0088 / max(g^0.65, 1e-3), 0.2)``, g = g/g_max.

        Args:
            g_prog_uS: Programmed conductances (uS), >= 0.
        """
        return self._qs(g_prog_uS, 1.0)

    def _qs(self, g_prog_uS: Tensor, scale: float) -> Tensor:
        # 0.0088 / max(g^0.65, 1e-3) capped at 0.2 equals min(0.0088 g^-0.65, 0.2) because
        # 0.0088 / 1e-3 > 0.2; g = 0 gives inf, capped to 0.2. Constants folded: 3 passes.
        factor = _QS_COEFF * self.params.g_max_uS**_QS_EXPONENT * scale
        return g_prog_uS.pow(-_QS_EXPONENT).mul_(factor).clamp_(max=_QS_MAX * scale)

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
        noise = normal(g_target_uS.shape, generator, g_target_uS.device, g_target_uS.dtype)
        sigma = self._prog_sigma(g_target_uS, self.params.prog_noise_scale)
        return torch.addcmul(g_target_uS, noise, sigma).clamp_(min=0.0)

    def apply_stuck_devices(
        self, g_prog_uS: Tensor, g_target_uS: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Make a random fraction of the devices stuck (defective), at programming time.

        Each device is stuck independently with probability ``stuck_fraction``. A stuck device
        ignores programming: its programmed conductance is the stuck value exactly (0 uS for
        ``"reset"``, ``g_max`` for ``"g_max"``, uniform in [0, g_max] for ``"random"``). Its
        state for the drift exponent is also the stuck value, so after programming it behaves
        as any PCM device at that conductance (drift from :meth:`generate_drift_coefficients`,
        1/f read noise from :meth:`apply_drift_noise`). With ``stuck_fraction = 0`` nothing is
        drawn and the inputs come back unchanged.

        The draws are one uniform number per device (stuck if below ``stuck_fraction``), plus
        one uniform stuck value per device for ``"random"``; their number does not depend on
        the fraction, so two fractions with the same generator give nested sets of stuck
        devices.

        Args:
            g_prog_uS: Programmed conductances (uS), any shape.
            g_target_uS: Target conductances (uS), same shape.
            generator: Source of the draws (the programming generator).

        Returns:
            ``(g_prog, g_state, stuck)``: programmed conductances with the stuck values in
            place, the conductances from which drift exponents are drawn (the target, or the
            stuck value), and the boolean mask of stuck devices.

        References:
            Rasch et al. 2023 (stuck-at-zero, g_max and random faults); ``docs/model.md#hwa-noise``
            (PCM_NOISE step 2), ``docs/published-results.md#rasch-2023``.
        """
        p = self.params
        if p.stuck_fraction == 0:
            return g_prog_uS, g_target_uS, torch.zeros_like(g_prog_uS, dtype=torch.bool)
        shape, device, dtype = g_prog_uS.shape, g_prog_uS.device, g_prog_uS.dtype
        stuck = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        stuck = stuck < p.stuck_fraction
        value: Tensor | float
        if p.stuck_kind == "reset":
            value = 0.0
        elif p.stuck_kind == "g_max":
            value = p.g_max_uS
        else:  # "random"
            value = torch.rand(shape, generator=generator, device=device, dtype=dtype)
            value.mul_(p.g_max_uS)
        value_t = torch.as_tensor(value, device=device, dtype=dtype)
        g_prog = torch.where(stuck, value_t, g_prog_uS)
        g_state = torch.where(stuck, value_t, g_target_uS)
        return g_prog, g_state, stuck

    def generate_drift_coefficients(
        self, g_target_uS: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Drift exponents ``nu = |mu(g_T) + sigma(g_T) * xi| * drift_scale`` (one per device)."""
        noise = normal(g_target_uS.shape, generator, g_target_uS.device, g_target_uS.dtype)
        mean, std = self.drift_nu_mean_std(g_target_uS)
        nu = mean.addcmul_(noise, std).abs_()
        return nu if self.params.drift_scale == 1.0 else nu.mul_(self.params.drift_scale)

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
            g_prog_uS: Programmed conductances (uS), >= 0.
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
        if log_t > 0:
            g = nu.to(g_prog_uS.dtype, copy=True).mul_(-log_t).exp_().mul_(g_prog_uS)
        else:
            g = g_prog_uS.clone()
        scale = self.params.read_noise_scale * self.read_noise_time_factor(t_inference_s)
        if scale > 0:
            # g >= 0 here, so g + |g| * q * xi = g * (1 + q * xi).
            noise = normal(g.shape, generator, g.device, g.dtype)
            g.mul_(noise.mul_(self._qs(g_prog_uS, scale)).add_(1.0)).clamp_(min=0.0)
        return g

    def apply_noise(
        self, weight: Tensor, t_inference_s: float, generator: torch.Generator
    ) -> Tensor:
        """Programming noise, stuck devices, fresh drift exponents, drift and read noise at once.

        With ``pair_model="net_weight"`` the programmed pair is re-split (:meth:`net_weight_pair`)
        before drift and read noise.

        Args:
            weight: Normalised weights of one tile (abs-max maps to ``g_max``).
            t_inference_s: Seconds after programming.
            generator: Source of every draw.

        Returns:
            The noisy weights in the same units as ``weight``.
        """
        g_target, scale = self.weight_to_conductance(weight, weight.abs().max())
        g_prog = self.apply_programming_noise(g_target, generator)
        g_prog, g_state, _ = self.apply_stuck_devices(g_prog, g_target, generator)
        nu = self.generate_drift_coefficients(g_state, generator)
        if self.params.pair_model == "net_weight":
            g_prog, scale = self.net_weight_pair(g_prog, scale, lambda w: w.max())
        g = self.apply_drift_noise(g_prog, nu, t_inference_s, generator)
        return (g[0] - g[1]) / scale
