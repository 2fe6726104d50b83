"""Pulsed (trainable) device models for in-memory training.

References:
    ``docs/devices.md``.
"""

from analoglib.devices.presets import (
    DEVICE_PRESETS,
    ecram,
    ecram_mo,
    gokmen_vlasov,
    idealized,
    reram_array_hfo2,
    reram_array_om,
    reram_es,
    reram_sb,
)
from analoglib.devices.pulsed import (
    ConstantStepDevice,
    DeviceState,
    ExpStepDevice,
    LinearStepDevice,
    PiecewiseStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
    apply_pulse_counts,
    apply_pulses,
    apply_pulses_closed_form,
    pulse_once,
    pulse_response,
    sample_device_state,
    soft_bounds_pmax,
    symmetric_point,
)

__all__ = [
    "DEVICE_PRESETS",
    "ecram",
    "ecram_mo",
    "gokmen_vlasov",
    "idealized",
    "reram_array_hfo2",
    "reram_array_om",
    "reram_es",
    "reram_sb",
    "ConstantStepDevice",
    "DeviceState",
    "ExpStepDevice",
    "LinearStepDevice",
    "PiecewiseStepDevice",
    "PowStepDevice",
    "PulsedDevice",
    "SoftBoundsDevice",
    "SoftBoundsReferenceDevice",
    "apply_pulse_counts",
    "apply_pulses",
    "apply_pulses_closed_form",
    "pulse_once",
    "pulse_response",
    "sample_device_state",
    "soft_bounds_pmax",
    "symmetric_point",
]
