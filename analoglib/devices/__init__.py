"""Pulsed (trainable) device models for in-memory training.

References:
    ``docs/devices.md``.
"""

from analoglib.devices.pulsed import (
    ConstantStepDevice,
    DeviceState,
    LinearStepDevice,
    PowStepDevice,
    PulsedDevice,
    SoftBoundsDevice,
    SoftBoundsReferenceDevice,
    apply_pulses,
    pulse_once,
    pulse_response,
    sample_device_state,
    soft_bounds_pmax,
    symmetric_point,
)

__all__ = [
    "ConstantStepDevice",
    "DeviceState",
    "LinearStepDevice",
    "PowStepDevice",
    "PulsedDevice",
    "SoftBoundsDevice",
    "SoftBoundsReferenceDevice",
    "apply_pulses",
    "pulse_once",
    "pulse_response",
    "sample_device_state",
    "soft_bounds_pmax",
    "symmetric_point",
]
