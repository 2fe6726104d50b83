"""Response-function (theory-level) analog updates: Analog SGD and Tiki-Taka without pulses.

A device whose up and down steps at weight w are ``q_plus(w)`` and ``q_minus(w)`` (in units of
the requested change) turns a requested update Delta into

    W <- W + Delta * F(W) - |Delta| * G(W),
    F = (q_minus + q_plus) / 2,  G = (q_minus - q_plus) / 2

(element-wise). For soft bounds symmetric about 0 with bounds +-tau, ``q_plus = 1 - w/tau`` and
``q_minus = 1 + w/tau``, so F = 1 and G = w/tau: ``W <- W + Delta - |Delta| * W / tau``. The
``|Delta| G(W)`` term pulls every weight toward the symmetric point (G = 0) in proportion to
the size of the updates, which is why Analog SGD with noisy gradients settles away from the
optimum (the asymmetry floor) and Tiki-Taka, which keeps its fast array near the symmetric
point, does not. As tau grows the update becomes digital SGD exactly.

References:
    Wu, Gokmen et al. 2024/2025 (response-function analysis of analog training); Gokmen &
    Haensch 2020 (Tiki-Taka); ``docs/devices.md#response-functions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "analog_update",
    "expected_abs_normal",
    "soft_bounds_floor",
    "soft_bounds_update",
    "tiki_taka_step",
]


def analog_update(
    w: Tensor,
    delta: Tensor,
    q_plus: Callable[[Tensor], Tensor],
    q_minus: Callable[[Tensor], Tensor],
) -> Tensor:
    """``W + Delta * F(W) - |Delta| * G(W)`` for response functions ``q_plus``, ``q_minus``."""
    up, down = q_plus(w), q_minus(w)
    return w + delta * (down + up) / 2 - delta.abs() * (down - up) / 2


def soft_bounds_update(w: Tensor, delta: Tensor, tau: float) -> Tensor:
    """Symmetric soft bounds at +-tau: ``W + Delta - |Delta| * W / tau`` (tau = inf: SGD).

    Raises:
        ValueError: If ``tau`` is not > 0.
    """
    if not tau > 0:
        raise ValueError(f"tau = {tau!r} is not allowed: expected a bound > 0 (inf for SGD).")
    if math.isinf(tau):
        return w + delta
    return w + delta - delta.abs() * w / tau


def tiki_taka_step(
    fast: Tensor,
    slow: Tensor,
    gradient: Tensor,
    lr: float,
    transfer_lr: float,
    tau: float,
) -> tuple[Tensor, Tensor]:
    """One Tiki-Taka step at the response level (both arrays soft-bounded at +-tau).

    The fast array A receives the gradient step ``-lr * gradient`` (the gradient is taken at
    the weights the network uses, the slow array C), then C receives ``transfer_lr * A``.

    Returns:
        ``(A, C)`` after the step.
    """
    fast = soft_bounds_update(fast, -lr * gradient, tau)
    slow = soft_bounds_update(slow, transfer_lr * fast, tau)
    return fast, slow


def expected_abs_normal(mean: Tensor, std: float) -> Tensor:
    """``E|mean + std * xi|`` for standard normal xi (the folded-normal mean)."""
    if std <= 0:
        return mean.abs()
    z = mean / std
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return std * 2 * pdf + mean * (2 * cdf - 1)


def soft_bounds_floor(
    target: Tensor, noise_std: float, tau: float, iterations: int = 200
) -> Tensor:
    """Where Analog SGD on soft bounds settles for ``|w - target|^2 / 2`` with noisy gradients.

    The expected update vanishes where ``(w - w*) + E|w - w* + sigma xi| * w / tau = 0``; it is
    solved per coordinate by bisection between w* and 0 (the solution lies between them: the
    drift toward the symmetric point 0 balances the pull toward w*).

    Args:
        target: The optimum w*.
        noise_std: Standard deviation sigma of the gradient noise.
        tau: Soft bound.
        iterations: Bisection steps.

    Returns:
        The stationary weights, the shape of ``target``.
    """
    lo = torch.minimum(target, torch.zeros_like(target))
    hi = torch.maximum(target, torch.zeros_like(target))

    def residual(w: Tensor) -> Tensor:
        return (w - target) + expected_abs_normal(w - target, noise_std) * w / tau

    # residual is increasing in w on [lo, hi], negative at lo and positive at hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        positive = residual(mid) > 0
        hi = torch.where(positive, mid, hi)
        lo = torch.where(positive, lo, mid)
    return (lo + hi) / 2
