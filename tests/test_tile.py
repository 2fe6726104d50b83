"""Tile forward model: converters, IR drop, output noise (``docs/model.md#tile-forward``).

Reference results are computed independently in float64 NumPy from the formulas of
``docs/model.md#units`` (quantisation), 4.4 (IR drop) and 4.5-4.6 (noise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, gen
from torch import nn

from analoglib.config import ForwardParameters, PCMConfig, bits_to_res, quantization_step
from analoglib.nn import AnalogLinear
from analoglib.presets import ideal
from analoglib.tiles.tile import (
    analog_conv,
    analog_mvm,
    correction_dtype,
    ir_drop_row_weighting,
    one_hot_readout,
    quantize,
    set_correction_dtype,
    tile_kernels,
)

G_RATIO = 1.0 / (0.35 * 5e-6)  # ir_drop_g_ratio of the standard model
N_SIGMA = 6.0


def bare_forward(**kwargs: object) -> ForwardParameters:
    """A non-perfect forward with every converter and nonideality off, then ``kwargs``."""
    params: dict[str, object] = dict(
        is_perfect=False,
        inp_res=None,
        out_res=None,
        out_bound=None,
        out_noise=0.0,
        w_noise=0.0,
        w_noise_type="none",
        ir_drop=0.0,
    )
    params.update(kwargs)
    return ForwardParameters(**params)  # type: ignore[arg-type]


@pytest.fixture
def float32_corrections() -> object:
    """Full-precision correction products, for comparisons with float64 references."""
    set_correction_dtype(torch.float32)
    yield
    set_correction_dtype(None)


def layer_config(forward: ForwardParameters) -> PCMConfig:
    """The ideal preset (no PCM noise, no input range, no GDC) with a given forward group."""
    config = ideal()
    config.forward = forward
    return config


# -- quantisation (section 2) -------------------------------------------------------------------


def test_dac_ramp_gives_255_levels_k_over_127() -> None:
    x = torch.linspace(-2.0, 2.0, 100_001)
    q = quantize(x.clone(), quantization_step(254, 1.0), 1.0)
    levels = q.unique()
    assert levels.numel() == 255
    k = np.round(levels.double().numpy() * 127)
    np.testing.assert_allclose(levels.double().numpy(), k / 127, rtol=0, atol=1e-6)
    assert np.array_equal(k, np.arange(-127, 128))
    assert levels.min().item() == -1.0
    assert levels.max().item() == 1.0
    # Saturation: everything beyond the bound reads the end level.
    assert (q[x >= 1.0] == 1.0).all() and (q[x <= -1.0] == -1.0).all()
    # Independent reference: round-half-even to k/127, then clip.
    ref = np.clip(np.round(x.double().numpy() * 127) / 127, -1, 1)
    np.testing.assert_allclose(q.double().numpy(), ref, rtol=0, atol=1e-6)


def test_adc_ramp_gives_255_levels_of_step_0_0787() -> None:
    step = quantization_step(254, 10.0)
    assert step == pytest.approx(20 / 254, rel=1e-14)
    assert step == pytest.approx(0.0787, abs=5e-5)
    x = torch.linspace(-15.0, 15.0, 300_001, dtype=torch.float64)
    q = quantize(x.clone(), step, 10.0)
    levels = q.unique()
    assert levels.numel() == 255
    np.testing.assert_allclose(np.diff(levels.numpy()), 20 / 254, rtol=1e-9)
    assert levels.min().item() == pytest.approx(-10.0, abs=1e-12)
    assert levels.max().item() == pytest.approx(10.0, abs=1e-12)
    assert (q[x >= 10.0] == levels.max()).all() and (q[x <= -10.0] == levels.min()).all()


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("as_fraction", [False, True])
def test_converter_levels_from_bits(bits: int, as_fraction: bool) -> None:
    res = bits_to_res(bits)
    step = quantization_step(1 / res if as_fraction else res, 1.0)
    q = quantize(torch.linspace(-3.0, 3.0, 50_001, dtype=torch.float64), step, 1.0)
    levels = q.unique().numpy()
    assert levels.size == 2**bits - 1  # symmetric levels k / (2^(b-1) - 1)
    np.testing.assert_allclose(
        levels,
        np.arange(-(2 ** (bits - 1) - 1), 2 ** (bits - 1)) / (2 ** (bits - 1) - 1),
        atol=1e-12,
    )


def test_quantize_rounds_half_to_even() -> None:
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 0.51])
    assert quantize(x.clone(), 1.0, None).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 0.0, 1.0]


def test_quantize_clip_only_and_identity() -> None:
    x = torch.tensor([-3.0, -0.3, 0.2, 5.0])
    assert quantize(x.clone(), None, 1.0).tolist() == pytest.approx([-1.0, -0.3, 0.2, 1.0])
    y = x.clone()
    assert quantize(y, None, None) is y


def test_quantize_straight_through_gradient() -> None:
    x = torch.linspace(-2.0, 2.0, 1001).requires_grad_()
    q = quantize(x, quantization_step(254, 1.0), 1.0)
    q.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.ones_like(x))
    # Forward values are still quantised and clipped; the input is untouched.
    assert q.detach().unique().numel() == 255
    assert x.detach().min().item() == -2.0


def test_layer_with_only_dac_sees_k_over_127() -> None:
    """End to end: identity weights, DAC on, everything else off -> output = DAC(x)."""
    n = 64
    linear = nn.Linear(n, n, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(n))
    layer = AnalogLinear.from_digital(linear, layer_config(bare_forward(inp_res=254)))
    layer.eval()
    x = torch.rand(32, n, generator=gen(0)) * 3 - 1.5
    with torch.no_grad():
        y = layer(x).double().numpy()
    ref = np.clip(np.round(x.double().numpy() * 127), -127, 127) / 127
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)
    k = y * 127
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert np.abs(y).max() == pytest.approx(1.0, abs=1e-6)


def test_layer_with_only_adc_saturates_at_bound() -> None:
    """All-ones weights over 32 inputs: outputs up to 32 are quantised to 20/254 and clip at 10."""
    n = 32
    linear = nn.Linear(n, 3, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    layer = AnalogLinear.from_digital(
        linear, layer_config(bare_forward(out_res=254, out_bound=10.0))
    )
    layer.eval()
    x = torch.rand(200, n, generator=gen(1))
    x[:100] *= 0.4  # sums from ~0 to ~13: both inside and beyond the ADC range
    with torch.no_grad():
        y = layer(x).double().numpy()
    step = 20 / 254
    ref = np.clip(np.round(x.double().numpy().sum(1, keepdims=True) / step) * step, -10, 10)
    np.testing.assert_allclose(y, np.repeat(ref, 3, axis=1), rtol=0, atol=1e-5)
    assert (np.abs(y) >= 10 - 1e-5).any() and (np.abs(y) < 10 - step).any()


def test_perfect_forward_ignores_converters() -> None:
    x = torch.rand(1, 20, 30, generator=gen(2), dtype=torch.float64) * 4 - 2
    w = torch.rand(1, 7, 30, generator=gen(3), dtype=torch.float64) * 2 - 1
    forward = ForwardParameters(is_perfect=True, out_noise=1.0, w_noise=1.0, ir_drop=5.0)
    z = analog_mvm(x, w, forward, generator=gen(4))
    assert_close(z, torch.bmm(x, w.transpose(1, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("slope", [0.0, 1.0])
def test_s_shaped_adc_nonlinearity(slope: float) -> None:
    """S-shaped ADC nonlinearity, then the ADC clip (section 4.6).

    z <- f^2 z / (1 + |n z|) with n = out_nonlinearity / out_bound, f = 1 + n slope out_bound.
    """
    x = torch.linspace(-1, 1, 201, dtype=torch.float64).view(1, -1, 1)
    w = torch.full((1, 1, 1), 0.9, dtype=torch.float64)
    forward = bare_forward(out_bound=10.0, out_nonlinearity=0.5, slope_calibration=slope)
    z = analog_mvm(x, w, forward, generator=gen(0)).view(-1).numpy()
    z_lin = 0.9 * x.view(-1).numpy()
    n = 0.5 / 10.0
    f = 1 + n * slope * 10.0
    np.testing.assert_allclose(
        z, np.clip(f**2 * z_lin / (1 + np.abs(n * z_lin)), -10, 10), rtol=1e-12, atol=1e-12
    )


# -- IR drop (section 4.4) ----------------------------------------------------------------------


def ref_ir_drop(x: np.ndarray, w: np.ndarray, n: int, ir: float = 1.0) -> np.ndarray:
    """z_i = sum_j W_ij x_j - ir c(a_i) sum_j W_ij x'_j (float64), x: (batch, n), w: (out, n)."""
    a = (n / G_RATIO) * (np.abs(x) @ np.abs(w).T)
    c = a * (a * (0.05 * a - 0.2) + 0.5)
    j = np.arange(n)
    x_prime = x * (1 - (1 - j / n) ** 2)
    return x @ w.T - ir * c * (x_prime @ w.T)


def test_ir_drop_row_weighting() -> None:
    weighting = ir_drop_row_weighting(300, torch.tensor([300, 299, 120]))
    assert weighting.shape == (3, 1, 300)
    for tile, n in enumerate((300, 299, 120)):
        j = np.arange(300)
        ref = np.where(j < n, 1 - (1 - j / n) ** 2, 0.0)
        np.testing.assert_allclose(weighting[tile, 0].double().numpy(), ref, atol=1e-7)
    assert weighting[0, 0, 0].item() == 0.0  # row 0 carries no IR-drop weight


@pytest.mark.parametrize("ir", [1.0, 0.5])
@pytest.mark.parametrize("rows", [(512,), (300,), (300, 299)])
@pytest.mark.usefixtures("float32_corrections")
def test_ir_drop_against_reference(rows: tuple[int, ...], ir: float) -> None:
    """Stacked tiles; a tile with fewer used rows than the layout is zero-padded."""
    rng = np.random.default_rng(5)
    width, batch, out = max(rows), 40, 24
    x = np.zeros((len(rows), batch, width))
    w = np.zeros((len(rows), out, width))
    for t, n in enumerate(rows):
        x[t, :, :n] = rng.uniform(-1, 1, (batch, n))
        w[t, :, :n] = rng.uniform(-1, 1, (out, n))
    n_used = torch.tensor(rows)
    z = analog_mvm(
        torch.tensor(x),
        torch.tensor(w),
        bare_forward(ir_drop=ir),
        ir_weighting=ir_drop_row_weighting(width, n_used).double(),
        ir_scale=(n_used.double() / G_RATIO).view(-1, 1, 1),
    ).numpy()
    for t, n in enumerate(rows):
        ref = ref_ir_drop(x[t, :, :n], w[t, :, :n], n, ir)
        # The row weighting comes in the default dtype (float32): ~1e-7 relative on the IR term.
        np.testing.assert_allclose(z[t], ref, rtol=0, atol=1e-6)
        # The IR-drop term is far above the tolerance, so the check has teeth.
        assert np.abs(ref - x[t, :, :n] @ w[t, :, :n].T).max() > 1e-3


@pytest.mark.parametrize("in_features", [300, 700, 1025])
@pytest.mark.usefixtures("float32_corrections")
def test_layer_ir_drop_against_reference(in_features: int) -> None:
    """Through a layer: per-tile n, column normalisation W~ = W / s and digital summation."""
    rng = np.random.default_rng(in_features)
    out = 16
    w = rng.normal(0, 0.2, (out, in_features))
    x = rng.uniform(-1, 1, (8, in_features))
    linear = nn.Linear(in_features, out, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(w))
    layer = AnalogLinear.from_digital(linear, layer_config(bare_forward(ir_drop=1.0))).eval()
    with torch.no_grad():
        y = layer(torch.tensor(x, dtype=torch.float32)).double().numpy()
    # Independent reference: equal split into ceil(N/512) tiles, larger tiles first.
    tiles = math.ceil(in_features / 512)
    base, extra = divmod(in_features, tiles)
    sizes = [base + 1] * extra + [base] * (tiles - extra)
    ref = np.zeros((8, out))
    start = 0
    for n in sizes:
        w_t = w[:, start : start + n]
        s = np.abs(w_t).max(axis=1)  # column-wise scale: each tile column's abs-max -> 1
        ref += ref_ir_drop(x[:, start : start + n], w_t / s[:, None], n) * s
        start += n
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-5)
    assert np.abs(ref - x @ w.T).max() > 1e-3


@pytest.mark.parametrize(("a", "table"), [(0.1, 0.048), (0.25, 0.113), (0.5, 0.206), (1.0, 0.35)])
def test_ir_drop_coefficient_table(a: float, table: float) -> None:
    """IR-drop coefficient c(a) read off analog_mvm.

    Two rows, x = (0, 1), W = (0, 1), so sum|W||x| = 1 and the IR-drop term is c(a) * W x'
    with x'_1 = 1 - (1 - 1/2)^2 = 0.75.
    """
    x = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    w = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    z = analog_mvm(
        x,
        w,
        bare_forward(ir_drop=1.0),
        ir_weighting=ir_drop_row_weighting(2, torch.tensor([2])).double(),
        ir_scale=torch.tensor([[[a]]], dtype=torch.float64),
    )
    c = (1.0 - z.item()) / 0.75
    assert c == pytest.approx(a * (a * (0.05 * a - 0.2) + 0.5), abs=1e-7)
    assert c == pytest.approx(table, abs=1e-3)  # the table rounds the formula


def test_ir_drop_needs_its_layout_tensors() -> None:
    x = torch.ones(1, 2, 4)
    w = torch.ones(1, 3, 4)
    with pytest.raises(ValueError, match="ir_weighting"):
        analog_mvm(x, w, bare_forward(ir_drop=1.0))


# -- output-referred noise (sections 4.5, 4.6) -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "w_noise", "out_noise"),
    [
        ("pcm_read", 0.0175, 0.0),
        ("none", 0.0, 0.04),
        ("pcm_read", 0.0175, 0.04),
        ("additive_constant", 0.02, 0.0),
    ],
)
def test_output_noise_std(kind: str, w_noise: float, out_noise: float) -> None:
    """Repeated forwards of one input: per-output std against the formula.

    pcm_read: sigma_i = w_noise * sqrt(sum_j |W_ij| x_j^2); additive_constant: w_noise * ||x||_2;
    output noise adds out_noise^2 to the variance.
    """
    rng = np.random.default_rng(7)
    rows, out, reps = 64, 16, 50_000
    x = rng.uniform(-1, 1, rows)
    w = rng.uniform(-1, 1, (out, rows))
    forward = bare_forward(w_noise=w_noise, w_noise_type=kind, out_noise=out_noise)
    xb = torch.tensor(np.tile(x, (1, reps, 1)))
    z = analog_mvm(xb, torch.tensor(w[None]), forward, generator=gen(8))[0].numpy()
    if kind == "pcm_read":
        var = w_noise**2 * (np.abs(w) @ (x * x))
    else:
        var = np.full(out, w_noise**2 * float(x @ x))
    sigma = np.sqrt(var + out_noise**2)
    # SE of the sample std: sigma / sqrt(2 reps) (0.3 % relative); of the mean: sigma / sqrt(reps).
    np.testing.assert_array_less(
        np.abs(z.std(axis=0, ddof=1) - sigma), N_SIGMA * sigma / math.sqrt(2 * reps)
    )
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - w @ x), N_SIGMA * sigma / math.sqrt(reps))


def test_output_noise_std_through_layer() -> None:
    """Standard w_noise and out_noise through AnalogLinear: std scales with the column scale s."""
    rng = np.random.default_rng(9)
    n, out, reps = 50, 6, 40_000
    w = rng.normal(0, 0.3, (out, n))
    x = rng.uniform(-1, 1, n)
    linear = nn.Linear(n, out, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(w))
    config = layer_config(bare_forward(w_noise=0.0175, w_noise_type="pcm_read", out_noise=0.04))
    layer = AnalogLinear.from_digital(linear, config).eval()
    layer.set_forward_seed(3)
    with torch.no_grad():
        y = layer(torch.tensor(np.tile(x, (reps, 1)), dtype=torch.float32)).double().numpy()
    s = np.abs(w).max(axis=1)
    sigma = s * np.sqrt(0.0175**2 * (np.abs(w / s[:, None]) @ (x * x)) + 0.04**2)
    np.testing.assert_array_less(
        np.abs(y.std(axis=0, ddof=1) - sigma), N_SIGMA * sigma / math.sqrt(2 * reps)
    )


def test_noise_draws_follow_the_generator() -> None:
    x = torch.rand(1, 10, 20, generator=gen(0))
    w = torch.rand(1, 5, 20, generator=gen(1))
    forward = bare_forward(out_noise=0.04)
    a = analog_mvm(x, w, forward, generator=gen(2))
    b = analog_mvm(x, w, forward, generator=gen(2))
    c = analog_mvm(x, w, forward, generator=gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# -- backward (section 4.7) ---------------------------------------------------------------------


def test_backward_is_ideal_and_masks_saturated_outputs() -> None:
    """d_x = W^T d_y without noise; outputs at the ADC bound pass no input gradient.

    The weight gradient keeps them (aihwkit masks the input gradient only,
    ``docs/model.md#backward``).
    """
    x = torch.rand(1, 6, 32, generator=gen(4), dtype=torch.float64)
    w = torch.ones(1, 3, 32, dtype=torch.float64)
    w[0, 1] = 0.1  # column 1 stays below the bound, columns 0 and 2 saturate (sum of 32 > 10)
    x[0, 0] *= 0.1  # ... except in the first sample
    forward = bare_forward(
        inp_res=254,
        out_res=254,
        out_bound=10.0,
        out_noise=0.04,
        w_noise=0.0175,
        w_noise_type="pcm_read",
    )
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()
    z = analog_mvm(xg, wg, forward, generator=gen(5))
    grad_out = torch.rand(z.shape, generator=gen(6), dtype=torch.float64)
    z.backward(grad_out)
    mask = (z.detach().abs() < 0.999 * 10.0).double()
    assert mask.sum() < mask.numel()  # some outputs did saturate
    assert_close(xg.grad, torch.bmm(grad_out * mask, w), rtol=1e-12, atol=1e-12)
    assert_close(wg.grad, torch.bmm(grad_out.transpose(1, 2), x), rtol=1e-12, atol=1e-12)


def test_conv_backward_masks_saturated_outputs_for_the_input_gradient_only() -> None:
    """analog_conv: d_x of the ideal convolution with the saturated outputs masked; d_W unmasked."""
    x = torch.rand(2, 8, 6, 6, generator=gen(4), dtype=torch.float64)  # one tile, 8 channels
    x[0] *= 0.1  # the first image stays below the ADC bound
    w = torch.ones(3, 8, 3, 3, dtype=torch.float64)  # 72 rows: sums up to ~36 > 10 saturate
    w[1] = 0.05
    forward = bare_forward(inp_res=254, out_res=254, out_bound=10.0, out_noise=0.04)
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()
    kernels = tile_kernels(wg, None, forward)
    options = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    z = analog_conv(xg, kernels, forward, tiles=1, generator=gen(5), **options)  # type: ignore[arg-type]
    grad_out = torch.rand(z.shape, generator=gen(6), dtype=torch.float64)
    z.backward(grad_out)
    mask = (z.detach().abs() < 0.999 * 10.0).double()
    assert 0 < mask.sum() < mask.numel()  # some outputs did saturate, others not
    xr = x.clone().requires_grad_()
    (
        torch.nn.functional.conv2d(xr, w, **options) * (grad_out * mask).flatten(1, 2)
    ).sum().backward()
    assert_close(xg.grad, xr.grad, rtol=1e-12, atol=1e-12)
    wr = w.clone().requires_grad_()
    (torch.nn.functional.conv2d(x, wr, **options) * grad_out.flatten(1, 2)).sum().backward()
    assert_close(wg.grad, wr.grad, rtol=1e-12, atol=1e-12)


def test_bfloat16_corrections_stay_close_to_float32() -> None:
    """The default (possibly bfloat16) correction products change the output by < 0.1 %.

    IR drop at full strength with PCM read-noise amplitudes computed too, noise itself off
    (w_noise enters the variance only), so the comparison is deterministic: bfloat16 inputs to
    the correction GEMMs carry 2^-9 relative rounding, and the IR-drop term is at most ~35 %
    of the signal, so the output moves by well under 1e-3 of its scale.
    """
    rng = torch.Generator().manual_seed(3)
    x = torch.rand(1, 64, 512, generator=rng) * 2 - 1
    w = (torch.randn(1, 128, 512, generator=rng) * 0.3).clamp(-1, 1)
    forward = bare_forward(ir_drop=1.0)
    rows = torch.tensor([512])
    options = dict(
        ir_weighting=ir_drop_row_weighting(512, rows), ir_scale=(rows / G_RATIO).view(-1, 1, 1)
    )
    set_correction_dtype(None)
    z_default = analog_mvm(x, w, forward, **options)  # type: ignore[arg-type]
    set_correction_dtype(torch.float32)
    try:
        z_full = analog_mvm(x, w, forward, **options)  # type: ignore[arg-type]
    finally:
        set_correction_dtype(None)
    scale = z_full.abs().max()
    assert (z_default - z_full).abs().max() <= 1e-3 * scale


def test_correction_dtype_choice_and_validation() -> None:
    weight = torch.zeros(2, 2)
    assert correction_dtype(weight) in (torch.float32, torch.bfloat16)
    assert correction_dtype(weight.double()) == torch.float64
    set_correction_dtype(torch.float32)
    try:
        assert correction_dtype(weight) == torch.float32
    finally:
        set_correction_dtype(None)
    with pytest.raises(ValueError, match="dtype = torch.float16"):
        set_correction_dtype(torch.float16)


@pytest.mark.usefixtures("float32_corrections")
@pytest.mark.parametrize("rows_used", [512, 300])
def test_one_hot_readout_equals_identity_inputs(rows_used: int) -> None:
    """The GEMM-free read-out equals the tile forward on the identity (noise off, ADC on)."""
    rng = torch.Generator().manual_seed(rows_used)
    w = (torch.randn(1, 40, 512, generator=rng) * 0.4).clamp(-1, 1)
    w[:, :, rows_used:] = 0.0
    forward = bare_forward(ir_drop=1.0, inp_res=254, out_res=254, out_bound=10.0)
    rows = torch.tensor([rows_used])
    options = dict(
        ir_weighting=ir_drop_row_weighting(512, rows), ir_scale=(rows / G_RATIO).view(-1, 1, 1)
    )
    eye = torch.eye(512).unsqueeze(0)
    via_mvm = analog_mvm(eye, w, forward, **options)  # type: ignore[arg-type]  # (1, rows, out)
    readout = one_hot_readout(w, forward, **options)  # type: ignore[arg-type]  # (1, out, rows)
    assert_close(readout.transpose(1, 2), via_mvm, rtol=0, atol=1e-6)
    assert (readout - w).abs().max() > 1e-3  # IR drop and ADC did act


def test_one_hot_readout_noise_std() -> None:
    """Read noise sqrt(w_noise^2 |W_ij| + out_noise^2) per one-hot read-out."""
    w = torch.full((1, 200, 500), 0.64)
    forward = bare_forward(w_noise=0.0175, w_noise_type="pcm_read", out_noise=0.04)
    noisy = one_hot_readout(w, forward, generator=gen(5))
    expected = math.sqrt(0.0175**2 * 0.64 + 0.04**2)
    n = noisy.numel()
    # Standard error of a sample std: sigma / sqrt(2 n).
    assert abs((noisy - w).std().item() - expected) < N_SIGMA * expected / math.sqrt(2 * n)
