"""Fit a soft-bounds device to a measured pulse trace.

The trace is the weight before and after every pulse of a known sequence, e.g. aihwkit's
tutorial sequence of 200 up, 200 down and 100 alternating pulses. The model is a
:class:`~analoglib.devices.pulsed.SoftBoundsDevice` without spread, whose noise-free response
from the trace's first point is ``w + s_up (1 - w / w_max)`` per up pulse and
``w - s_down (1 - w / w_min)`` per down pulse. Two stages:

1. per direction, a linear regression of the one-pulse changes on w gives ``s`` and the bound
   (the change is affine in w), the starting point;
2. a bounded least-squares fit of the whole simulated trajectory to the trace (what aihwkit's
   ``fit_measurements`` does with lmfit) refines ``s_up``, ``s_down``, ``w_max``, ``w_min``.

The steps map to aihwkit's fields as in ``sample_device_state``: ``dw_min`` is the larger
step and ``up_down`` = ``1 - s_down / s_up`` (up larger) or ``s_up / s_down - 1``. The
standard deviation of the trace about the fitted trajectory is returned; aihwkit's tutorial
turns it into the write noise (:meth:`SoftBoundsFit.write_noise_std`).

References:
    Le Gallo et al. 2023 (aihwkit tutorial, Sec. V); ``docs/devices.md#device-fit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from analoglib.devices.pulsed import SoftBoundsDevice

__all__ = ["SoftBoundsFit", "fit_soft_bounds", "soft_bounds_trajectory"]


@dataclass(frozen=True)
class SoftBoundsFit:
    """Result of :func:`fit_soft_bounds`.

    Attributes:
        device: The fitted device, without device-to-device or cycle-to-cycle spread.
        residual_std: Standard deviation of the trace about the fitted trajectory (weight
            units).
        trajectory: ``(T + 1,)`` the fitted model's noise-free response.
    """

    device: SoftBoundsDevice
    residual_std: float
    trajectory: Tensor

    def write_noise_std(self, dw_min_std: float) -> float:
        """The write noise aihwkit's tutorial derives from the residual (units of dw_min).

        ``sqrt(r^2 - dw_min_std^2) / 2`` with ``r = residual_std / dw_min``; 0 where the
        residual is smaller than the cycle-to-cycle noise the device is given.
        """
        r = self.residual_std / self.device.dw_min
        return 0.5 * math.sqrt(max(r**2 - dw_min_std**2, 0.0))


def soft_bounds_trajectory(
    w0: float,
    directions: np.ndarray,
    s_up: float,
    s_down: float,
    w_max: float,
    w_min: float,
) -> np.ndarray:
    """Noise-free soft-bounds response ``(T + 1,)`` to ``directions`` (+1, -1, 0) from ``w0``.

    Each step is clipped to ``[w_min, w_max]``, as the device model does.
    """
    out = np.empty(len(directions) + 1)
    w = float(w0)
    out[0] = w
    for k, d in enumerate(directions.tolist()):
        if d > 0:
            w += s_up * (1 - w / w_max)
        elif d < 0:
            w -= s_down * (1 - w / w_min)
        w = min(max(w, w_min), w_max)
        out[k + 1] = w
    return out


def _regression(w: np.ndarray, change: np.ndarray, sign: float, span: float) -> tuple[float, float]:
    """Step at 0 and bound from ``change = sign s (1 - w / bound)`` by least squares."""
    design = np.stack([np.ones_like(w), w], axis=1)  # (n, 2)
    (a, b), *_ = np.linalg.lstsq(design, change, rcond=None)
    step = sign * a
    bound = -a / b if b != 0 else math.nan
    # a trace that never approaches this bound gives a meaningless slope: start far out
    if not (step > 0 and math.isfinite(bound) and sign * bound > 0):
        step = max(abs(float(np.median(np.abs(change)))), 1e-12)
        bound = sign * 2 * span
    return float(step), float(bound)


def fit_soft_bounds(trace_w: Tensor, directions: Tensor) -> SoftBoundsFit:
    """Least-squares fit of dw_min, up_down, w_max, w_min to one device's pulse trace.

    Args:
        trace_w: ``(T + 1,)`` weights before the first and after every pulse (weight units,
            with 0 between the bounds; normalise measured conductances first), e.g. a column
            of :func:`~analoglib.devices.pulsed.pulse_response`.
        directions: ``(T,)`` the pulses, +1 up, -1 down, 0 none; both directions needed.

    Returns:
        The fitted device (no spread; add ``dw_min_std``, write noise and device-to-device
        spread as wanted) and the residual standard deviation.

    Raises:
        ValueError: For shapes that do not match, non-finite weights, or a sequence without
            up or without down pulses.
    """
    trace = np.asarray(torch.as_tensor(trace_w).detach().cpu(), dtype=np.float64)
    pulses = np.sign(np.asarray(torch.as_tensor(directions).detach().cpu(), dtype=np.float64))
    if trace.ndim != 1 or pulses.ndim != 1 or len(trace) != len(pulses) + 1:
        raise ValueError(
            f"trace_w of shape {tuple(trace.shape)} and directions of shape "
            f"{tuple(pulses.shape)} are not allowed: expected (T + 1,) and (T,)."
        )
    if not np.isfinite(trace).all():
        raise ValueError("trace_w with non-finite values is not allowed: expected finite weights.")
    up, down = pulses > 0, pulses < 0
    if not up.any() or not down.any():
        raise ValueError(
            f"directions with {int(up.sum())} up and {int(down.sum())} down pulses are not "
            "allowed: expected both directions."
        )
    before, change = trace[:-1], np.diff(trace)  # (T,) each
    span = float(trace.max() - trace.min()) or 1.0
    s_up, w_max = _regression(before[up], change[up], 1.0, span)
    s_down, w_min = _regression(before[down], change[down], -1.0, span)

    def residuals(p: np.ndarray) -> np.ndarray:
        return soft_bounds_trajectory(trace[0], pulses, *p) - trace

    # positive steps, w_max > 0 > w_min (0 lies between the bounds of a consistent device)
    tiny = 1e-9 * span
    lower = np.array([tiny, tiny, tiny, -np.inf])
    upper = np.array([np.inf, np.inf, np.inf, -tiny])
    start = np.clip([s_up, s_down, w_max, w_min], 2 * lower, 2 * upper)
    fit = least_squares(residuals, start, bounds=(lower, upper), x_scale="jac")
    s_up, s_down, w_max, w_min = (float(v) for v in fit.x)
    dw_min = max(s_up, s_down)
    up_down = 1 - s_down / s_up if s_up >= s_down else s_up / s_down - 1
    device = SoftBoundsDevice(
        dw_min=dw_min,
        up_down=up_down,
        w_max=w_max,
        w_min=w_min,
        dw_min_dtod=0.0,
        up_down_dtod=0.0,
        w_max_dtod=0.0,
        w_min_dtod=0.0,
        dw_min_std=0.0,
    )
    trajectory = soft_bounds_trajectory(trace[0], pulses, s_up, s_down, w_max, w_min)
    residual_std = float(np.std(trace - trajectory))
    return SoftBoundsFit(device, residual_std, torch.as_tensor(trajectory, dtype=torch.float32))
