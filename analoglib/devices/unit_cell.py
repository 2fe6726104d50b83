"""One-sided device pairs with refresh (aihwkit ``OneSidedUnitCell``).

Some devices (PCM) can only be potentiated gradually; depression is an abrupt reset. Such a
device is used in pairs: the weight is ``g_plus - g_minus``; an update that increases the
weight gives up pulses to ``g_plus``, one that decreases it gives up pulses to ``g_minus``.
Both conductances only grow, so the pair saturates; a refresh then reads the weight, resets
both devices and writes the difference back onto one of them.

Refresh criterion (aihwkit): with ``w_max`` the device config's upper bound, a pair is
refreshed where the larger conductance exceeds ``refresh_upper_thres w_max`` and the smaller
exceeds ``refresh_lower_thres w_max``. The write after the reset is open loop, as aihwkit's
pulsed refresh update: ``round(|diff| / granularity)`` up pulses (mean-count pulses, with the
granularity aihwkit's updater uses, :func:`~analoglib.devices.pulsed.weight_granularity`)
onto the device on the side of the weight's sign, at most ``refresh_max_pulses`` (aihwkit's
refresh update has ``desired_bl`` 31; its update management scales a whole column's
differences down when the largest needs more, here each device is capped by itself). For a
device whose first steps are much larger than the granularity (PCM) the open-loop write
overshoots. With ``refresh_verify`` the write pulses a device only while the weight is more
than half a mean step short of the target (program and verify), which keeps the weight
within about half a step.

Not modelled: the noisy read of the refresh (``refresh_forward``; the conductances are read
exactly) and ``copy_inverted``.

References:
    Nandakumar et al. 2020 (PCM); Rasch et al. 2021 (aihwkit); ``docs/devices.md#one-sided-pairs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from analoglib.devices.effects import reset_weights
from analoglib.devices.pulsed import (
    DeviceState,
    PulsedDevice,
    _step,
    apply_pulses,
    sample_device_state,
    weight_granularity,
)

__all__ = [
    "OneSidedPair",
    "PairState",
    "apply_pair_pulses",
    "initial_pair",
    "refresh_due",
    "refresh_pair",
    "sample_pair_state",
]


@dataclass
class OneSidedPair:
    """Two one-sided devices per weight with refresh (aihwkit ``OneSidedUnitCell``).

    Attributes:
        device: Model of both devices (aihwkit uses the first unit-cell device for both; each
            gets its own device-to-device draws). Should have ``w_min`` 0 (one-sided).
        refresh_every: Check for refresh every this many updates (0: never), see
            :func:`refresh_due`.
        units_in_mbatch: ``refresh_every`` counts mini-batches (True) or single vector updates.
        refresh_upper_thres: Threshold of the larger conductance, relative to ``w_max``.
        refresh_lower_thres: Threshold of the smaller conductance, relative to ``w_max``.
        refresh_max_pulses: Most pulses the refresh writes onto one device (aihwkit's
            ``refresh_update.desired_bl``, 31 in the PCM preset).
        refresh_verify: Write the difference by program and verify instead of open loop.
        copy_inverted: aihwkit's mirrored second device; not modelled (False only).
    """

    device: PulsedDevice
    refresh_every: int = 0
    units_in_mbatch: bool = True
    refresh_upper_thres: float = 0.75
    refresh_lower_thres: float = 0.25
    refresh_max_pulses: int = 31
    refresh_verify: bool = False
    copy_inverted: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one."""

        def fail(name: str, value: object, allowed: str) -> None:
            raise ValueError(f"OneSidedPair.{name} = {value!r} is not allowed: expected {allowed}.")

        if not isinstance(self.device, PulsedDevice):
            fail("device", self.device, "a PulsedDevice")
        if self.device.write_noise_std != 0:
            # aihwkit refuses to reset single devices that carry write noise
            fail("device.write_noise_std", self.device.write_noise_std, "0 in a refreshed pair")
        for name in ("refresh_every", "refresh_max_pulses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(name, value, "an integer >= 0")
        if self.refresh_max_pulses < 1:
            fail("refresh_max_pulses", self.refresh_max_pulses, "an integer >= 1")
        for name in ("units_in_mbatch", "refresh_verify", "copy_inverted"):
            if not isinstance(getattr(self, name), bool):
                fail(name, getattr(self, name), "True or False")
        if self.copy_inverted:
            fail("copy_inverted", True, "False (the mirrored second device is not modelled)")
        lower, upper = self.refresh_lower_thres, self.refresh_upper_thres
        if not 0 <= lower <= upper:
            fail("refresh_lower_thres", lower, f"0 <= value <= refresh_upper_thres ({upper})")


@dataclass
class PairState:
    """Device-to-device parameters of the two devices of every pair (tensors of one shape).

    Attributes:
        plus: The devices that raise the weight (``g_plus``).
        minus: The devices that lower the weight (``g_minus``).
    """

    plus: DeviceState
    minus: DeviceState


def sample_pair_state(
    pair: OneSidedPair,
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    torch_device: torch.device | str = "cpu",
) -> PairState:
    """Draw both devices of ``shape`` pairs: first all ``g_plus``, then all ``g_minus``."""
    plus = sample_device_state(pair.device, shape, generator, torch_device)
    minus = sample_device_state(pair.device, shape, generator, torch_device)
    return PairState(plus, minus)


def initial_pair(
    state: PairState, pair: OneSidedPair, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Both conductances of every pair freshly reset: ``(g_plus, g_minus)``, weight near 0."""
    shape = state.plus.shape
    zeros = torch.zeros(shape, device=state.plus.b_max.device)
    g_plus = reset_weights(zeros, None, state.plus, pair.device, generator)
    g_minus = reset_weights(zeros, None, state.minus, pair.device, generator)
    return g_plus, g_minus


def apply_pair_pulses(
    g_plus: Tensor,
    g_minus: Tensor,
    n_signed: Tensor,
    state: PairState,
    pair: OneSidedPair,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Apply signed pulse counts to every pair: > 0 potentiates ``g_plus``, < 0 ``g_minus``.

    Both devices only receive up pulses (|n| of them, each with its own state-dependent step
    and noise draw); the weight ``g_plus - g_minus`` moves by the sign of n. The ``g_plus``
    pulses are drawn first, then the ``g_minus`` pulses.

    Args:
        g_plus: Conductances that raise the weight (weight units), the state's shape.
        g_minus: Conductances that lower the weight, the same shape.
        n_signed: Integer pulse counts, the same shape.
        state: Both devices' parameters.
        pair: The unit cell.
        generator: Source of the cycle-to-cycle draws.

    Returns:
        New ``(g_plus, g_minus)``.
    """
    n = n_signed.to(torch.int64)
    g_plus = apply_pulses(g_plus, n.clamp(min=0), state.plus, pair.device, generator)
    g_minus = apply_pulses(g_minus, (-n).clamp(min=0), state.minus, pair.device, generator)
    return g_plus, g_minus


def refresh_due(pair: OneSidedPair, n_updates: int, m_batch: int = 1) -> bool:
    """Whether the refresh check runs after update number ``n_updates`` (counted from 1).

    aihwkit checks at the end of an update cycle when the count of vector updates is a
    multiple of ``refresh_every`` (times ``m_batch``, the vector updates of one mini-batch,
    with ``units_in_mbatch``).

    Raises:
        ValueError: For ``n_updates`` < 0 or ``m_batch`` < 1.
    """
    if n_updates < 0 or m_batch < 1:
        raise ValueError(
            f"n_updates = {n_updates!r}, m_batch = {m_batch!r} are not allowed: expected "
            "n_updates >= 0 and m_batch >= 1."
        )
    if pair.refresh_every == 0:
        return False
    every = pair.refresh_every * (m_batch if pair.units_in_mbatch else 1)
    return n_updates % every == 0


def refresh_pair(
    g_plus: Tensor,
    g_minus: Tensor,
    state: PairState,
    pair: OneSidedPair,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Refresh the saturated pairs: read, reset both devices, write the difference back.

    See the module docstring for the criterion and the write. Pairs that are not selected
    keep their conductances.

    Args:
        g_plus: Conductances that raise the weight (weight units), the state's shape.
        g_minus: Conductances that lower the weight, the same shape.
        state: Both devices' parameters.
        pair: The unit cell.
        generator: Source of the reset and write noise.

    Returns:
        ``(g_plus, g_minus, refreshed)``; ``refreshed`` is the boolean mask of pairs that
        were reset and rewritten.
    """
    device = pair.device
    w_max = abs(device.w_max)
    high, low = torch.maximum(g_plus, g_minus), torch.minimum(g_plus, g_minus)
    refreshed = (high / w_max > pair.refresh_upper_thres) & (low / w_max > pair.refresh_lower_thres)
    target = g_plus - g_minus  # (*shape) the weight to keep
    g_plus = reset_weights(g_plus, refreshed, state.plus, device, generator)
    g_minus = reset_weights(g_minus, refreshed, state.minus, device, generator)
    positive = refreshed & (target > 0)
    negative = refreshed & (target < 0)
    if not pair.refresh_verify:
        granularity = weight_granularity(device)
        count = torch.round(target.abs() / granularity).clamp(max=pair.refresh_max_pulses)
        count = count.to(torch.int64)
        zero = torch.zeros_like(count)
        n_signed = torch.where(positive, count, torch.where(negative, -count, zero))
        g_plus, g_minus = apply_pair_pulses(g_plus, g_minus, n_signed, state, pair, generator)
        return g_plus, g_minus, refreshed
    for _ in range(pair.refresh_max_pulses):
        # pulse while the weight is more than half a mean step short of the target
        short = (target - (g_plus - g_minus)).abs()
        up = torch.ones_like(g_plus, dtype=torch.bool)
        step_plus = _step(g_plus, up, state.plus, device).clamp(min=0.0)
        step_minus = _step(g_minus, up, state.minus, device).clamp(min=0.0)
        weight = g_plus - g_minus
        go_plus = positive & (weight < target) & (short > 0.5 * step_plus)
        go_minus = negative & (weight > target) & (short > 0.5 * step_minus)
        n_signed = go_plus.to(torch.int64) - go_minus.to(torch.int64)
        if not bool(n_signed.any()):
            break
        g_plus, g_minus = apply_pair_pulses(g_plus, g_minus, n_signed, state, pair, generator)
    return g_plus, g_minus, refreshed
