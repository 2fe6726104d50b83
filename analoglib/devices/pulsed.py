"""Pulsed (trainable) device models: how one conductance responds to one programming pulse.

In-memory training changes a weight by firing voltage pulses at its device; each pulse moves the
conductance by a step that depends on the device's state, on the direction (up or down), on the
device itself (device-to-device variation, drawn once) and on chance (cycle-to-cycle noise,
drawn per pulse). The models follow aihwkit's pulsed devices with the same field names and
defaults, so that aihwkit configurations carry over:

=====================  ====================================================================
model                  one up (down) pulse
=====================  ====================================================================
ConstantStep           w + s_up (w - s_down), times (1 + sigma xi); hard bounds
LinearStep             w + (s_up + g_up w)(1 + sigma xi), g_up = -|gamma_up| s_up / w_ref
SoftBounds             LinearStep with gamma 1 relative to the device's own bound:
                       s_up (1 - w / b_max) up, s_down (1 - w / b_min) down
soft_bounds_pmax       SoftBounds parameterised by (p_max, alpha, range_min, range_max)
SoftBoundsReference    SoftBounds with additive noise and a reference conductance that the
                       read subtracts (optionally at the symmetric point)
PowStep                s_up omega^gamma_up, s_down (1 - omega)^gamma_down with
                       omega = (b_max - w) / (b_max - b_min)
ExpStep                s_up max(1 - A_up e^(gamma_up z), 0), s_down max(1 - A_down
                       e^(-gamma_down z), 0), z = 2 a w / (b_max - b_min) + b
PiecewiseStep          s times the linear interpolation of node values over [b_min, b_max]
=====================  ====================================================================

Every step ends clipped to the device's bounds ``[b_min, b_max]``.

Device-to-device draws (:func:`sample_device_state`, once per device, from an explicit
generator): ``b_max = w_max (1 + w_max_dtod xi)``, ``b_min = w_min (1 + w_min_dtod xi)``,
``gain = 1 + dw_min_dtod xi`` (or ``exp(dw_min_dtod xi)`` log-normal), ``r = up_down_dtod xi``,
``s_up = (min(up_down, 0) + gain + r) dw_min``, ``s_down = (-max(up_down, 0) + gain - r) dw_min``;
with ``enforce_consistency`` the steps are made positive, inverted bounds swapped and
``b_min <= 0 <= b_max`` enforced.

Write noise, decay and reset live in :mod:`analoglib.devices.effects`, one-sided pairs with
refresh in :mod:`analoglib.devices.unit_cell`.

References:
    Gokmen & Vlasov 2016; Rasch et al. 2021 (aihwkit); Le Gallo et al. 2023 (tutorial);
    ``docs/devices.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
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
    "mean_step",
    "pulse_once",
    "pulse_response",
    "sample_device_state",
    "soft_bounds_pmax",
    "symmetric_point",
    "weight_granularity",
]


def _fail(device: str, name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{device}.{name} = {value!r} is not allowed: expected {allowed}.")


def _number(device: str, name: str, value: Any, minimum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(device, name, value, "a finite number")
    if minimum is not None and value < minimum:
        _fail(device, name, value, f"a finite number >= {minimum}")


@dataclass
class PulsedDevice:
    """Fields shared by every pulsed device (aihwkit's names and defaults).

    Attributes:
        dw_min: Mean step of one pulse at w = 0 (weight units).
        dw_min_dtod: Device-to-device spread of the step, relative (normal or log-normal).
        dw_min_dtod_log_normal: Draw the step gain as ``exp(dw_min_dtod xi)`` instead of
            ``1 + dw_min_dtod xi``.
        dw_min_std: Cycle-to-cycle spread of each step, relative.
        up_down: Systematic up/down asymmetry of the steps (> 0: up steps larger).
        up_down_dtod: Device-to-device spread of the asymmetry.
        w_max, w_min: Mean bounds of the weight.
        w_max_dtod, w_min_dtod: Device-to-device spread of the bounds, relative.
        enforce_consistency: Positive steps, ordered bounds, ``b_min <= 0 <= b_max``.
        write_noise_std: Standard deviation of the write noise in units of ``dw_min``: updates
            act on a hidden persistent weight and the read sees it plus fresh noise of std
            ``write_noise_std dw_min`` (0: none), see
            :func:`analoglib.devices.effects.visible_weights`.
        reset: Mean weight a reset sets the device to, and the value decay pulls toward.
        reset_dtod: Device-to-device spread of the reset value (absolute, additive).
        reset_std: Cycle-to-cycle spread of each reset (absolute).
        lifetime: Decay time constant in calls of the decay (mini-batches); each call multiplies
            the distance to the reset value by ``1 - 1 / lifetime`` (0: no decay; otherwise
            > 1), see :func:`analoglib.devices.effects.decay_weights`.
        lifetime_dtod: Device-to-device spread of the lifetime, relative.
        diffusion, corrupt_devices_prob: aihwkit features not modelled here; a non-zero value
            is refused.
    """

    _name: ClassVar[str] = "PulsedDevice"

    dw_min: float = 0.001
    dw_min_dtod: float = 0.3
    dw_min_dtod_log_normal: bool = False
    dw_min_std: float = 0.3
    up_down: float = 0.0
    up_down_dtod: float = 0.01
    w_max: float = 0.6
    w_min: float = -0.6
    w_max_dtod: float = 0.3
    w_min_dtod: float = 0.3
    enforce_consistency: bool = True
    write_noise_std: float = 0.0
    reset: float = 0.0
    reset_dtod: float = 0.0
    reset_std: float = 0.01
    lifetime: float = 0.0
    lifetime_dtod: float = 0.0
    diffusion: float = 0.0
    corrupt_devices_prob: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        name = self._name
        _number(name, "dw_min", self.dw_min, 0.0)
        if self.dw_min <= 0:
            _fail(name, "dw_min", self.dw_min, "a number > 0")
        for key in (
            "dw_min_dtod",
            "dw_min_std",
            "up_down_dtod",
            "w_max_dtod",
            "w_min_dtod",
            "write_noise_std",
            "reset_dtod",
            "reset_std",
            "lifetime_dtod",
        ):
            _number(name, key, getattr(self, key), 0.0)
        _number(name, "reset", self.reset)
        _number(name, "lifetime", self.lifetime, 0.0)
        if 0 < self.lifetime <= 1:
            _fail(name, "lifetime", self.lifetime, "0 (no decay) or a number of mini-batches > 1")
        _number(name, "up_down", self.up_down)
        _number(name, "w_max", self.w_max)
        _number(name, "w_min", self.w_min)
        if not self.w_min <= self.w_max:
            _fail(name, "w_min", self.w_min, f"a value <= w_max ({self.w_max})")
        for key in ("dw_min_dtod_log_normal", "enforce_consistency"):
            if not isinstance(getattr(self, key), bool):
                _fail(name, key, getattr(self, key), "True or False")
        for key in ("diffusion", "corrupt_devices_prob"):
            if getattr(self, key) != 0:
                _fail(name, key, getattr(self, key), "0 (this aihwkit feature is not modelled)")

    def replace(self, **changes: Any) -> PulsedDevice:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def scaled_dtod(self, factor: float) -> PulsedDevice:
        """A copy with every device-to-device spread multiplied by ``factor`` (>= 0)."""
        _number(self._name, "factor", factor, 0.0)
        changes = {
            f.name: getattr(self, f.name) * factor
            for f in dataclasses.fields(self)
            if f.name.endswith("_dtod")
        }
        return self.replace(**changes)


@dataclass
class ConstantStepDevice(PulsedDevice):
    """Steps of constant mean size up to hard bounds (aihwkit ``ConstantStepDevice``)."""

    _name: ClassVar[str] = "ConstantStepDevice"


@dataclass
class LinearStepDevice(PulsedDevice):
    """Steps that shrink linearly with the weight (aihwkit ``LinearStepDevice``).

    Attributes:
        gamma_up, gamma_down: Slope of the up and down step, relative to the reference bound
            (1: the step vanishes at the bound).
        gamma_up_dtod, gamma_down_dtod: Device-to-device spread of the slopes (absolute).
        mult_noise: Cycle-to-cycle noise multiplies the whole step (True) or only its constant
            part (False: ``w + s (1 + sigma xi) + gamma w``).
        mean_bound_reference: Slopes relative to the mean bounds ``w_max``/``w_min`` (True) or
            to the device's own drawn bounds (False).
    """

    _name: ClassVar[str] = "LinearStepDevice"

    gamma_up: float = 0.0
    gamma_down: float = 0.0
    gamma_up_dtod: float = 0.05
    gamma_down_dtod: float = 0.05
    mult_noise: bool = True
    mean_bound_reference: bool = True

    def validate(self) -> None:
        super().validate()
        for key in ("gamma_up", "gamma_down"):
            _number(self._name, key, getattr(self, key))
        for key in ("gamma_up_dtod", "gamma_down_dtod"):
            _number(self._name, key, getattr(self, key), 0.0)
        for key in ("mult_noise", "mean_bound_reference"):
            if not isinstance(getattr(self, key), bool):
                _fail(self._name, key, getattr(self, key), "True or False")


@dataclass
class SoftBoundsDevice(LinearStepDevice):
    """Steps proportional to the distance from the bound (aihwkit ``SoftBoundsDevice``).

    Up: ``s_up (1 - w / b_max)``, down: ``s_down (1 - w / b_min)``, noise multiplicative.
    """

    _name: ClassVar[str] = "SoftBoundsDevice"

    gamma_up: float = 1.0
    gamma_down: float = 1.0
    gamma_up_dtod: float = 0.0
    gamma_down_dtod: float = 0.0
    mean_bound_reference: bool = False

    def validate(self) -> None:
        super().validate()
        for key in ("gamma_up", "gamma_down"):
            if getattr(self, key) != 1.0:
                _fail(self._name, key, getattr(self, key), "1.0 (use LinearStepDevice)")
        for key in ("gamma_up_dtod", "gamma_down_dtod"):
            if getattr(self, key) != 0.0:
                _fail(self._name, key, getattr(self, key), "0.0 (use LinearStepDevice)")
        if self.mean_bound_reference:
            _fail(self._name, "mean_bound_reference", True, "False (use LinearStepDevice)")


def soft_bounds_pmax(
    p_max: int = 1000,
    alpha: float = 0.001 / 2,
    range_min: float = -1.0,
    range_max: float = 1.0,
    **fields: Any,
) -> SoftBoundsDevice:
    """A soft-bounds device from its fitting parameters (aihwkit ``SoftBoundsPmaxDevice``).

    ``p_max`` pulses take the weight from ``range_min`` to about ``range_max``:
    ``B = (range_max - range_min) / (1 - exp(-alpha p_max))``, ``w_min = range_min``,
    ``w_max = range_min + B``, ``dw_min = B alpha``, ``up_down = 1 + 2 range_min / B``.
    """
    if not (isinstance(p_max, int) and p_max >= 1):
        raise ValueError(f"p_max = {p_max!r} is not allowed: expected an integer >= 1.")
    if not alpha > 0 or not range_max > range_min:
        raise ValueError(
            f"alpha = {alpha!r}, range = ({range_min!r}, {range_max!r}) are not allowed: "
            "expected alpha > 0 and range_min < range_max."
        )
    b = (range_max - range_min) / (1 - math.exp(-alpha * p_max))
    return SoftBoundsDevice(
        w_min=range_min,
        w_max=range_min + b,
        dw_min=b * alpha,
        up_down=1 + 2 * range_min / b,
        **fields,
    )


@dataclass
class SoftBoundsReferenceDevice(SoftBoundsDevice):
    """Soft bounds with additive noise and a reference device (aihwkit's of the same name).

    Attributes:
        reference_mean: Mean of the reference conductance the read subtracts.
        reference_std: Device-to-device spread of the reference.
        subtract_symmetry_point: Add each device's symmetric point to its reference, as a
            calibration that programs the reference there would.
    """

    _name: ClassVar[str] = "SoftBoundsReferenceDevice"

    mult_noise: bool = False
    reference_mean: float = 0.0
    reference_std: float = 0.0
    subtract_symmetry_point: bool = False

    def validate(self) -> None:
        super().validate()
        _number(self._name, "reference_mean", self.reference_mean)
        _number(self._name, "reference_std", self.reference_std, 0.0)
        if not isinstance(self.subtract_symmetry_point, bool):
            _fail(
                self._name, "subtract_symmetry_point", self.subtract_symmetry_point, "True or False"
            )


@dataclass
class PowStepDevice(PulsedDevice):
    """Steps that follow a power of the distance to the bounds (aihwkit ``PowStepDevice``).

    With ``omega = (b_max - w) / (b_max - b_min)``: up ``s_up omega^gamma_up``, down
    ``s_down (1 - omega)^gamma_down``, noise multiplicative; gamma 1 is soft-bounds-like.

    Per device ``gamma_up = gamma (1 + beta + s xi)`` and ``gamma_down = gamma (1 - beta + s xi)``
    with ``beta = pow_up_down + pow_up_down_dtod xi2`` and ``s = pow_gamma_dtod``.

    Attributes:
        pow_gamma: Mean exponent.
        pow_gamma_dtod: Device-to-device spread of the exponent, relative.
        pow_up_down: Up/down asymmetry of the exponent, relative.
        pow_up_down_dtod: Device-to-device spread of that asymmetry.
    """

    _name: ClassVar[str] = "PowStepDevice"

    pow_gamma: float = 1.0
    pow_gamma_dtod: float = 0.1
    pow_up_down: float = 0.0
    pow_up_down_dtod: float = 0.0

    def validate(self) -> None:
        super().validate()
        _number(self._name, "pow_gamma", self.pow_gamma, 0.0)
        _number(self._name, "pow_gamma_dtod", self.pow_gamma_dtod, 0.0)
        _number(self._name, "pow_up_down", self.pow_up_down)
        _number(self._name, "pow_up_down_dtod", self.pow_up_down_dtod, 0.0)


@dataclass
class ExpStepDevice(PulsedDevice):
    """Steps that fall off exponentially toward the bounds (aihwkit ``ExpStepDevice``).

    With ``z = 2 a w / (b_max - b_min) + b``: up ``s_up max(1 - A_up exp(gamma_up z), 0)``,
    down ``s_down max(1 - A_down exp(-gamma_down z), 0)``, noise multiplicative. The fitting
    parameters are the same for every device (no device-to-device spread of their own).

    With ``dw_min_std_add`` or ``dw_min_std_slope`` non-zero (and ``dw_min_std`` > 0) the
    cycle-to-cycle noise is additive with standard deviation
    ``dw_min_std (|dw| + dw_min_std_add + dw_min_std_slope |w|)``, dw the mean step (aihwkit's
    "complex noise", used by the PCM preset).

    Attributes:
        A_up, A_down, gamma_up, gamma_down, a, b: The fit (aihwkit's defaults).
        dw_min_std_add: Constant part of the complex noise (weight units, times dw_min_std).
        dw_min_std_slope: Part of the complex noise proportional to |w| (times dw_min_std).
    """

    _name: ClassVar[str] = "ExpStepDevice"

    A_up: float = 0.00081
    A_down: float = 0.36833
    gamma_up: float = 12.44625
    gamma_down: float = 12.78785
    a: float = 0.244
    b: float = 0.2425
    dw_min_std_add: float = 0.0
    dw_min_std_slope: float = 0.0

    def validate(self) -> None:
        super().validate()
        for key in ("A_up", "A_down", "gamma_up", "gamma_down", "a", "b"):
            _number(self._name, key, getattr(self, key))
        for key in ("dw_min_std_add", "dw_min_std_slope"):
            _number(self._name, key, getattr(self, key), 0.0)

    @property
    def complex_noise(self) -> bool:
        """Whether the additive noise with the add and slope terms applies (as aihwkit)."""
        return self.dw_min_std > 0 and (self.dw_min_std_add != 0 or self.dw_min_std_slope != 0)


@dataclass
class PiecewiseStepDevice(PulsedDevice):
    """Steps interpolated from measured node values (aihwkit ``PiecewiseStepDevice``).

    The nodes split ``[b_min, b_max]`` of each device into ``len(piecewise_up) - 1`` equal
    sections; the up step at w is ``s_up`` times the linear interpolation of ``piecewise_up``
    at w (likewise down); one node means a constant factor. Noise is multiplicative.

    Attributes:
        piecewise_up, piecewise_down: Node values (relative step sizes), the same number.
    """

    _name: ClassVar[str] = "PiecewiseStepDevice"

    piecewise_up: tuple[float, ...] = (1.0,)
    piecewise_down: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        super().validate()
        up, down = tuple(self.piecewise_up), tuple(self.piecewise_down)
        if not up or len(up) != len(down):
            _fail(
                self._name,
                "piecewise_down",
                self.piecewise_down,
                f"as many nodes as piecewise_up ({len(up)}), at least one",
            )
        for key, nodes in (("piecewise_up", up), ("piecewise_down", down)):
            for value in nodes:
                _number(self._name, key, value, 0.0)


@dataclass
class DeviceState:
    """Per-device parameters drawn once (device-to-device variation); tensors of one shape.

    Attributes:
        b_max, b_min: Bounds of each device.
        scale_up, scale_down: Mean step magnitudes (> 0 with consistency enforced).
        slope_up, slope_down: LinearStep slopes ``g`` (step = s + g w); zero otherwise.
        gamma_up, gamma_down: PowStep exponents; unused otherwise.
        reference: Conductance the read subtracts (SoftBoundsReference); zero otherwise.
        reset_bias: Value a reset sets the device to and decay pulls toward,
            ``reset + reset_dtod xi``.
        decay_scale: Factor of one decay call, ``1 - 1 / t`` with
            ``t = lifetime (1 + lifetime_dtod xi)`` (0 where ``t <= 1``; 1 without decay).
    """

    b_max: Tensor
    b_min: Tensor
    scale_up: Tensor
    scale_down: Tensor
    slope_up: Tensor
    slope_down: Tensor
    gamma_up: Tensor
    gamma_down: Tensor
    reference: Tensor = field(default_factory=lambda: torch.zeros(()))
    reset_bias: Tensor = field(default_factory=lambda: torch.zeros(()))
    decay_scale: Tensor = field(default_factory=lambda: torch.ones(()))

    @property
    def shape(self) -> torch.Size:
        return self.b_max.shape


def sample_device_state(
    device: PulsedDevice,
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    torch_device: torch.device | str = "cpu",
) -> DeviceState:
    """Draw the device-to-device parameters of ``shape`` devices (see the module docstring).

    The draws come from ``generator`` in a fixed order (bounds, gain, asymmetry, the model's
    own fields, then the reset value and the lifetime), so the same generator state gives the
    same devices. The reset value and the lifetime are drawn only when their spread
    (``reset_dtod``, ``lifetime_dtod``) is non-zero, so devices without them draw exactly as
    before these fields existed.
    """
    shape = tuple(int(s) for s in shape)

    def draw() -> Tensor:
        return torch.randn(shape, generator=generator, device=torch_device)

    b_max = device.w_max * (1 + device.w_max_dtod * draw())
    b_min = device.w_min * (1 + device.w_min_dtod * draw())
    xi_gain = draw()
    gain = (
        torch.exp(device.dw_min_dtod * xi_gain)
        if device.dw_min_dtod_log_normal
        else 1 + device.dw_min_dtod * xi_gain
    )
    r = device.up_down_dtod * draw()
    up_bias, down_bias = min(device.up_down, 0.0), -max(device.up_down, 0.0)
    scale_up = (up_bias + gain + r) * device.dw_min
    scale_down = (down_bias + gain - r) * device.dw_min
    if device.enforce_consistency:
        scale_up, scale_down = scale_up.abs(), scale_down.abs()
        b_max, b_min = torch.maximum(b_max, b_min), torch.minimum(b_max, b_min)
        b_max, b_min = b_max.clamp(min=0.0), b_min.clamp(max=0.0)
    zeros = torch.zeros(shape, device=torch_device)
    slope_up, slope_down = zeros.clone(), zeros.clone()
    gamma_up, gamma_down = zeros.clone(), zeros.clone()
    if isinstance(device, LinearStepDevice):
        g_up = (device.gamma_up + device.gamma_up_dtod * draw()).abs()
        g_down = (device.gamma_down + device.gamma_down_dtod * draw()).abs()
        if device.mean_bound_reference:
            ref_up = torch.full(shape, device.w_max, device=torch_device)
            ref_down = torch.full(shape, device.w_min, device=torch_device)
        else:
            ref_up, ref_down = b_max, b_min
        # step = s + slope w vanishes at the reference bound for gamma = 1; a device whose
        # bound was clamped to 0 cannot move in that direction at all
        stuck_up, stuck_down = ref_up == 0, ref_down == 0
        slope_up = torch.where(stuck_up, 0.0, -g_up * scale_up / ref_up)
        slope_down = torch.where(stuck_down, 0.0, -g_down * scale_down / ref_down)
        scale_up = torch.where(stuck_up, 0.0, scale_up)
        scale_down = torch.where(stuck_down, 0.0, scale_down)
    if isinstance(device, PowStepDevice):
        # gamma_d = gamma (1 + d beta + sigma xi), beta = pow_up_down + pow_up_down_dtod xi2
        spread = device.pow_gamma_dtod * draw()
        beta = device.pow_up_down + device.pow_up_down_dtod * draw()
        gamma_up = (device.pow_gamma * (1 + beta + spread)).clamp(min=0.0)
        gamma_down = (device.pow_gamma * (1 - beta + spread)).clamp(min=0.0)
    state = DeviceState(
        b_max=b_max,
        b_min=b_min,
        scale_up=scale_up,
        scale_down=scale_down,
        slope_up=slope_up,
        slope_down=slope_down,
        gamma_up=gamma_up,
        gamma_down=gamma_down,
        reference=zeros.clone(),
        reset_bias=torch.full(shape, float(device.reset), device=torch_device),
        decay_scale=torch.ones(shape, device=torch_device),
    )
    if isinstance(device, SoftBoundsReferenceDevice):
        reference = device.reference_mean + device.reference_std * draw()
        if device.subtract_symmetry_point:
            reference = reference + symmetric_point(state)
        state.reference = reference
    if device.reset_dtod > 0:
        # additive spread, as aihwkit's populate (its docstring says relative; the code adds)
        state.reset_bias = device.reset + device.reset_dtod * draw()
    if device.lifetime > 0:
        lifetime = torch.full(shape, float(device.lifetime), device=torch_device)
        if device.lifetime_dtod > 0:
            lifetime = device.lifetime * (1 + device.lifetime_dtod * draw())
        # a device whose drawn lifetime is <= 1 mini-batch loses its state in one call
        state.decay_scale = torch.where(lifetime > 1, 1 - 1 / lifetime, 0.0)
    return state


def weight_granularity(device: PulsedDevice) -> float:
    """The step aihwkit's pulsed updater takes as the device's ``dw_min`` (weight units).

    aihwkit sizes pulse trains (bit-line length, pulse probabilities) with this value:
    ``dw_min`` for constant, linear and soft-bounds steps; ``dw_min 0.5^pow_gamma`` for
    PowStep; ``dw_min`` times the middle node of ``piecewise_up`` for PiecewiseStep; the mean
    down step at w = 0 for ExpStep (``3.235 dw_min`` for the PCM preset). A value <= 0 falls
    back to ``dw_min``.
    """
    if isinstance(device, PowStepDevice):
        value = device.dw_min * 0.5**device.pow_gamma
    elif isinstance(device, PiecewiseStepDevice):
        value = device.dw_min * device.piecewise_up[len(device.piecewise_up) // 2]
    elif isinstance(device, ExpStepDevice):
        # z = b at w = 0; aihwkit averages the down step with itself
        scale_down = (1 - max(device.up_down, 0.0)) * device.dw_min
        value = scale_down * max(1 - device.A_down * math.exp(-device.gamma_down * device.b), 0.0)
    else:
        value = device.dw_min
    return value if value > 0 else device.dw_min


def symmetric_point(state: DeviceState) -> Tensor:
    """Weight where an up and a down pulse cancel on average, for soft-bounds-like devices.

    ``(s_up - s_down) / (s_up / b_max - s_down / b_min)`` (0 for a symmetric device), from
    ``s_up (1 - w/b_max) = s_down (1 - w/b_min)``.
    """
    denominator = state.scale_up / state.b_max - state.scale_down / state.b_min
    point = (state.scale_up - state.scale_down) / denominator
    # devices without a finite symmetric point (a bound at 0, or equal slopes) keep 0
    return torch.where(torch.isfinite(point), point, torch.zeros_like(point))


def _step(w: Tensor, up: Tensor, state: DeviceState, device: PulsedDevice) -> Tensor:
    """Mean step magnitude (>= 0 before noise) at ``w`` in the direction ``up`` (bool)."""
    if isinstance(device, ExpStepDevice):
        z = 2 * device.a * w / (state.b_max - state.b_min).clamp(min=1e-12) + device.b
        return torch.where(
            up,
            state.scale_up * (1 - device.A_up * torch.exp(device.gamma_up * z)).clamp(min=0.0),
            state.scale_down
            * (1 - device.A_down * torch.exp(-device.gamma_down * z)).clamp(min=0.0),
        )
    if isinstance(device, PiecewiseStepDevice):
        nodes_up = torch.tensor(device.piecewise_up, dtype=w.dtype, device=w.device)
        nodes_down = torch.tensor(device.piecewise_down, dtype=w.dtype, device=w.device)
        sections = len(device.piecewise_up) - 1
        if sections == 0:
            return torch.where(up, state.scale_up * nodes_up[0], state.scale_down * nodes_down[0])
        span = (state.b_max - state.b_min).clamp(min=1e-12)
        position = ((w - state.b_min) / span * sections).clamp(min=0.0)
        index = position.floor().clamp(max=sections - 1).long()
        t = (position - index).clamp(max=1.0)
        factor_up = (1 - t) * nodes_up[index] + t * nodes_up[index + 1]
        factor_down = (1 - t) * nodes_down[index] + t * nodes_down[index + 1]
        return torch.where(up, state.scale_up * factor_up, state.scale_down * factor_down)
    if isinstance(device, PowStepDevice):
        span = (state.b_max - state.b_min).clamp(min=1e-12)
        omega = ((state.b_max - w) / span).clamp(0.0, 1.0)
        return torch.where(
            up,
            state.scale_up * omega.pow(state.gamma_up),
            state.scale_down * (1 - omega).pow(state.gamma_down),
        )
    scale = torch.where(up, state.scale_up, state.scale_down)
    if isinstance(device, LinearStepDevice):
        slope = torch.where(up, state.slope_up, state.slope_down)
        return scale + slope * w  # may be negative beyond the bound; clipped afterwards
    return scale


def mean_step(w: Tensor, up: Tensor, state: DeviceState, device: PulsedDevice) -> Tensor:
    """Mean step magnitude (weight units, >= 0) of one pulse at ``w`` in the direction ``up``.

    ``mean_step / dw_min`` are the response functions ``q+`` (up) and ``q-`` (down) of the
    response-function form ``W + Delta F(W) - |Delta| G(W)``.

    Args:
        w: Weights, the state's shape (or broadcastable).
        up: Bool tensor: True for an up pulse.
        state: Device-to-device parameters.
        device: The model.

    References:
        ``docs/devices.md#response-functions``.
    """
    return _step(w, up, state, device).clamp(min=0.0)


def pulse_once(
    w: Tensor,
    direction: Tensor,
    state: DeviceState,
    device: PulsedDevice,
    noise: Tensor,
) -> Tensor:
    """The weights after one pulse in ``direction`` (+1 up, -1 down, 0 none) on every device.

    Args:
        w: Weights, the state's shape.
        direction: +1, -1 or 0 per device.
        state: Device-to-device parameters.
        device: The model.
        noise: Standard normal draws, one per device (cycle-to-cycle noise).

    Returns:
        New weights, clipped to each device's bounds.
    """
    up = direction > 0
    step = _step(w, up, state, device)
    sigma = device.dw_min_std
    if isinstance(device, ExpStepDevice) and device.complex_noise:
        # additive noise of std sigma (|dw| + add + slope |w|) (aihwkit's complex noise)
        spread = sigma * (step.abs() + device.dw_min_std_add + device.dw_min_std_slope * w.abs())
        step = step + spread * noise
    elif isinstance(device, LinearStepDevice) and not device.mult_noise:
        # additive noise: only the constant part of the step is noisy
        scale = torch.where(up, state.scale_up, state.scale_down)
        step = step + scale * sigma * noise
    else:
        step = step * (1 + sigma * noise)
    new = w + direction.to(w.dtype) * step
    return torch.minimum(torch.maximum(new, state.b_min), state.b_max)


def apply_pulses(
    w: Tensor,
    n_signed: Tensor,
    state: DeviceState,
    device: PulsedDevice,
    generator: torch.Generator | None = None,
    closed_form: bool = False,
) -> Tensor:
    """Apply ``n_signed`` consecutive pulses to every device (> 0 up, < 0 down).

    The pulses of all devices are applied together, one pulse index at a time: after the
    k-th round, every device with ``|n| >= k`` has received k pulses, each with its own
    state-dependent step and noise draw (rounds are bounded by the bit-line length, so this is
    a loop over at most ``max |n|`` pulses, never over devices).

    With ``closed_form=True`` (constant-step and linear-step family only) the n pulses of a
    device are applied at once, see :func:`apply_pulses_closed_form`.
    """
    if closed_form:
        return apply_pulses_closed_form(w, n_signed, state, device, generator)
    n = n_signed.to(torch.int64)
    direction = torch.sign(n)
    remaining = n.abs()
    rounds = int(remaining.max().item()) if remaining.numel() else 0
    out = w.clone()
    for k in range(rounds):
        active = remaining > k
        noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        stepped = pulse_once(out, direction * active, state, device, noise)
        out = torch.where(active, stepped, out)
    return out


def apply_pulses_closed_form(
    w: Tensor,
    n_signed: Tensor,
    state: DeviceState,
    device: PulsedDevice,
    generator: torch.Generator | None = None,
) -> Tensor:
    """N same-direction pulses at once, for devices whose step is affine in w.

    One pulse of direction d maps ``w -> w + d (s + g w)(1 + sigma xi)`` (g = 0 for constant
    steps). With ``m = d g`` and the fixed point ``w_f = -s / g`` (the bound the steps vanish
    at), n pulses give ``w_f + (w - w_f) P`` with P a product of n independent factors
    ``1 + m (1 + sigma xi)``: mean ``(1 + m)^n`` and second moment
    ``((1 + m)^2 + m^2 sigma^2)^n``. P is drawn as a Gaussian with exactly that mean and
    variance (the loop's distribution is matched in its first two moments, not in shape).
    Without a slope the result is ``w + n d s + d s sigma sqrt(n) xi`` (exact). With additive
    noise (``mult_noise=False``) the noise terms are Gaussian and the result is exact in
    distribution. The result is clipped to the bounds once at the end, which is what the loop
    does for same-direction pulses when steps keep their sign.

    Raises:
        ValueError: For a device whose step is not affine in w (PowStep, ExpStep, PiecewiseStep).
    """
    if isinstance(device, (PowStepDevice, ExpStepDevice, PiecewiseStepDevice)):
        raise ValueError(
            f"closed_form=True is not allowed for {type(device).__name__}: its step is not "
            "affine in w; use the pulse loop."
        )
    n = n_signed.to(torch.int64)
    direction = torch.sign(n).to(w.dtype)
    count = n.abs().to(w.dtype)
    up = n > 0
    a = direction * torch.where(up, state.scale_up, state.scale_down)  # signed constant step
    m = direction * torch.where(up, state.slope_up, state.slope_down)  # signed slope
    sigma = device.dw_min_std
    xi = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
    flat = m == 0
    safe_m = torch.where(flat, torch.ones_like(m), m)
    w_f = -a / safe_m
    growth = 1 + m
    if isinstance(device, LinearStepDevice) and not device.mult_noise:
        # w' = (1 + m) w + a + a sigma xi: Gaussian, exact
        mean = w_f + (w - w_f) * growth**count
        # variance a^2 sigma^2 sum_{j < n} (1 + m)^(2j), a geometric sum
        ratio = growth**2
        denominator = 1 - ratio
        near_one = denominator.abs() < 1e-12
        geometric = torch.where(
            near_one,
            count,
            (1 - ratio**count) / torch.where(near_one, torch.ones_like(ratio), denominator),
        )
        sloped = mean + a.abs() * sigma * torch.sqrt(geometric.clamp(min=0)) * xi
    else:
        mean_p = growth**count
        # Var P = (1 + m)^(2n) ((1 + (m sigma / (1 + m))^2)^n - 1), written so that it is
        # exactly 0 without noise (the difference of the two moments loses its last bits)
        relative = (m * sigma / torch.where(growth == 0, torch.ones_like(growth), growth)) ** 2
        variance_p = mean_p**2 * torch.expm1(count * torch.log1p(relative))
        p = mean_p + torch.sqrt(variance_p.clamp(min=0)) * xi
        sloped = w_f + (w - w_f) * p
    linear = w + count * a + a * sigma * torch.sqrt(count) * xi
    out = torch.where(flat, linear, sloped)
    out = torch.where(n == 0, w, out)
    return torch.minimum(torch.maximum(out, state.b_min), state.b_max)


def apply_pulse_counts(
    w: Tensor,
    counts: Tensor,
    state: DeviceState,
    device: PulsedDevice,
    generator: torch.Generator | None = None,
    aggregate: str = "sample",
    closed_form: bool = False,
) -> Tensor:
    """Apply the counts of :func:`analoglib.tiles.pulse.pulse_counts` to the devices.

    With ``aggregate="sample"`` the signed counts ``(batch, *w.shape)`` are applied sample
    after sample, as the hardware does. With ``aggregate="batch"`` the counts ``(2, *w.shape)``
    are the up and the down pulses of a whole batch; they are applied in interleaved rounds,
    one up pulse then one down pulse per round, until both are used up: the batch-aggregated
    approximation, which evaluates every state-dependent step along one interleaved sequence
    instead of the samples' own order. With ``closed_form=True`` (affine devices,
    :func:`apply_pulses_closed_form`) each sample's pulses, or in batch mode all up pulses and
    then all down pulses, are applied at once.
    """
    if aggregate not in ("sample", "batch"):
        raise ValueError(f"aggregate = {aggregate!r} is not allowed: expected 'sample' or 'batch'.")
    if counts.dtype.is_floating_point or tuple(counts.shape[1:]) != tuple(w.shape):
        raise ValueError(
            f"counts of shape {tuple(counts.shape)} and dtype {counts.dtype} are not allowed: "
            f"expected integer pulses of shape (k, *{tuple(w.shape)})."
        )
    if aggregate == "sample":
        out = w
        for sample in counts:
            out = apply_pulses(out, sample, state, device, generator, closed_form)
        return out
    if counts.shape[0] != 2 or bool((counts < 0).any()):
        raise ValueError("batch counts must be (2, ...): the up and the down pulses, both >= 0.")
    if closed_form:
        out = apply_pulses_closed_form(w, counts[0], state, device, generator)
        return apply_pulses_closed_form(out, -counts[1], state, device, generator)
    up, down = counts[0], counts[1]
    out = w.clone()
    rounds = int(torch.maximum(up, down).max().item()) if up.numel() else 0
    for k in range(rounds):
        for direction, n in ((1, up), (-1, down)):
            active = n > k
            noise = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
            stepped = pulse_once(out, direction * active.to(torch.int64), state, device, noise)
            out = torch.where(active, stepped, out)
    return out


def pulse_response(
    device: PulsedDevice,
    pulses: Tensor,
    n_devices: int = 1,
    generator: torch.Generator | None = None,
    w0: float = 0.0,
) -> Tensor:
    """Weight trajectories of ``n_devices`` devices under one pulse sequence.

    Args:
        device: The model.
        pulses: ``(T,)`` of +1 / -1 / 0.
        n_devices: Independent devices (each with its own device-to-device draws).
        generator: Source of every draw.
        w0: Starting weight.

    Returns:
        ``(T + 1, n_devices)``: the weights before the first and after every pulse.
    """
    state = sample_device_state(device, (n_devices,), generator)
    w = torch.full((n_devices,), float(w0)).clamp(state.b_min, state.b_max)
    trace = [w]
    for p in pulses.tolist():
        noise = torch.randn(n_devices, generator=generator)
        w = pulse_once(w, torch.full((n_devices,), int(p)), state, device, noise)
        trace.append(w)
    return torch.stack(trace)
