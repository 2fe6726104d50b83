"""Config groups, presets and converter-resolution helpers.

Expected values come from ``docs/model.md#units`` (resolution convention) and 3.3
(parameter table of the standard model).
"""

from __future__ import annotations

import math

import pytest

from analoglib.config import (
    ClipParameters,
    DriftCompensationParameters,
    ForwardParameters,
    InputRangeParameters,
    MappingParameters,
    PCMConfig,
    PCMNoiseParameters,
    PrePostParameters,
    RemapParameters,
    WeightModifierParameters,
    bits_to_res,
    quantization_step,
)
from analoglib.presets import PRESETS, get_preset, ideal, standard_hwa_2023

# (group class, field, bad value): every one must be refused on construction and on assignment.
BAD_VALUES = [
    (ForwardParameters, "is_perfect", 1),
    (ForwardParameters, "inp_res", 0),
    (ForwardParameters, "inp_res", -254),
    (ForwardParameters, "inp_res", float("nan")),
    (ForwardParameters, "out_res", 0),
    (ForwardParameters, "out_res", -0.5),
    (ForwardParameters, "inp_bound", 0),
    (ForwardParameters, "inp_bound", -1.0),
    (ForwardParameters, "inp_bound", float("inf")),
    (ForwardParameters, "out_bound", 0.0),
    (ForwardParameters, "out_bound", -10.0),
    (ForwardParameters, "out_noise", -0.04),
    (ForwardParameters, "out_noise", float("nan")),
    (ForwardParameters, "out_noise", "0.04"),
    (ForwardParameters, "w_noise", -0.0175),
    (ForwardParameters, "w_noise_type", "gaussian"),
    (ForwardParameters, "w_noise_type", "PCM_READ"),
    (ForwardParameters, "ir_drop", -1.0),
    (ForwardParameters, "ir_drop_g_ratio", 0.0),
    (ForwardParameters, "out_nonlinearity", -0.1),
    (ForwardParameters, "slope_calibration", -1.0),
    (MappingParameters, "max_input_size", -1),
    (MappingParameters, "max_input_size", 512.0),
    (MappingParameters, "max_input_size", True),
    (MappingParameters, "max_output_size", -64),
    (MappingParameters, "weight_scaling_omega", 0.0),
    (MappingParameters, "weight_scaling_omega", 2.0),
    (MappingParameters, "weight_scaling_omega", -0.5),
    (MappingParameters, "weight_scaling_columnwise", "yes"),
    (MappingParameters, "learn_out_scaling", None),
    (PCMNoiseParameters, "g_max_uS", 0.0),
    (PCMNoiseParameters, "g_max_uS", -25.0),
    (PCMNoiseParameters, "g_min_uS", -1.0),
    (PCMNoiseParameters, "g_min_uS", 30.0),
    (PCMNoiseParameters, "t0_s", 0.0),
    (PCMNoiseParameters, "t_read_s", -250e-9),
    (PCMNoiseParameters, "prog_coeff", (0.26348, 1.965)),
    (PCMNoiseParameters, "prog_coeff", (0.26348, float("nan"), -1.1731)),
    (PCMNoiseParameters, "prog_coeff_g_max_reference_uS", 0.0),
    (PCMNoiseParameters, "prog_noise_scale", -1.0),
    (PCMNoiseParameters, "drift_scale", -0.1),
    (PCMNoiseParameters, "read_noise_scale", float("nan")),
    (DriftCompensationParameters, "type", "per_column"),
    (DriftCompensationParameters, "type", None),
    (WeightModifierParameters, "type", "gauss"),
    (WeightModifierParameters, "std_dev", -0.1),
    (WeightModifierParameters, "pdrop", 1.0),
    (WeightModifierParameters, "pdrop", -0.1),
    (WeightModifierParameters, "assumed_wmax", 0.0),
    (WeightModifierParameters, "enable_during_test", "no"),
    (ClipParameters, "type", "soft"),
    (ClipParameters, "fixed_value", 0.0),
    (ClipParameters, "fixed_value", -1.0),
    (ClipParameters, "sigma", 0.0),
    (RemapParameters, "type", "rowwise"),
    (InputRangeParameters, "enable", "on"),
    (InputRangeParameters, "init_value", 0.0),
    (InputRangeParameters, "init_from_data", -1),
    (InputRangeParameters, "init_std_alpha", 0.0),
    (InputRangeParameters, "decay", -0.001),
    (InputRangeParameters, "input_min_percentage", 1.5),
    (InputRangeParameters, "gradient_scale", -1.0),
]


def _ids(case: tuple[type, str, object]) -> str:
    group, name, value = case
    return f"{group.__name__}.{name}={value!r}"


def _check_message(err: pytest.ExceptionInfo[ValueError], name: str, value: object) -> None:
    message = str(err.value)
    assert name in message, message
    assert repr(value) in message, message


@pytest.mark.parametrize("case", BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
def test_bad_value_on_construction_raises(case: tuple[type, str, object]) -> None:
    group, name, value = case
    with pytest.raises(ValueError) as err:
        group(**{name: value})
    _check_message(err, name, value)


@pytest.mark.parametrize("case", BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
def test_bad_value_on_assignment_raises_and_keeps_old_value(case: tuple[type, str, object]) -> None:
    group, name, value = case
    instance = group()
    old = getattr(instance, name)
    with pytest.raises(ValueError) as err:
        setattr(instance, name, value)
    _check_message(err, name, value)
    assert getattr(instance, name) == old


def test_bad_value_inside_full_config_is_refused_and_kept() -> None:
    config = standard_hwa_2023()
    with pytest.raises(ValueError, match=r"forward\.out_noise = -1\.0"):
        config.forward.out_noise = -1.0
    assert config.forward.out_noise == 0.04
    with pytest.raises(ValueError, match=r"pre_post\.input_range\.decay"):
        config.pre_post.input_range.decay = -1.0
    assert config.pre_post.input_range.decay == 0.001


@pytest.mark.parametrize(
    "group",
    [
        "forward",
        "mapping",
        "noise_model",
        "drift_compensation",
        "modifier",
        "clip",
        "remap",
        "pre_post",
    ],
)
def test_group_of_wrong_type_is_refused(group: str) -> None:
    config = PCMConfig()
    old = getattr(config, group)
    with pytest.raises(ValueError, match=group):
        setattr(config, group, 5)
    assert getattr(config, group) is old
    with pytest.raises(ValueError, match=group):
        PCMConfig(**{group: "nope"})


def test_out_bound_none_requires_out_res_none() -> None:
    forward = ForwardParameters()
    with pytest.raises(ValueError, match="out_res") as err:
        forward.out_bound = None
    assert "out_bound" in str(err.value)
    assert forward.out_bound == 10.0
    # Switching the ADC off in the right order is allowed.
    forward.out_res = None
    forward.out_bound = None
    assert forward.out_bound is None
    with pytest.raises(ValueError, match="out_nonlinearity"):
        forward.out_nonlinearity = 0.5
    assert forward.out_nonlinearity == 0.0


@pytest.mark.parametrize(
    "target",
    [
        ForwardParameters(),
        MappingParameters(),
        PCMNoiseParameters(),
        WeightModifierParameters(),
        InputRangeParameters(),
        PCMConfig(),
    ],
)
def test_unknown_field_raises_attribute_error(target: object) -> None:
    with pytest.raises(AttributeError, match="no field 'out_noize'"):
        target.out_noize = 0.1  # type: ignore[attr-defined]
    assert not hasattr(target, "out_noize")


@pytest.mark.parametrize("name", ["nope", "", "Standard_HWA_2023"])
def test_unknown_preset_raises(name: str) -> None:
    with pytest.raises(ValueError, match=repr(name)):
        get_preset(name)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_get_preset_returns_fresh_equal_configs(name: str) -> None:
    a, b = get_preset(name), PRESETS[name]()
    assert a.differences(b) == []
    a.forward.out_noise = 0.123  # a new object every call
    assert get_preset(name).forward.out_noise != 0.123


def test_standard_preset_matches_reference_table() -> None:
    """Every row of the parameter table in ``docs/presets.md#standard-hwa-2023``."""
    c = standard_hwa_2023()
    assert (c.mapping.max_input_size, c.mapping.max_output_size) == (512, 0)
    assert c.mapping.weight_scaling_omega == 1.0 and c.mapping.weight_scaling_columnwise
    assert c.mapping.learn_out_scaling and c.mapping.out_scaling_columnwise
    assert c.remap.type == "channelwise_symmetric"
    assert (c.clip.type, c.clip.fixed_value) == ("fixed_value", 1.0)
    f = c.forward
    assert not f.is_perfect
    assert (f.inp_res, f.inp_bound, f.out_res, f.out_bound) == (254, 1.0, 254, 10.0)
    assert (f.out_noise, f.w_noise, f.w_noise_type) == (0.04, 0.0175, "pcm_read")
    assert f.ir_drop == 1.0
    assert f.ir_drop_g_ratio == pytest.approx(571428.57, rel=1e-8)
    assert f.out_nonlinearity == 0.0
    r = c.pre_post.input_range
    assert r.enable and r.learn_input_range
    assert (r.init_value, r.init_from_data, r.init_std_alpha) == (3.0, 100, 3.0)
    assert (r.decay, r.input_min_percentage, r.gradient_relative, r.gradient_scale) == (
        0.001,
        0.95,
        True,
        1.0,
    )
    n = c.noise_model
    assert (n.g_max_uS, n.g_min_uS, n.t0_s, n.t_read_s) == (25.0, 0.0, 20.0, 250e-9)
    assert n.prog_coeff == (0.26348, 1.9650, -1.1731)
    assert (n.prog_noise_scale, n.drift_scale, n.read_noise_scale) == (1.0, 1.0, 1.0)
    assert c.drift_compensation.type == "global"
    assert c.modifier.type == "none"
    # The dataclass defaults are the standard model too.
    assert PCMConfig().differences(c) == []


def test_ideal_preset_switches_every_nonideality_off() -> None:
    c = ideal()
    f = c.forward
    assert f.is_perfect
    assert (f.inp_res, f.out_res, f.out_bound) == (None, None, None)
    assert (f.out_noise, f.w_noise, f.ir_drop, f.out_nonlinearity) == (0.0, 0.0, 0.0, 0.0)
    n = c.noise_model
    assert (n.prog_noise_scale, n.drift_scale, n.read_noise_scale) == (0.0, 0.0, 0.0)
    assert c.drift_compensation.type == "none"
    assert c.clip.type == "none"
    assert not c.pre_post.input_range.enable
    # Tiling is kept so that it is exercised.
    assert c.mapping.max_input_size == 512


def test_config_dict_round_trip_and_differences() -> None:
    config = standard_hwa_2023()
    config.forward.out_noise = 0.06
    config.noise_model.prog_coeff = (0.1, 0.2, 0.3)
    config.pre_post.input_range.init_value = 2.5
    restored = PCMConfig.from_dict(config.to_dict())
    assert restored.differences(config) == []
    assert restored.noise_model.prog_coeff == (0.1, 0.2, 0.3)
    diff = standard_hwa_2023().differences(config)
    assert sorted(diff) == sorted(
        [
            "forward.out_noise: 0.04 != 0.06",
            "noise_model.prog_coeff: [0.26348, 1.965, -1.1731] != [0.1, 0.2, 0.3]",
            "pre_post.input_range.init_value: 3.0 != 2.5",
        ]
    )


def test_copy_is_independent() -> None:
    config = standard_hwa_2023()
    clone = config.copy()
    clone.forward.w_noise = 0.0
    clone.pre_post.input_range.enable = False
    assert config.forward.w_noise == 0.0175
    assert config.pre_post.input_range.enable


@pytest.mark.parametrize(
    "data",
    [{"forwards": {}}, {"forward": {"out_noize": 0.1}}, {"forward": {"out_noise": -1.0}}],
)
def test_from_dict_refuses_unknown_or_bad_entries(data: dict) -> None:
    with pytest.raises(ValueError):
        PCMConfig.from_dict(data)


# -- converter resolution ----------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 10])
def test_bits_to_res(bits: int) -> None:
    # A signed b-bit converter has levels k / (2^(b-1) - 1): 2 * (2^(b-1) - 1) steps.
    assert bits_to_res(bits) == 2 * (2 ** (bits - 1) - 1)


def test_bits_to_res_reference_values() -> None:
    assert bits_to_res(8) == 254
    assert bits_to_res(6) == 62


@pytest.mark.parametrize("bits", [0, 1, -8, 8.0, True, "8"])
def test_bits_to_res_refuses_bad_bits(bits: object) -> None:
    with pytest.raises(ValueError, match="bits"):
        bits_to_res(bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", [1.0, 10.0, 0.5])
def test_steps_and_fraction_give_the_same_step(bound: float) -> None:
    step = quantization_step(254, bound)
    assert step == pytest.approx(2 * bound / 254, rel=1e-14)
    assert quantization_step(1 / 254, bound) == pytest.approx(step, rel=1e-14)


def test_quantization_step_reference_values() -> None:
    assert quantization_step(254, 1.0) == pytest.approx(1 / 127, rel=1e-14)
    assert round(quantization_step(254, 10.0), 4) == 0.0787  # ``docs/model.md#units``
    assert quantization_step(None, 1.0) is None
    # res = 1 is a step of the whole range.
    assert quantization_step(1, 3.0) == pytest.approx(6.0)
    assert math.isclose(quantization_step(bits_to_res(6), 1.0), 1 / 31, rel_tol=1e-14)


def test_prepost_holds_input_range_group() -> None:
    with pytest.raises(ValueError, match="input_range"):
        PrePostParameters(input_range={"enable": True})  # type: ignore[arg-type]
