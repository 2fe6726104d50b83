"""Pulsed device models against their closed forms (reference docs/devices.md)."""

from __future__ import annotations

import math

import pytest
import torch

from analoglib import devices as dv


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _no_dtod(device_cls, **fields):
    """A device without device-to-device or cycle-to-cycle spread."""
    spread = {
        "dw_min_dtod": 0.0,
        "up_down_dtod": 0.0,
        "w_max_dtod": 0.0,
        "w_min_dtod": 0.0,
        "dw_min_std": 0.0,
    }
    return device_cls(**{**spread, **fields})


# ---- T1: constant step -----------------------------------------------------------------------
def test_constant_step_moves_exactly_n_steps_and_stops_at_the_bound() -> None:
    device = _no_dtod(dv.ConstantStepDevice, dw_min=0.01, w_max=0.105, w_min=-0.2)
    state = dv.sample_device_state(device, (3,), _gen())
    w = torch.zeros(3)
    out = dv.apply_pulses(w, torch.tensor([4, -7, 30]), state, device, _gen(1))
    expected = torch.tensor([4 * 0.01, -7 * 0.01, 0.105])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


def test_up_down_asymmetry_follows_the_populate_formula() -> None:
    device = _no_dtod(dv.ConstantStepDevice, dw_min=0.01, up_down=0.2)
    state = dv.sample_device_state(device, (2,), _gen())
    # up_down > 0: up steps keep the gain, down steps lose up_down
    torch.testing.assert_close(state.scale_up, torch.full((2,), 0.01))
    torch.testing.assert_close(state.scale_down, torch.full((2,), 0.008))


# ---- T2: soft bounds, mean and variance over many devices ---------------------------------
def test_soft_bounds_mean_after_n_pulses_matches_the_closed_form() -> None:
    n_devices, n, s, b = 20_000, 40, 0.02, 0.6
    device = dv.SoftBoundsDevice(
        dw_min=s,
        dw_min_dtod=0.0,
        up_down_dtod=0.0,
        w_max_dtod=0.0,
        w_min_dtod=0.0,
        dw_min_std=0.3,
        w_max=b,
        w_min=-b,
    )
    state = dv.sample_device_state(device, (n_devices,), _gen())
    w0 = 0.1
    out = dv.apply_pulses(
        torch.full((n_devices,), w0), torch.full((n_devices,), n), state, device, _gen(2)
    )
    # each pulse multiplies (b - w) by (1 - (s / b)(1 + sigma xi)), independently
    factor = 1 - s / b
    mean = b - (b - w0) * factor**n
    second = (1 - s / b) ** 2 + (s / b * 0.3) ** 2  # E[(1 - (s/b)(1 + sigma xi))^2]
    variance = (b - w0) ** 2 * (second**n - factor ** (2 * n))
    assert abs(out.mean().item() - mean) < 4 * math.sqrt(variance / n_devices)
    assert out.var().item() == pytest.approx(variance, rel=0.05)  # 20k samples: ~1 % s.e.


# ---- T3: symmetric point ----------------------------------------------------------------------
@pytest.mark.parametrize("up_down", [0.0, 0.3])
def test_alternating_pulses_converge_to_the_symmetric_point(up_down: float) -> None:
    device = _no_dtod(dv.SoftBoundsDevice, dw_min=0.01, up_down=up_down, w_max=0.8, w_min=-0.5)
    state = dv.sample_device_state(device, (2,), _gen())
    target = dv.symmetric_point(state)
    w = torch.tensor([0.7, -0.45])  # start from both sides
    for _ in range(2000):
        w = dv.pulse_once(w, torch.ones(2), state, device, torch.zeros(2))
        w = dv.pulse_once(w, -torch.ones(2), state, device, torch.zeros(2))
    torch.testing.assert_close(w, target, rtol=0, atol=0.02)
    expected = (state.scale_up - state.scale_down) / (
        state.scale_up / state.b_max - state.scale_down / state.b_min
    )
    torch.testing.assert_close(target, expected)


def test_symmetric_device_has_its_symmetric_point_at_zero_when_bounds_are_symmetric() -> None:
    device = _no_dtod(dv.SoftBoundsDevice, dw_min=0.01, w_max=0.6, w_min=-0.6)
    state = dv.sample_device_state(device, (4,), _gen())
    torch.testing.assert_close(dv.symmetric_point(state), torch.zeros(4))


# ---- T4: device-to-device draws ---------------------------------------------------------------
def test_device_to_device_draws_have_the_configured_statistics() -> None:
    n = 40_000
    device = dv.ConstantStepDevice(
        dw_min=0.01,
        dw_min_dtod=0.2,
        up_down=0.0,
        up_down_dtod=0.0,
        w_max=0.6,
        w_max_dtod=0.1,
        w_min=-0.4,
        w_min_dtod=0.05,
        enforce_consistency=False,
    )
    state = dv.sample_device_state(device, (n,), _gen(3))
    se = 4 / math.sqrt(n)
    assert state.b_max.mean().item() == pytest.approx(0.6, abs=0.6 * 0.1 * se)
    assert state.b_max.std().item() == pytest.approx(0.06, rel=0.02)
    assert state.b_min.std().item() == pytest.approx(0.02, rel=0.02)
    assert state.scale_up.mean().item() == pytest.approx(0.01, abs=0.01 * 0.2 * se)
    assert state.scale_up.std().item() == pytest.approx(0.002, rel=0.02)


def test_log_normal_step_gain() -> None:
    n = 40_000
    device = _no_dtod(
        dv.ConstantStepDevice, dw_min=0.01, dw_min_dtod=0.5, dw_min_dtod_log_normal=True
    )
    state = dv.sample_device_state(device, (n,), _gen(4))
    log_gain = torch.log(state.scale_up / 0.01)
    assert log_gain.mean().item() == pytest.approx(0.0, abs=4 * 0.5 / math.sqrt(n))
    assert log_gain.std().item() == pytest.approx(0.5, rel=0.02)


def test_consistency_enforcement_flips_signs_and_orders_bounds() -> None:
    device = dv.ConstantStepDevice(dw_min=0.01, dw_min_dtod=3.0, w_max_dtod=3.0, w_min_dtod=3.0)
    state = dv.sample_device_state(device, (5000,), _gen(5))
    assert (state.scale_up >= 0).all() and (state.scale_down >= 0).all()
    assert (state.b_min <= 0).all() and (state.b_max >= 0).all()
    raw = dv.sample_device_state(device.replace(enforce_consistency=False), (5000,), _gen(5))
    assert (raw.scale_up < 0).any() and (raw.b_max < 0).any()  # the spread is large enough


# ---- linear step, pow step ---------------------------------------------------------------------
def test_linear_step_slope_makes_the_step_vanish_at_the_bound() -> None:
    device = _no_dtod(
        dv.LinearStepDevice,
        dw_min=0.01,
        gamma_up=1.0,
        gamma_down=1.0,
        gamma_up_dtod=0.0,
        gamma_down_dtod=0.0,
        w_max=0.5,
        w_min=-0.5,
    )
    state = dv.sample_device_state(device, (1,), _gen())
    at_bound = dv.pulse_once(torch.tensor([0.5]), torch.ones(1), state, device, torch.zeros(1))
    torch.testing.assert_close(at_bound, torch.tensor([0.5]))
    half = dv.pulse_once(torch.tensor([0.25]), torch.ones(1), state, device, torch.zeros(1))
    torch.testing.assert_close(half, torch.tensor([0.25 + 0.005]))


def test_pow_step_with_gamma_one_is_soft_bounds_like() -> None:
    device = _no_dtod(
        dv.PowStepDevice, dw_min=0.01, pow_gamma=1.0, pow_gamma_dtod=0.0, w_max=1.0, w_min=-1.0
    )
    state = dv.sample_device_state(device, (1,), _gen())
    w = torch.tensor([0.0])
    up = dv.pulse_once(w, torch.ones(1), state, device, torch.zeros(1))
    down = dv.pulse_once(w, -torch.ones(1), state, device, torch.zeros(1))
    # omega = 0.5 at w = 0: both steps are half of dw_min
    torch.testing.assert_close(up, torch.tensor([0.005]))
    torch.testing.assert_close(down, torch.tensor([-0.005]))


def test_soft_bounds_pmax_maps_its_fitting_parameters() -> None:
    device = dv.soft_bounds_pmax(p_max=500, alpha=0.004, range_min=-1.0, range_max=1.0)
    b = 2.0 / (1 - math.exp(-0.004 * 500))
    assert (device.w_min, device.w_max) == pytest.approx((-1.0, -1.0 + b))
    assert device.dw_min == pytest.approx(b * 0.004)
    assert device.up_down == pytest.approx(1 - 2 / b)


def test_pow_step_exponents_follow_the_up_down_bias() -> None:
    device = _no_dtod(dv.PowStepDevice, pow_gamma=2.0, pow_gamma_dtod=0.0, pow_up_down=0.25)
    state = dv.sample_device_state(device, (3,), _gen())
    torch.testing.assert_close(state.gamma_up, torch.full((3,), 2.5))
    torch.testing.assert_close(state.gamma_down, torch.full((3,), 1.5))


# ---- T6: the vectorised rounds equal a per-pulse reference loop -------------------------------
@pytest.mark.parametrize(
    "device",
    [
        dv.ConstantStepDevice(),
        dv.LinearStepDevice(gamma_up=0.5, gamma_down=0.8),
        dv.SoftBoundsDevice(),
        dv.SoftBoundsReferenceDevice(),
        dv.PowStepDevice(),
    ],
    ids=lambda d: type(d).__name__,
)
def test_vectorised_pulses_equal_a_per_pulse_loop(device) -> None:
    shape = (6, 5)
    state = dv.sample_device_state(device, shape, _gen(6))
    w0 = 0.1 * torch.randn(shape, generator=_gen(7))
    n = torch.randint(-5, 6, shape, generator=_gen(8))
    fast = dv.apply_pulses(w0, n, state, device, _gen(9))
    # the same draws, one device and one pulse at a time
    draws = _gen(9)
    noise = [torch.randn(shape, generator=draws) for _ in range(int(n.abs().max()))]
    slow = w0.clone()
    for i in range(shape[0]):
        for j in range(shape[1]):
            one = dv.DeviceState(
                *(
                    getattr(state, f.name)[i, j].reshape(1)
                    for f in dv.DeviceState.__dataclass_fields__.values()
                )
            )
            w = slow[i, j].reshape(1)
            for k in range(abs(int(n[i, j]))):
                w = dv.pulse_once(
                    w, torch.sign(n[i, j]).reshape(1), one, device, noise[k][i, j].reshape(1)
                )
            slow[i, j] = w[0]
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-7)


def test_exp_step_follows_its_formula() -> None:
    device = _no_dtod(dv.ExpStepDevice, dw_min=0.01, w_max=1.0, w_min=-1.0)
    state = dv.sample_device_state(device, (1,), _gen())
    w = torch.tensor([0.3])
    z = 2 * device.a * 0.3 / 2.0 + device.b
    up = dv.pulse_once(w, torch.ones(1), state, device, torch.zeros(1))
    down = dv.pulse_once(w, -torch.ones(1), state, device, torch.zeros(1))
    step_up = 0.01 * max(1 - device.A_up * math.exp(device.gamma_up * z), 0.0)
    step_down = 0.01 * max(1 - device.A_down * math.exp(-device.gamma_down * z), 0.0)
    torch.testing.assert_close(up, torch.tensor([0.3 + step_up]))
    torch.testing.assert_close(down, torch.tensor([0.3 - step_down]))


def test_piecewise_step_interpolates_its_nodes_over_the_device_range() -> None:
    device = _no_dtod(
        dv.PiecewiseStepDevice,
        dw_min=0.01,
        w_max=1.0,
        w_min=-1.0,
        piecewise_up=(1.0, 3.0, 2.0),
        piecewise_down=(2.0, 1.0, 1.0),
    )
    state = dv.sample_device_state(device, (1,), _gen())
    # w = -0.5 lies a quarter into [-1, 1]: halfway between nodes 0 and 1
    w = torch.tensor([-0.5])
    up = dv.pulse_once(w, torch.ones(1), state, device, torch.zeros(1))
    down = dv.pulse_once(w, -torch.ones(1), state, device, torch.zeros(1))
    torch.testing.assert_close(up, torch.tensor([-0.5 + 0.01 * 2.0]))
    torch.testing.assert_close(down, torch.tensor([-0.5 - 0.01 * 1.5]))


@pytest.mark.parametrize("name", sorted(dv.DEVICE_PRESETS))
def test_presets_build_consistent_devices(name: str) -> None:
    device = dv.DEVICE_PRESETS[name]()
    state = dv.sample_device_state(device, (64, 32), _gen(10))
    assert (state.b_min <= 0).all() and (state.b_max >= 0).all()
    assert (state.scale_up >= 0).all() and (state.scale_down >= 0).all()
    out = dv.apply_pulses(torch.zeros(64, 32), torch.full((64, 32), 3), state, device, _gen(11))
    assert torch.isfinite(out).all()
    assert (out >= state.b_min).all() and (out <= state.b_max).all()
    assert torch.isfinite(dv.symmetric_point(state)).all()


def test_reference_sits_at_the_symmetric_point_when_subtracted() -> None:
    device = dv.reram_array_om().replace(reference_std=0.0)
    state = dv.sample_device_state(device, (500,), _gen(12))
    torch.testing.assert_close(state.reference, dv.symmetric_point(state))
    noisy = dv.sample_device_state(dv.reram_array_om(), (20_000,), _gen(12))
    offset = noisy.reference - dv.symmetric_point(noisy)
    assert offset.std().item() == pytest.approx(0.05, rel=0.03)


def test_bad_fields_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="dw_min"):
        dv.ConstantStepDevice(dw_min=0.0)
    with pytest.raises(ValueError, match="lifetime"):
        dv.ConstantStepDevice(lifetime=0.5)
    with pytest.raises(ValueError, match="gamma_up"):
        dv.SoftBoundsDevice(gamma_up=0.5)


# ---- closed-form multi-pulse application ------------------------------------------------------
AFFINE = [
    dv.ConstantStepDevice(),
    dv.LinearStepDevice(gamma_up=0.5, gamma_down=0.8),
    dv.SoftBoundsDevice(),
    dv.SoftBoundsReferenceDevice(),  # additive noise
]


@pytest.mark.parametrize("device", AFFINE, ids=lambda d: type(d).__name__)
def test_closed_form_equals_the_loop_without_noise(device) -> None:
    device = device.replace(dw_min_std=0.0, dw_min=0.01)
    state = dv.sample_device_state(device, (8, 6), _gen(20))
    w0 = 0.2 * torch.rand((8, 6), generator=_gen(21)) - 0.1
    n = torch.randint(-30, 31, (8, 6), generator=_gen(22))
    loop = dv.apply_pulses(w0, n, state, device, _gen(23))
    closed = dv.apply_pulses(w0, n, state, device, _gen(23), closed_form=True)
    torch.testing.assert_close(closed, loop, rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", AFFINE, ids=lambda d: type(d).__name__)
def test_closed_form_matches_the_loop_in_mean_and_variance(device) -> None:
    n_devices = 20_000
    device = device.replace(
        dw_min=0.01,
        dw_min_std=0.3,
        dw_min_dtod=0.0,
        up_down_dtod=0.0,
        w_max_dtod=0.0,
        w_min_dtod=0.0,
    )
    state = dv.sample_device_state(device, (n_devices,), _gen(24))
    w0 = torch.full((n_devices,), 0.1)
    n = torch.full((n_devices,), 20)
    loop = dv.apply_pulses(w0, n, state, device, _gen(25))
    closed = dv.apply_pulses(w0, n, state, device, _gen(26), closed_form=True)
    se = loop.std().item() * math.sqrt(2 / n_devices)
    assert abs(closed.mean().item() - loop.mean().item()) < 4 * se
    assert closed.var().item() == pytest.approx(loop.var().item(), rel=0.06)


def test_closed_form_is_refused_for_non_affine_devices() -> None:
    device = dv.PowStepDevice()
    state = dv.sample_device_state(device, (2,), _gen())
    with pytest.raises(ValueError, match="PowStepDevice"):
        dv.apply_pulses(
            torch.zeros(2), torch.ones(2, dtype=torch.long), state, device, closed_form=True
        )
