"""Configuration groups of the simulated AIMC crossbar.

The groups mirror aihwkit's ``InferenceRPUConfig`` (``forward``, ``mapping``, ``noise_model``,
``drift_compensation``, ``modifier``, ``clip``, ``remap``, ``pre_post``) so that an aihwkit user
can translate a configuration line by line. Every field is validated when a group is built and
whenever a field is assigned later; a bad value raises a ``ValueError`` that names the field,
the value and what is allowed.

Units are normalised (inputs and weights in [-1, 1], weight 1 <-> ``g_max_uS``) unless a name
says otherwise (``_uS`` for microsiemens, ``_s`` for seconds).

References:
    Rasch et al. 2023 (standard AIMC crossbar model); ``docs/model.md#units``,
    ``docs/presets.md#standard-hwa-2023``, ``docs/aihwkit.md#aihwkit-defaults``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ClipParameters",
    "DriftCompensationParameters",
    "ForwardParameters",
    "InputRangeParameters",
    "MappingParameters",
    "PCMConfig",
    "PCMNoiseParameters",
    "PrePostParameters",
    "RemapParameters",
    "WeightModifierParameters",
    "bits_to_res",
    "quantization_step",
]


def _fail(group: str, name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{group}.{name} = {value!r} is not allowed: expected {allowed}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_finite(group: str, name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value):
        _fail(group, name, value, "a finite number")


def _check_non_negative(group: str, name: str, value: Any) -> None:
    _check_finite(group, name, value)
    if value < 0:
        _fail(group, name, value, "a finite number >= 0")


def _check_positive(group: str, name: str, value: Any) -> None:
    _check_finite(group, name, value)
    if value <= 0:
        _fail(group, name, value, "a finite number > 0")


def _check_fraction(group: str, name: str, value: Any) -> None:
    _check_finite(group, name, value)
    if not 0 <= value <= 1:
        _fail(group, name, value, "a number in [0, 1]")


def _check_choice(group: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(group, name, value, "one of " + ", ".join(repr(c) for c in choices))


def _check_bool(group: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(group, name, value, "True or False")


def _check_size(group: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _fail(group, name, value, "an integer >= 1, or 0 for no split")


def _check_resolution(group: str, name: str, value: Any) -> None:
    if value is None:
        return
    _check_finite(group, name, value)
    if value <= 0:
        _fail(
            group,
            name,
            value,
            "a number of steps > 1, a step fraction in (0, 1], or None to switch quantisation off",
        )


def bits_to_res(bits: int) -> int:
    """Number of quantisation steps of a signed converter with ``bits`` bits.

    A signed ``b``-bit converter has the symmetric levels ``k / (2**(b-1) - 1)``, i.e.
    ``2**b - 2`` steps over ``[-bound, bound]`` (8 bit -> 254 steps, as in the standard model).

    Args:
        bits: Converter resolution in bits, at least 2.

    Returns:
        The ``inp_res`` / ``out_res`` value (number of steps).

    Raises:
        ValueError: If ``bits`` is not an integer >= 2.

    References:
        ``docs/model.md#units``.
    """
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 2:
        raise ValueError(f"bits = {bits!r} is not allowed: expected an integer >= 2.")
    return 2**bits - 2


def quantization_step(res: float | None, bound: float) -> float | None:
    """Quantisation step of a converter over ``[-bound, bound]``.

    Args:
        res: Resolution as in aihwkit: a value > 1 is a number of steps, a value in (0, 1] is the
            step as a fraction of the full range ``2 * bound``; ``None`` means no quantisation.
        bound: Converter bound (normalised units).

    Returns:
        The step in normalised units, or ``None`` when quantisation is off.

    References:
        ``docs/model.md#units`` (254 and 1/254 are the same setting).
    """
    if res is None:
        return None
    fraction = 1.0 / res if res > 1 else res
    return fraction * 2.0 * bound


class _Group:
    """Base of the config groups: validates on construction and on every assignment."""

    _group_name: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "_ready", True)

    def __setattr__(self, name: str, value: Any) -> None:
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        if name not in names:
            raise AttributeError(
                f"{self._group_name} has no field {name!r}; its fields are: {', '.join(names)}."
            )
        if not getattr(self, "_ready", False):
            object.__setattr__(self, name, value)
            return
        old = getattr(self, name)
        object.__setattr__(self, name, value)
        try:
            self.validate()
        except ValueError:
            object.__setattr__(self, name, old)
            raise

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one."""


@dataclass
class ForwardParameters(_Group):
    """Forward (read) path of one crossbar tile: converters and analog nonidealities.

    Attributes:
        is_perfect: If True, the tile computes an exact matrix-vector product and every other
            field of this group is ignored.
        inp_res: DAC resolution: steps (> 1), step fraction ((0, 1]) or ``None`` (off).
            254 steps over [-1, 1] give the 8-bit signed levels ``k/127``.
        inp_bound: DAC bound (normalised input units), > 0.
        out_res: ADC resolution, same convention as ``inp_res``.
        out_bound: ADC bound (normalised output units), > 0, or ``None`` for an unbounded ADC.
            10 means ten fully-on inputs at maximum weight saturate the ADC.
        out_noise: Standard deviation of the additive Gaussian output noise, per output and MVM.
        w_noise: Short-term weight (read) noise strength, output-referred.
        w_noise_type: ``"pcm_read"`` (sigma * sqrt(sum_j |W_ij| x_j^2)), ``"additive_constant"``
            (sigma * ||x||_2) or ``"none"``.
        ir_drop: Scale of the static IR-drop approximation (0 switches it off).
        ir_drop_g_ratio: Wire conductance over device conductance, 1 / (0.35 Ohm * 5 uS).
        out_nonlinearity: Strength of the S-shaped ADC nonlinearity (0 switches it off).
        slope_calibration: Slope calibration of the S-shaped nonlinearity (0: none).

    References:
        Rasch et al. 2023; ``docs/model.md#forward-order``, ``docs/model.md#ir-drop``.
    """

    _group_name: ClassVar[str] = "forward"

    is_perfect: bool = False
    inp_res: float | None = 254
    inp_bound: float = 1.0
    out_res: float | None = 254
    out_bound: float | None = 10.0
    out_noise: float = 0.04
    w_noise: float = 0.0175
    w_noise_type: str = "pcm_read"
    ir_drop: float = 1.0
    ir_drop_g_ratio: float = 1.0 / (0.35 * 5e-6)
    out_nonlinearity: float = 0.0
    slope_calibration: float = 0.0

    W_NOISE_TYPES: ClassVar[tuple[str, ...]] = ("none", "pcm_read", "additive_constant")

    def validate(self) -> None:
        g = self._group_name
        _check_bool(g, "is_perfect", self.is_perfect)
        _check_resolution(g, "inp_res", self.inp_res)
        _check_positive(g, "inp_bound", self.inp_bound)
        _check_resolution(g, "out_res", self.out_res)
        if self.out_bound is not None:
            _check_positive(g, "out_bound", self.out_bound)
        _check_non_negative(g, "out_noise", self.out_noise)
        _check_non_negative(g, "w_noise", self.w_noise)
        _check_choice(g, "w_noise_type", self.w_noise_type, self.W_NOISE_TYPES)
        _check_non_negative(g, "ir_drop", self.ir_drop)
        _check_positive(g, "ir_drop_g_ratio", self.ir_drop_g_ratio)
        _check_non_negative(g, "out_nonlinearity", self.out_nonlinearity)
        _check_non_negative(g, "slope_calibration", self.slope_calibration)
        if self.out_bound is None and self.out_res is not None:
            _fail(g, "out_res", self.out_res, "None when out_bound is None (no range to quantise)")
        if self.out_bound is None and self.out_nonlinearity > 0:
            _fail(
                g,
                "out_nonlinearity",
                self.out_nonlinearity,
                "0 when out_bound is None (the nonlinearity is relative to the ADC bound)",
            )


@dataclass
class MappingParameters(_Group):
    """How a layer's weight matrix is mapped onto crossbar tiles.

    Attributes:
        max_input_size: Most rows (inputs) of one tile; larger layers are split along the input
            dimension into equal parts whose outputs are summed digitally. 0: no split.
        max_output_size: Most columns (outputs) of one tile; 0: no split (the standard model).
        weight_scaling_omega: Each column's (or tile's) abs-max weight is mapped to this value
            (``omega``), i.e. to ``omega * g_max``. Must be in (0, 1].
        weight_scaling_columnwise: Normalise per column (True) or per tile (False).
        learn_out_scaling: Keep a learnable digital output scale ``gamma`` (init 1).
        out_scaling_columnwise: One ``gamma`` per column (True) or per tile (False).

    References:
        ``docs/model.md#tiling``, ``docs/presets.md#standard-hwa-2023``,
        ``docs/model.md#periphery``.
    """

    _group_name: ClassVar[str] = "mapping"

    max_input_size: int = 512
    max_output_size: int = 0
    weight_scaling_omega: float = 1.0
    weight_scaling_columnwise: bool = True
    learn_out_scaling: bool = True
    out_scaling_columnwise: bool = True

    def validate(self) -> None:
        g = self._group_name
        _check_size(g, "max_input_size", self.max_input_size)
        _check_size(g, "max_output_size", self.max_output_size)
        _check_positive(g, "weight_scaling_omega", self.weight_scaling_omega)
        if self.weight_scaling_omega > 1:
            _fail(g, "weight_scaling_omega", self.weight_scaling_omega, "a number in (0, 1]")
        _check_bool(g, "weight_scaling_columnwise", self.weight_scaling_columnwise)
        _check_bool(g, "learn_out_scaling", self.learn_out_scaling)
        _check_bool(g, "out_scaling_columnwise", self.out_scaling_columnwise)


@dataclass
class PCMNoiseParameters(_Group):
    """Long-term PCM statistics: programming noise, drift and accumulated 1/f read noise.

    Attributes:
        g_max_uS: Conductance of weight 1 (uS).
        g_min_uS: Conductance of weight 0 (uS), the off device of the differential pair.
        t0_s: Time after programming at which drift starts to count (s).
        t_read_s: Duration of one read (s), enters the 1/f read-noise factor.
        prog_coeff: Polynomial (c0, c1, c2) of the programming-noise sigma in uS, in the target
            conductance relative to ``g_max``; referenced to ``prog_coeff_g_max_reference_uS``.
        prog_coeff_g_max_reference_uS: Conductance the polynomial was fitted at (uS).
        prog_noise_scale: Multiplies the programming-noise sigma (0 switches it off).
        drift_scale: Multiplies every drift exponent nu (0 switches drift off).
        read_noise_scale: Multiplies the accumulated 1/f read noise (0 switches it off).
        stuck_fraction: Probability that a device is stuck (defective), drawn independently
            for each device (both devices of every pair) at programming time. 0 switches
            stuck devices off (the standard model).
        stuck_kind: Where a stuck device sits: ``"reset"`` (0 uS, the reset state),
            ``"g_max"`` (at ``g_max_uS``) or ``"random"`` (uniform in [0, ``g_max_uS``], drawn
            per device). A stuck device ignores programming (no programming noise) and then
            behaves as a PCM device at that conductance: its drift exponent is drawn from the
            stuck conductance and it shows 1/f read noise like any device. With
            ``pair_model="net_weight"`` the stuck value enters the net programmed weight,
            which is then re-split like any other.
        pair_model: Which devices drift and show read noise after programming.
            ``"net_weight"`` (aihwkit's convention, the default): the programmed pair is
            turned back into its net weight, which is rescaled so that the tile's largest
            programmed |weight| maps to ``g_max`` and put on one device per sign (the other at
            ``g_min``); drift and 1/f read noise act on that re-split pair, with the drift
            exponents drawn from the target pair. ``"two_devices"``: each programmed device
            keeps its own conductance and drifts and reads with its own noise (the off device
            included).

    References:
        Nandakumar et al. 2019; Rasch et al. 2023 (stuck-at faults); ``docs/model.md#pcm``,
        ``docs/model.md#pair-model``, ``docs/aihwkit.md#differences``,
        ``docs/model.md#hwa-noise`` (PCM_NOISE step 2),
        ``docs/published-results.md#rasch-2023``.
    """

    _group_name: ClassVar[str] = "noise_model"

    g_max_uS: float = 25.0
    g_min_uS: float = 0.0
    t0_s: float = 20.0
    t_read_s: float = 250e-9
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    prog_coeff_g_max_reference_uS: float = 25.0
    prog_noise_scale: float = 1.0
    drift_scale: float = 1.0
    read_noise_scale: float = 1.0
    stuck_fraction: float = 0.0
    stuck_kind: str = "reset"
    pair_model: str = "net_weight"

    STUCK_KINDS: ClassVar[tuple[str, ...]] = ("reset", "g_max", "random")
    PAIR_MODELS: ClassVar[tuple[str, ...]] = ("net_weight", "two_devices")

    def validate(self) -> None:
        g = self._group_name
        _check_positive(g, "g_max_uS", self.g_max_uS)
        _check_non_negative(g, "g_min_uS", self.g_min_uS)
        if self.g_min_uS >= self.g_max_uS:
            _fail(g, "g_min_uS", self.g_min_uS, f"a value below g_max_uS = {self.g_max_uS}")
        _check_positive(g, "t0_s", self.t0_s)
        _check_positive(g, "t_read_s", self.t_read_s)
        if not isinstance(self.prog_coeff, (tuple, list)) or len(self.prog_coeff) != 3:
            _fail(g, "prog_coeff", self.prog_coeff, "three finite numbers (c0, c1, c2)")
        for c in self.prog_coeff:
            if not _is_number(c) or not math.isfinite(c):
                _fail(g, "prog_coeff", self.prog_coeff, "three finite numbers (c0, c1, c2)")
        object.__setattr__(self, "prog_coeff", tuple(float(c) for c in self.prog_coeff))
        _check_positive(g, "prog_coeff_g_max_reference_uS", self.prog_coeff_g_max_reference_uS)
        _check_non_negative(g, "prog_noise_scale", self.prog_noise_scale)
        _check_non_negative(g, "drift_scale", self.drift_scale)
        _check_non_negative(g, "read_noise_scale", self.read_noise_scale)
        _check_fraction(g, "stuck_fraction", self.stuck_fraction)
        _check_choice(g, "stuck_kind", self.stuck_kind, self.STUCK_KINDS)
        _check_choice(g, "pair_model", self.pair_model, self.PAIR_MODELS)


@dataclass
class DriftCompensationParameters(_Group):
    """Drift compensation applied in evaluation mode.

    Attributes:
        type: ``"global"`` (one scalar per tile, from one-hot read-outs at programming and at
            inference time) or ``"none"``.

    References:
        ``docs/model.md#gdc``.
    """

    _group_name: ClassVar[str] = "drift_compensation"

    type: str = "global"

    TYPES: ClassVar[tuple[str, ...]] = ("none", "global")

    def validate(self) -> None:
        _check_choice(self._group_name, "type", self.type, self.TYPES)


@dataclass
class WeightModifierParameters(_Group):
    """Weight noise injected during hardware-aware training (one draw per mini-batch).

    Attributes:
        type: ``"none"``, ``"add_normal"`` (w += std_dev * a * xi), ``"mult_normal"``
            (w += w * std_dev * a * xi), ``"prog_noise"`` (PCM-like programming noise,
            sigma = std_dev / g_max * sum_k c_k (|w|/a)^k, w <- sign(w) |w + a sigma xi|) or
            ``"pcm_noise"`` (programming noise, drift variation without mean drift and 1/f read
            noise of the PCM statistics at ``pcm_t_inference_s``, section 9).
        std_dev: Noise strength (relative to the weight abs-max ``a``; for ``prog_noise`` and
            ``pcm_noise`` a multiple of the PCM statistics, e.g. 3.0 in the ResNet recipe).
        pdrop: Probability of dropping a weight to 0 (drop-connect), in [0, 1).
        rel_to_actual_wmax: Use the actual abs-max of the tile as ``a`` (else ``assumed_wmax``).
        assumed_wmax: ``a`` when ``rel_to_actual_wmax`` is False.
        enable_during_test: Also apply the modifier in evaluation mode.
        coeffs: Polynomial (c0, c1, c2) of the programming-noise sigma in uS, in ``|w| / a``
            (``prog_noise``) or ``|g| / g_max`` (``pcm_noise``).
        g_max_uS: Conductance of the weight abs-max ``a`` (uS).
        pcm_t_inference_s: Time after programming of the ``pcm_noise`` statistics (s).
        pcm_t0_s: Reference time ``t0`` of the ``pcm_noise`` drift and read noise (s).

    The strength can be ramped during training without changing the config: see
    :func:`analoglib.training.set_modifier_strength`.

    References:
        ``docs/model.md#hwa-noise``, ``docs/model.md#hwa-training``.
    """

    _group_name: ClassVar[str] = "modifier"

    type: str = "none"
    std_dev: float = 0.0
    pdrop: float = 0.0
    rel_to_actual_wmax: bool = True
    assumed_wmax: float = 1.0
    enable_during_test: bool = False
    coeffs: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    g_max_uS: float = 25.0
    pcm_t_inference_s: float = 0.0
    pcm_t0_s: float = 20.0

    TYPES: ClassVar[tuple[str, ...]] = (
        "none",
        "add_normal",
        "mult_normal",
        "prog_noise",
        "pcm_noise",
    )

    def validate(self) -> None:
        g = self._group_name
        _check_choice(g, "type", self.type, self.TYPES)
        _check_non_negative(g, "std_dev", self.std_dev)
        _check_finite(g, "pdrop", self.pdrop)
        if not 0 <= self.pdrop < 1:
            _fail(g, "pdrop", self.pdrop, "a probability in [0, 1)")
        _check_bool(g, "rel_to_actual_wmax", self.rel_to_actual_wmax)
        _check_positive(g, "assumed_wmax", self.assumed_wmax)
        _check_bool(g, "enable_during_test", self.enable_during_test)
        if not isinstance(self.coeffs, (tuple, list)) or len(self.coeffs) != 3:
            _fail(g, "coeffs", self.coeffs, "three finite numbers (c0, c1, c2)")
        for c in self.coeffs:
            if not _is_number(c) or not math.isfinite(c):
                _fail(g, "coeffs", self.coeffs, "three finite numbers (c0, c1, c2)")
        object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))
        _check_positive(g, "g_max_uS", self.g_max_uS)
        _check_non_negative(g, "pcm_t_inference_s", self.pcm_t_inference_s)
        _check_positive(g, "pcm_t0_s", self.pcm_t0_s)


@dataclass
class ClipParameters(_Group):
    """Clipping of the normalised weights after each optimiser step.

    Attributes:
        type: ``"none"``, ``"fixed_value"`` (clip at +-fixed_value) or ``"layer_gaussian"``
            (clip at +-sigma * std(W) of each tile, capped by ``fixed_value`` if > 0).
        fixed_value: Clip value (normalised weight units).
        sigma: Multiple of the weight standard deviation for ``"layer_gaussian"``.

    References:
        ``docs/model.md#hwa-noise``.
    """

    _group_name: ClassVar[str] = "clip"

    type: str = "fixed_value"
    fixed_value: float = 1.0
    sigma: float = 2.5

    TYPES: ClassVar[tuple[str, ...]] = ("none", "fixed_value", "layer_gaussian")

    def validate(self) -> None:
        g = self._group_name
        _check_choice(g, "type", self.type, self.TYPES)
        _check_finite(g, "fixed_value", self.fixed_value)
        if self.type == "fixed_value" and self.fixed_value <= 0:
            _fail(g, "fixed_value", self.fixed_value, "a number > 0 for type 'fixed_value'")
        _check_positive(g, "sigma", self.sigma)


@dataclass
class RemapParameters(_Group):
    """Re-normalisation of the weights after each optimiser step (scale absorbed digitally).

    Attributes:
        type: ``"none"``, ``"layerwise_symmetric"`` or ``"channelwise_symmetric"``.

    References:
        ``docs/model.md#hwa-noise``.
    """

    _group_name: ClassVar[str] = "remap"

    type: str = "channelwise_symmetric"

    TYPES: ClassVar[tuple[str, ...]] = ("none", "layerwise_symmetric", "channelwise_symmetric")

    def validate(self) -> None:
        _check_choice(self._group_name, "type", self.type, self.TYPES)


@dataclass
class InputRangeParameters(_Group):
    """Digital input range ``r`` of each tile: x -> clip(x, -r, r) / r before the DAC.

    Attributes:
        enable: Use an input range (otherwise inputs go to the DAC unscaled).
        learn_input_range: Let ``r`` receive gradients.
        init_value: Initial ``r``.
        init_from_data: Number of training batches over which ``r`` is initialised as a running
            mean of ``init_std_alpha * std(x)`` (0: keep ``init_value``).
        init_std_alpha: Multiple of the input standard deviation used for the initialisation.
        decay: Relative shrink of ``r`` per step while most inputs are inside the range.
        input_min_percentage: Fraction of unclipped inputs above which ``decay`` applies.
        gradient_relative: Scale the gradient of ``r`` by ``r``.
        gradient_scale: Extra factor on the gradient of ``r``.

    References:
        ``docs/presets.md#standard-hwa-2023``, ``docs/model.md#periphery``.
    """

    _group_name: ClassVar[str] = "pre_post.input_range"

    enable: bool = True
    learn_input_range: bool = True
    init_value: float = 3.0
    init_from_data: int = 100
    init_std_alpha: float = 3.0
    decay: float = 0.001
    input_min_percentage: float = 0.95
    gradient_relative: bool = True
    gradient_scale: float = 1.0

    def validate(self) -> None:
        g = self._group_name
        _check_bool(g, "enable", self.enable)
        _check_bool(g, "learn_input_range", self.learn_input_range)
        _check_positive(g, "init_value", self.init_value)
        if not isinstance(self.init_from_data, int) or self.init_from_data < 0:
            _fail(g, "init_from_data", self.init_from_data, "an integer >= 0")
        _check_positive(g, "init_std_alpha", self.init_std_alpha)
        _check_non_negative(g, "decay", self.decay)
        _check_fraction(g, "input_min_percentage", self.input_min_percentage)
        _check_bool(g, "gradient_relative", self.gradient_relative)
        _check_non_negative(g, "gradient_scale", self.gradient_scale)


@dataclass
class PrePostParameters(_Group):
    """Digital pre- and post-processing around the tiles (as aihwkit's ``pre_post``)."""

    _group_name: ClassVar[str] = "pre_post"

    input_range: InputRangeParameters = field(default_factory=InputRangeParameters)

    def validate(self) -> None:
        if not isinstance(self.input_range, InputRangeParameters):
            _fail(self._group_name, "input_range", self.input_range, "InputRangeParameters")


_GROUP_TYPES: dict[str, Callable[..., _Group]] = {
    "forward": ForwardParameters,
    "mapping": MappingParameters,
    "noise_model": PCMNoiseParameters,
    "drift_compensation": DriftCompensationParameters,
    "modifier": WeightModifierParameters,
    "clip": ClipParameters,
    "remap": RemapParameters,
    "pre_post": PrePostParameters,
}


@dataclass
class PCMConfig(_Group):
    """Complete configuration of the simulated PCM crossbar.

    The analogue of aihwkit's ``InferenceRPUConfig``.
    The defaults are the standard AIMC model of Rasch et al. 2023 (see
    :func:`analoglib.presets.standard_hwa_2023`). Use :meth:`to_dict` / :meth:`from_dict` to
    store a configuration next to results, and :meth:`differences` to compare two of them.

    References:
        Rasch et al. 2023; ``docs/presets.md#standard-hwa-2023``.
    """

    _group_name: ClassVar[str] = "PCMConfig"

    forward: ForwardParameters = field(default_factory=ForwardParameters)
    mapping: MappingParameters = field(default_factory=MappingParameters)
    noise_model: PCMNoiseParameters = field(default_factory=PCMNoiseParameters)
    drift_compensation: DriftCompensationParameters = field(
        default_factory=DriftCompensationParameters
    )
    modifier: WeightModifierParameters = field(default_factory=WeightModifierParameters)
    clip: ClipParameters = field(default_factory=ClipParameters)
    remap: RemapParameters = field(default_factory=RemapParameters)
    pre_post: PrePostParameters = field(default_factory=PrePostParameters)

    def validate(self) -> None:
        for name, group_type in _GROUP_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, group_type):  # type: ignore[arg-type]
                _fail(self._group_name, name, value, group_type.__name__)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every field (JSON-serialisable)."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PCMConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        groups: dict[str, Any] = {}
        for name, values in data.items():
            if name not in _GROUP_TYPES:
                raise ValueError(
                    f"PCMConfig has no group {name!r}; its groups are: {', '.join(_GROUP_TYPES)}."
                )
            values = dict(values)
            if name == "pre_post":
                values["input_range"] = InputRangeParameters(**values["input_range"])
            if name == "noise_model" and "prog_coeff" in values:
                values["prog_coeff"] = tuple(values["prog_coeff"])
            try:
                groups[name] = _GROUP_TYPES[name](**values)
            except TypeError as err:
                raise ValueError(f"PCMConfig.{name}: {err}") from err
        return cls(**groups)

    def copy(self) -> PCMConfig:
        """Independent deep copy."""
        return PCMConfig.from_dict(self.to_dict())

    def differences(self, other: PCMConfig) -> list[str]:
        """Fields that differ, as ``"group.field: self_value != other_value"`` lines."""
        return _diff(self.to_dict(), other.to_dict(), prefix="")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            lines += _diff(va, vb, prefix=f"{prefix}{key}.")
        elif va != vb:
            lines.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return lines
