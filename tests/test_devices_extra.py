"""Write noise, decay, reset, one-sided pairs, new presets and the device fit.

Reference: docs/devices.md (write noise, decay and reset, one-sided pairs, device fit).
"""

from __future__ import annotations

import math

import pytest
import torch

from analoglib import devices as dv

QUIET = {
    "dw_min_dtod": 0.0,
    "up_down_dtod": 0.0,
    "w_max_dtod": 0.0,
    "w_min_dtod": 0.0,
    "dw_min_std": 0.0,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- decay ------------------------------------------------------------------------------------
def test_decay_follows_the_lifetime_power_toward_the_reset_value_exactly() -> None:
    device = dv.ConstantStepDevice(**QUIET, lifetime=50.0, reset=0.1, w_max=1.0, w_min=-1.0)
    state = dv.sample_device_state(device, (4, 5), _gen())
    w0 = torch.rand((4, 5), generator=_gen(1)) * 1.6 - 0.8
    w = w0
    for _ in range(7):
        w = dv.decay_weights(w, state, device)
    expected = 0.1 + (w0 - 0.1) * (1 - 1 / 50.0) ** 7
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    # alpha scales the rate: s = 1 + alpha (decay_scale - 1)
    half = dv.decay_weights(w0, state, device, alpha=0.5)
    torch.testing.assert_close(half, 0.1 + (w0 - 0.1) * (1 - 0.5 / 50.0), rtol=0, atol=1e-6)


def test_decay_without_lifetime_is_a_no_op_and_bad_alpha_is_refused() -> None:
    device = dv.SoftBoundsDevice()
    state = dv.sample_device_state(device, (3,), _gen())
    w = torch.tensor([0.3, -0.2, 0.0])
    assert dv.decay_weights(w, state, device) is w
    with pytest.raises(ValueError, match="alpha"):
        dv.decay_weights(w, state, device.replace(lifetime=10.0), alpha=-1.0)


def test_lifetime_device_to_device_spread_and_the_short_lifetime_rule() -> None:
    n = 40_000
    device = dv.ConstantStepDevice(lifetime=100.0, lifetime_dtod=0.3)
    state = dv.sample_device_state(device, (n,), _gen(2))
    alive = state.decay_scale > 0
    lifetime = 1 / (1 - state.decay_scale[alive])
    # t = 100 (1 + 0.3 xi); t <= 1 (xi < -3.3, ~4e-4 of the devices) gives decay_scale 0
    assert lifetime.mean().item() == pytest.approx(100.0, abs=5 * 30 / math.sqrt(n))
    assert lifetime.std().item() == pytest.approx(30.0, rel=0.03)
    assert (~alive).sum().item() < 0.002 * n


def test_new_fields_do_not_change_the_draws_of_other_devices() -> None:
    plain = dv.sample_device_state(dv.SoftBoundsDevice(), (50,), _gen(3))
    leaky = dv.sample_device_state(dv.SoftBoundsDevice(lifetime=20.0, reset=0.2), (50,), _gen(3))
    for name in ("b_max", "b_min", "scale_up", "scale_down"):
        torch.testing.assert_close(getattr(plain, name), getattr(leaky, name))
    torch.testing.assert_close(leaky.decay_scale, torch.full((50,), 0.95))
    torch.testing.assert_close(leaky.reset_bias, torch.full((50,), 0.2))
    torch.testing.assert_close(plain.decay_scale, torch.ones(50))


# ---- reset -----------------------------------------------------------------------------------
def test_reset_sets_the_masked_devices_to_the_reset_value_with_its_spreads() -> None:
    n = 40_000
    device = dv.ConstantStepDevice(reset=0.05, reset_dtod=0.02, reset_std=0.01, w_min=-1.0)
    state = dv.sample_device_state(device, (n,), _gen(4))
    # reset value per device: reset + reset_dtod xi (additive)
    assert state.reset_bias.mean().item() == pytest.approx(0.05, abs=5 * 0.02 / math.sqrt(n))
    assert state.reset_bias.std().item() == pytest.approx(0.02, rel=0.03)
    w = torch.full((n,), 0.4)
    mask = torch.arange(n) % 2 == 0
    out = dv.reset_weights(w, mask, state, device, _gen(5))
    assert (out[~mask] == 0.4).all()
    offset = (out - state.reset_bias)[mask]  # the cycle-to-cycle part
    m = int(mask.sum())
    assert offset.mean().item() == pytest.approx(0.0, abs=5 * 0.01 / math.sqrt(m))
    assert offset.std().item() == pytest.approx(0.01, rel=5 / math.sqrt(2 * m))


def test_reset_is_clipped_to_the_bounds_and_checks_the_mask_shape() -> None:
    device = dv.ConstantStepDevice(**QUIET, w_min=0.0, w_max=1.0, reset=-0.5, reset_std=0.0)
    state = dv.sample_device_state(device, (3,), _gen())
    out = dv.reset_weights(torch.full((3,), 0.7), None, state, device, _gen(1))
    torch.testing.assert_close(out, torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        dv.reset_weights(torch.zeros(3), torch.ones(2, dtype=torch.bool), state, device)


# ---- write noise ------------------------------------------------------------------------------
def test_write_noise_has_the_configured_std_and_the_hidden_weight_is_noise_free() -> None:
    n = 40_000
    base = dv.SoftBoundsDevice(dw_min=0.01, dw_min_std=0.3)
    noisy = base.replace(write_noise_std=3.0)  # std 3 dw_min = 0.03
    state = dv.sample_device_state(noisy, (n,), _gen(6))
    counts = torch.randint(-4, 5, (n,), generator=_gen(7))
    w0 = torch.zeros(n)
    # the pulses act on the hidden weight exactly as without write noise
    hidden = dv.apply_pulses(w0, counts, state, noisy, _gen(8))
    torch.testing.assert_close(hidden, dv.apply_pulses(w0, counts, state, base, _gen(8)))
    previous = dv.visible_weights(w0, noisy, _gen(9))
    updated = counts != 0
    seen = dv.visible_weights(hidden, noisy, _gen(10), updated=updated, previous=previous)
    assert torch.equal(seen[~updated], previous[~updated])  # untouched devices keep old noise
    noise = (seen - hidden)[updated]
    m = noise.numel()
    assert noise.mean().item() == pytest.approx(0.0, abs=5 * 0.03 / math.sqrt(m))
    assert noise.std().item() == pytest.approx(0.03, rel=5 / math.sqrt(2 * m))
    # a whole-array step (decay, reset) redraws every device
    again = dv.visible_weights(hidden, noisy, _gen(11))
    assert bool((again != seen).all())


def test_write_noise_off_returns_the_hidden_weights_and_bad_masks_are_refused() -> None:
    device = dv.SoftBoundsDevice()
    w = torch.zeros(4)
    assert dv.visible_weights(w, device, _gen()) is w
    noisy = device.replace(write_noise_std=1.0)
    with pytest.raises(ValueError, match="previous"):
        dv.visible_weights(w, noisy, _gen(), updated=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="updated"):
        dv.visible_weights(
            w, noisy, _gen(), updated=torch.ones(3, dtype=torch.bool), previous=torch.zeros(4)
        )


# ---- ExpStep complex noise (PCM) ---------------------------------------------------------------
def test_exp_step_complex_noise_has_the_aihwkit_std() -> None:
    n = 40_000
    device = dv.pcm().replace(**{**QUIET, "dw_min_std": 0.6})
    state = dv.sample_device_state(device, (n,), _gen(12))
    w = torch.full((n,), 1.0)
    out = dv.apply_pulses(w, torch.ones(n, dtype=torch.long), state, device, _gen(13))
    step = 0.01 * (1 + 27.235 * math.exp(-2.5 * 1.0))  # z = -w for a = -1, b = 0, span 2
    std = 0.6 * (step + 0.042 + 0.108 * 1.0)
    assert out.mean().item() == pytest.approx(1.0 + step, abs=5 * std / math.sqrt(n))
    assert out.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * n))


def test_weight_granularity_follows_aihwkit() -> None:
    assert dv.weight_granularity(dv.SoftBoundsDevice(dw_min=0.002)) == 0.002
    assert dv.weight_granularity(dv.PowStepDevice(dw_min=0.01, pow_gamma=2.0)) == 0.0025
    assert dv.weight_granularity(dv.pcm()) == pytest.approx(0.01 * 3.235)


# ---- one-sided pairs --------------------------------------------------------------------------
def _ramp_pair(**fields) -> dv.OneSidedPair:
    """A noise-free one-sided constant-step pair on [0, 1], reset to exactly 0."""
    device = dv.ConstantStepDevice(**QUIET, dw_min=0.01, w_min=0.0, w_max=1.0, reset_std=0.0)
    return dv.OneSidedPair(device=device, **fields)


def test_pair_devices_only_increase_and_only_on_their_side() -> None:
    pair = dv.OneSidedPair(device=dv.pcm().replace(dw_min_std=0.0))
    shape = (32, 16)
    state = dv.sample_pair_state(pair, shape, _gen(14))
    g_plus, g_minus = dv.initial_pair(state, pair, _gen(15))
    gen = _gen(16)
    for _ in range(8):
        n = torch.randint(-3, 4, shape, generator=gen)
        new_plus, new_minus = dv.apply_pair_pulses(g_plus, g_minus, n, state, pair, gen)
        assert (new_plus >= g_plus).all() and (new_minus >= g_minus).all()
        assert torch.equal(new_plus[n <= 0], g_plus[n <= 0])
        assert torch.equal(new_minus[n >= 0], g_minus[n >= 0])
        assert ((new_plus > g_plus) | (state.plus.b_max == g_plus))[n > 0].all()
        g_plus, g_minus = new_plus, new_minus


def test_refresh_keeps_the_weight_within_half_a_step_and_resets_both_devices() -> None:
    pair = _ramp_pair()
    state = dv.sample_pair_state(pair, (200,), _gen(17))
    g_plus = 0.5 + 0.5 * torch.rand(200, generator=_gen(18))
    g_minus = 0.5 + 0.5 * torch.rand(200, generator=_gen(19))
    weight = g_plus - g_minus
    new_plus, new_minus, refreshed = dv.refresh_pair(g_plus, g_minus, state, pair, _gen(20))
    high = torch.maximum(g_plus, g_minus)
    low = torch.minimum(g_plus, g_minus)
    assert torch.equal(refreshed, (high > 0.75) & (low > 0.25))
    assert refreshed.any() and not refreshed.all()
    # refreshed pairs: the low side is back at the reset value, the weight kept to dw_min / 2
    assert torch.equal(torch.minimum(new_plus, new_minus)[refreshed], torch.zeros(200)[refreshed])
    within_cap = refreshed & (weight.abs() <= 31 * 0.01)
    assert within_cap.any()
    error = (new_plus - new_minus - weight)[within_cap].abs()
    assert error.max().item() <= 0.005 + 1e-6
    # larger differences get the most pulses one refresh may write (31, aihwkit's desired_bl)
    capped = refreshed & (weight.abs() > 31.5 * 0.01)
    assert capped.any()
    torch.testing.assert_close(
        (new_plus - new_minus).abs()[capped], torch.full((200,), 0.31)[capped]
    )
    assert torch.equal(new_plus[~refreshed], g_plus[~refreshed])
    assert torch.equal(new_minus[~refreshed], g_minus[~refreshed])


def test_pcm_pair_saturates_then_refreshes() -> None:
    pair = dv.pcm_pair()
    shape = (256,)
    state = dv.sample_pair_state(pair, shape, _gen(20))
    g_plus, g_minus = dv.initial_pair(state, pair, _gen(21))
    assert g_plus.max().item() < 0.1 and g_minus.max().item() < 0.1  # reset near 0.01
    gen = _gen(22)
    increments = []
    for _ in range(25):
        before = g_plus - g_minus
        g_plus, g_minus = dv.apply_pair_pulses(
            g_plus, g_minus, torch.full(shape, 3), state, pair, gen
        )
        increments.append(((g_plus - g_minus) - before).mean().item())
    # saturation: g_plus close to its bound, the weight has stopped growing
    assert increments[0] > 0.2 and abs(increments[-1]) < 0.03
    assert (g_plus / state.plus.b_max).mean().item() > 0.75
    # depress: g_minus rises until the criterion fires; check every mini-batch (refresh_every 1)
    refreshed_any = torch.zeros(shape, dtype=torch.bool)
    for batch in range(1, 21):
        g_plus, g_minus = dv.apply_pair_pulses(
            g_plus, g_minus, torch.full(shape, -1), state, pair, gen
        )
        assert dv.refresh_due(pair, batch * 10, m_batch=10)  # counted in vector updates
        old = g_plus - g_minus
        g_plus, g_minus, refreshed = dv.refresh_pair(g_plus, g_minus, state, pair, gen)
        if refreshed.any():
            # both devices were reset: the side opposite the weight's sign sits at the reset
            opposite = torch.where(old > 0, g_minus, g_plus)
            bias = torch.where(old > 0, state.minus.reset_bias, state.plus.reset_bias)
            # reset value (clipped at b_min 0) plus at most 5 reset_std of cycle-to-cycle noise
            assert ((opposite - bias.clamp(min=0.0)).abs() <= 5 * 0.01)[refreshed].all()
            assert (torch.sign(g_plus - g_minus) == torch.sign(old))[refreshed].all()
        refreshed_any |= refreshed
    assert refreshed_any.float().mean().item() > 0.5


def test_verified_refresh_keeps_a_pcm_weight_within_half_a_step() -> None:
    pair = dv.OneSidedPair(
        device=dv.pcm().replace(dw_min_std=0.0, reset_std=0.0, reset_dtod=0.0),
        refresh_verify=True,
        refresh_max_pulses=300,
    )
    n = 500
    state = dv.sample_pair_state(pair, (n,), _gen(23))
    g_plus = 1.55 + 0.3 * torch.rand(n, generator=_gen(24))
    g_minus = 0.55 + 0.6 * torch.rand(n, generator=_gen(25))
    weight = g_plus - g_minus
    new_plus, new_minus, refreshed = dv.refresh_pair(g_plus, g_minus, state, pair, _gen(26))
    assert refreshed.all()
    # the last pulse was taken more than half a step short: at most half a step over
    ones = torch.ones(n, dtype=torch.bool)
    first_step = dv.pulsed._step(torch.full((n,), 0.01), ones, state.plus, pair.device)
    error = (new_plus - new_minus - weight).abs()
    assert (error <= 0.5 * first_step + 1e-6).all()
    assert error.mean().item() < 0.05


def test_refresh_due_counts_mini_batches_or_vector_updates() -> None:
    pair = _ramp_pair(refresh_every=2)
    assert [dv.refresh_due(pair, k, m_batch=5) for k in (5, 10, 20)] == [False, True, True]
    per_vector = _ramp_pair(refresh_every=2, units_in_mbatch=False)
    assert dv.refresh_due(per_vector, 4, m_batch=5) and not dv.refresh_due(per_vector, 5, 5)
    assert not dv.refresh_due(_ramp_pair(), 10)
    with pytest.raises(ValueError, match="m_batch"):
        dv.refresh_due(pair, 1, m_batch=0)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"copy_inverted": True}, "copy_inverted"),
        ({"refresh_max_pulses": 0}, "refresh_max_pulses"),
        ({"refresh_lower_thres": 0.9}, "refresh_lower_thres"),
        ({"refresh_every": -1}, "refresh_every"),
    ],
)
def test_pair_fields_are_validated_by_name(fields: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _ramp_pair(**fields)


def test_pair_refuses_write_noise_and_bad_device_fields_are_named() -> None:
    with pytest.raises(ValueError, match="write_noise_std"):
        dv.OneSidedPair(device=dv.pcm().replace(write_noise_std=1.0))
    with pytest.raises(ValueError, match="lifetime"):
        dv.SoftBoundsDevice(lifetime=-3.0)
    with pytest.raises(ValueError, match="reset_std"):
        dv.SoftBoundsDevice(reset_std=-0.1)
    with pytest.raises(ValueError, match="dw_min_std_slope"):
        dv.ExpStepDevice(dw_min_std_slope=-1.0)


# ---- presets ----------------------------------------------------------------------------------
def test_capacitor_preset_decays_toward_zero_between_calls() -> None:
    device = dv.DEVICE_PRESETS["CapacitorPresetDevice"]()
    assert (device.lifetime, device.lifetime_dtod, device.dw_min) == (1.0e6, 0.3, 0.005)
    state = dv.sample_device_state(device, (64, 32), _gen(27))
    w = dv.apply_pulses(torch.zeros(64, 32), torch.full((64, 32), 40), state, device, _gen(28))
    assert w.mean().item() == pytest.approx(40 * 0.005, rel=0.1)  # gamma 0.05: nearly linear
    decayed = dv.decay_weights(w, state, device)
    torch.testing.assert_close(decayed, w * state.decay_scale, rtol=0, atol=1e-7)
    assert (decayed.abs() < w.abs())[w != 0].all()
    many = w
    for _ in range(100):
        many = dv.decay_weights(many, state, device)
    torch.testing.assert_close(many, w * state.decay_scale**100, rtol=1e-4, atol=1e-7)


def test_pcm_presets_carry_aihwkit_numbers() -> None:
    device = dv.DEVICE_PRESETS["PCMPresetDevice"]()
    assert (device.w_min, device.w_max, device.dw_min, device.reset) == (0.0, 2.0, 0.01, 0.01)
    assert (device.A_up, device.A_down, device.a) == (-27.235, -2.235, -1.0)
    pair = dv.UNIT_CELL_PRESETS["PCMPresetUnitCell"]()
    assert (pair.refresh_every, pair.refresh_upper_thres, pair.refresh_lower_thres) == (
        1,
        0.75,
        0.25,
    )
    assert pair.device == device


# ---- device fit -------------------------------------------------------------------------------
TUTORIAL_PULSES = torch.cat(
    [torch.ones(200), -torch.ones(200), torch.tensor([1.0, -1.0]).repeat(50)]
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_a_known_soft_bounds_device(seed: int) -> None:
    truth = dv.SoftBoundsDevice(**{**QUIET, "dw_min_std": 0.1}, dw_min=0.01, up_down=0.2)
    truth = truth.replace(w_max=0.8, w_min=-0.6)
    trace = dv.pulse_response(truth, TUTORIAL_PULSES, 1, _gen(seed))[:, 0]
    fit = dv.fit_soft_bounds(trace, TUTORIAL_PULSES)
    # tolerances: ~3x the spread seen over seeds with 10 % cycle-to-cycle noise
    assert fit.device.dw_min == pytest.approx(0.01, rel=0.05)
    assert fit.device.up_down == pytest.approx(0.2, abs=0.05)
    assert fit.device.w_max == pytest.approx(0.8, rel=0.03)
    assert fit.device.w_min == pytest.approx(-0.6, rel=0.03)
    assert 0 < fit.residual_std < 0.5 * 0.01
    assert fit.trajectory.shape == trace.shape


def test_fit_is_exact_without_noise_and_the_write_noise_formula() -> None:
    truth = dv.SoftBoundsDevice(**QUIET, dw_min=0.02, up_down=-0.3, w_max=0.7, w_min=-0.9)
    trace = dv.pulse_response(truth, TUTORIAL_PULSES, 1, _gen())[:, 0]
    fit = dv.fit_soft_bounds(trace, TUTORIAL_PULSES)
    got = (fit.device.dw_min, fit.device.up_down, fit.device.w_max, fit.device.w_min)
    assert got == pytest.approx((0.02, -0.3, 0.7, -0.9), rel=1e-3)
    assert fit.residual_std < 1e-5
    noisy = dv.SoftBoundsFit(fit.device, residual_std=5 * 0.02, trajectory=fit.trajectory)
    assert noisy.write_noise_std(3.0) == pytest.approx(0.5 * math.sqrt(25 - 9))
    assert noisy.write_noise_std(6.0) == 0.0


def test_fit_refuses_one_directional_or_mismatched_traces() -> None:
    with pytest.raises(ValueError, match="directions"):
        dv.fit_soft_bounds(torch.zeros(11), torch.ones(10))
    with pytest.raises(ValueError, match="trace_w"):
        dv.fit_soft_bounds(torch.zeros(10), TUTORIAL_PULSES[:10])
