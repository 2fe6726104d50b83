"""Write noise, decay and reset of pulsed devices (aihwkit's per-device extras).

Three effects act beside the pulse response of :mod:`analoglib.devices.pulsed`:

* **Write noise** (``write_noise_std`` > 0): the pulses act on a hidden persistent weight w;
  the weight the forward and backward reads see is ``w + write_noise_std dw_min xi``. A device
  draws new noise whenever it receives a pulse; the whole-array operations (decay, reset, set)
  redraw the noise of every device.
* **Decay** (``lifetime`` > 0): one call (aihwkit calls it once per mini-batch, after the
  update) moves every weight toward its reset value,
  ``w <- (w - b) (1 - alpha (1 - decay_scale)) + b`` with ``decay_scale = 1 - 1 / lifetime``
  per device, then clips to the bounds.
* **Reset**: selected devices jump to ``b + reset_std xi``, clipped to their bounds, with the
  per-device reset value ``b = reset + reset_dtod xi``.

A trainable tile that holds the hidden weights ``w`` calls, per mini-batch::

    w = apply_pulses(w, n, state, device, gen)  # the update acts on the hidden weight
    seen = visible_weights(w, device, gen, updated=n != 0, previous=seen)
    if device.lifetime > 0:
        w = decay_weights(w, state, device)
        seen = visible_weights(w, device, gen)  # whole-array step: new noise everywhere

References:
    Rasch et al. 2021 (aihwkit); ``docs/devices.md#write-noise``,
    ``docs/devices.md#decay-and-reset``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from analoglib.devices.pulsed import DeviceState, PulsedDevice

__all__ = ["decay_weights", "reset_weights", "visible_weights"]


def visible_weights(
    hidden: Tensor,
    device: PulsedDevice,
    generator: torch.Generator | None = None,
    updated: Tensor | None = None,
    previous: Tensor | None = None,
) -> Tensor:
    """The weights the reads see: the hidden weights plus write noise.

    Every device draws ``write_noise_std dw_min xi`` (weight units, ``dw_min`` of the config,
    not of the device), one draw per device whatever the mask, so the generator advances the
    same way every call. Devices in ``updated`` (those that received at least one pulse,
    ``n_signed != 0``) take ``hidden`` plus the new draw; the others keep ``previous``, as in
    aihwkit, where a pulse refreshes the noise of its device only. Without ``updated`` every
    device takes new noise (aihwkit does so after decay, reset, clipping and setting weights).

    Args:
        hidden: Persistent weights, any shape.
        device: The model; ``write_noise_std`` 0 returns ``hidden`` itself.
        generator: Source of the noise.
        updated: Boolean mask of ``hidden``'s shape, or ``None`` for all devices.
        previous: The visible weights before this update; required with ``updated``.

    Returns:
        Visible weights, ``hidden``'s shape (not clipped to the bounds, as in aihwkit).

    Raises:
        ValueError: ``updated`` without ``previous``, or shapes that differ.
    """
    if device.write_noise_std == 0:
        return hidden
    if updated is not None:
        if previous is None:
            raise ValueError(
                "previous = None is not allowed with an updated mask: expected the visible "
                "weights before the update, which devices outside the mask keep."
            )
        for name, value in (("updated", updated), ("previous", previous)):
            if value.shape != hidden.shape:
                raise ValueError(
                    f"{name} of shape {tuple(value.shape)} is not allowed: expected the hidden "
                    f"weights' shape {tuple(hidden.shape)}."
                )
    std = device.write_noise_std * device.dw_min
    noise = torch.randn(hidden.shape, generator=generator, device=hidden.device, dtype=hidden.dtype)
    fresh = hidden + std * noise
    if updated is None:
        return fresh
    assert previous is not None  # checked above
    return torch.where(updated.to(torch.bool), fresh, previous)


def decay_weights(
    w: Tensor, state: DeviceState, device: PulsedDevice, alpha: float = 1.0
) -> Tensor:
    """One decay call: every weight moves toward its reset value (aihwkit ``decay_weights``).

    ``w <- (w - b) s + b`` with ``s = 1 + alpha (decay_scale - 1)`` and b the per-device reset
    value, then clipped to the device's bounds. With ``alpha = 1`` (aihwkit's once-per-mini-
    batch call) n calls give ``b + (w - b) (1 - 1 / lifetime)^n`` per device.

    Args:
        w: Weights (the hidden weights under write noise), the state's shape.
        state: Device-to-device parameters (``decay_scale``, ``reset_bias``, bounds).
        device: The model; without a ``lifetime`` the weights come back unchanged (aihwkit's
            tile does not call the decay then).
        alpha: Scale of the decay rate, >= 0 (1: one mini-batch).

    Returns:
        Decayed weights.

    Raises:
        ValueError: For a negative or non-finite ``alpha``.
    """
    if not (isinstance(alpha, (int, float)) and alpha >= 0 and alpha != float("inf")):
        raise ValueError(f"alpha = {alpha!r} is not allowed: expected a finite number >= 0.")
    if device.lifetime == 0:
        return w
    scale = 1 + alpha * (state.decay_scale - 1)
    out = (w - state.reset_bias) * scale + state.reset_bias
    return torch.minimum(torch.maximum(out, state.b_min), state.b_max)


def reset_weights(
    w: Tensor,
    mask: Tensor | None,
    state: DeviceState,
    device: PulsedDevice,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reset the selected devices to their reset value plus noise (aihwkit ``reset``).

    ``w <- clip(b + reset_std xi, b_min, b_max)`` where ``mask`` is set; the other devices
    keep w. With ``reset_std`` > 0 every device draws once whatever the mask. Under write
    noise, call :func:`visible_weights` without a mask afterwards (aihwkit redraws all write
    noise after a column reset, and refuses the reset of single devices under write noise).

    Args:
        w: Weights, the state's shape.
        mask: Boolean mask of devices to reset, or ``None`` for all.
        state: Device-to-device parameters (``reset_bias``, bounds).
        device: The model (``reset_std``).
        generator: Source of the cycle-to-cycle draws.

    Returns:
        Weights after the reset.

    Raises:
        ValueError: A mask whose shape differs from ``w``'s.
    """
    if mask is not None and mask.shape != w.shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} is not allowed: expected the weights' shape "
            f"{tuple(w.shape)}."
        )
    value = state.reset_bias.expand(w.shape)
    if device.reset_std > 0:
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        value = value + device.reset_std * noise
    value = torch.minimum(torch.maximum(value, state.b_min), state.b_max)
    if mask is None:
        return value.clone()
    return torch.where(mask.to(torch.bool), value, w)
