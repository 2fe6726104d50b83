"""The convolution path of analog convolutions against the unfolded (explicit-patch) path.

Without noise the two paths compute the same numbers up to float rounding; with noise they
must agree in distribution: per-output mean and variance over repeated forwards, and the ADC
grid of the outputs. Layouts cover stride, dilation, padding modes, groups, depthwise and tiles
whose rows start inside a channel's kernel block.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from helpers import assert_close
from torch import nn

import analoglib
from analoglib.config import PCMConfig, quantization_step
from analoglib.nn.conv import AnalogConv1d, AnalogConv2d, conv_tile_layout
from analoglib.presets import ideal, standard_hwa_2023
from analoglib.tiles.mapper import TileMapping
from analoglib.tiles.tile import set_correction_dtype, set_fused_elementwise

LAYOUTS: list[dict[str, Any]] = [
    dict(in_channels=16, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=6, out_channels=5, kernel_size=3, stride=2, padding=1),
    dict(in_channels=6, out_channels=5, kernel_size=3, padding=2, dilation=2),
    dict(in_channels=6, out_channels=5, kernel_size=3, padding=1, padding_mode="reflect"),
    dict(in_channels=6, out_channels=5, kernel_size=4, padding="same", padding_mode="circular"),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=3),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8),  # depthwise
    # 10 * 9 = 90 rows on tiles of at most 40: 30 + 30 + 30, tiles start inside a channel.
    dict(in_channels=10, out_channels=7, kernel_size=3, padding=1, max_input_size=40),
    # 7 * 25 = 175 rows on tiles of at most 17: eleven tiles of 16 or 15 rows.
    dict(in_channels=7, out_channels=4, kernel_size=5, padding=2, max_input_size=17),
]


def _ids(layouts: list[dict[str, Any]]) -> list[str]:
    return ["-".join(f"{k}={v}" for k, v in layout.items()) for layout in layouts]


def _layer(layout: dict[str, Any], config: PCMConfig, spatial: int = 2) -> nn.Module:
    options = dict(layout)
    max_input_size = options.pop("max_input_size", None)
    if max_input_size is not None:
        config.mapping.max_input_size = max_input_size
    torch.manual_seed(0)
    digital = (nn.Conv1d if spatial == 1 else nn.Conv2d)(**options)
    layer = analoglib.convert_to_analog(digital, config)
    assert isinstance(layer, (AnalogConv1d, AnalogConv2d))
    return layer


def _both_paths(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return layer._conv_forward(x), layer._unfolded_forward(x)


def _calibrated(layer: nn.Module, value: float = 2.0) -> nn.Module:
    """Fixed input ranges that count as set from data (no init, no clipping check)."""
    with torch.no_grad():
        layer.input_range.fill_(value)
    layer.input_range_batches.fill_(layer.config.pre_post.input_range.init_from_data)
    return layer


@pytest.fixture
def float32_corrections() -> Iterator[None]:
    set_correction_dtype(torch.float32)
    yield
    set_correction_dtype(None)


def test_layout_of_tiles_starting_inside_a_channel() -> None:
    # 10 channels x 9 kernel entries on tiles of 30 rows: tile 1 holds rows 30..59, i.e. the
    # last 6 entries of channel 3, channels 4-5 and the first 6 entries of channel 6.
    mapping = TileMapping.build(90, 7, 1, 40, 0)
    channels, channel_index, row_index = conv_tile_layout(mapping, 9)
    assert channels == 4
    assert channel_index.tolist() == [0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9]
    assert row_index[1, :3].tolist() == [30, 30, 30]  # channel 3, entries 0-2: not on tile 1
    assert row_index[1, 3:9].tolist() == list(range(6))
    assert row_index[1, 27:].tolist() == [24, 25, 26, 27, 28, 29, 30, 30, 30]


@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids(LAYOUTS))
def test_ideal_paths_equal_torch(layout: dict[str, Any]) -> None:
    layer = _layer(layout, ideal()).eval()
    digital = layer.to_digital()
    x = torch.randn(3, layout["in_channels"], 9, 11)
    with torch.no_grad():
        conv, unfolded = _both_paths(layer, x)
        assert_close(conv, digital(x), rtol=1e-5, atol=1e-5)
        assert_close(unfolded, digital(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS[:2] + LAYOUTS[-2:], ids=_ids(LAYOUTS[:2] + LAYOUTS[-2:]))
def test_ideal_conv1d_paths_equal_torch(layout: dict[str, Any]) -> None:
    layer = _layer(layout, ideal(), spatial=1).eval()
    x = torch.randn(3, layout["in_channels"], 13)
    with torch.no_grad():
        conv, unfolded = _both_paths(layer, x)
        assert_close(conv, layer.to_digital()(x), rtol=1e-5, atol=1e-5)
        assert_close(unfolded, conv, rtol=1e-5, atol=1e-5)


def _deterministic() -> PCMConfig:
    """DAC, IR drop and input ranges on; every noise source and the ADC off."""
    config = standard_hwa_2023()
    config.forward.out_noise = 0.0
    config.forward.w_noise = 0.0
    config.forward.out_res = None
    config.forward.out_bound = None
    config.pre_post.input_range.decay = 0.0
    return config


@pytest.mark.usefixtures("float32_corrections")
@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids(LAYOUTS))
def test_dac_and_ir_drop_equal_between_paths(layout: dict[str, Any]) -> None:
    layer = _calibrated(_layer(layout, _deterministic()), value=1.5).eval()
    x = 1.2 * torch.randn(3, layout["in_channels"], 8, 9)  # some inputs clip at 1.5
    with torch.no_grad():
        conv, unfolded = _both_paths(layer, x)
    assert_close(conv, unfolded, rtol=1e-4, atol=1e-5)
    assert conv.abs().max() > 0


def _assert_equal_gradients(
    layout: dict[str, Any], config: PCMConfig, range_value: float, input_scale: float
) -> None:
    """The two paths agree on one squared-error loss: output and all gradients."""
    grads = []
    for path in ("_conv_forward", "_unfolded_forward"):
        layer = _calibrated(_layer(layout, config.copy()), value=range_value).train()
        torch.manual_seed(5)
        x = (input_scale * torch.randn(3, layout["in_channels"], 8, 9)).requires_grad_()
        torch.manual_seed(1)
        target = torch.randn_like(layer.to_digital()(x))
        output = getattr(layer, path)(x)
        ((output - target) ** 2).sum().backward()
        grads.append([output, x.grad, layer.weight.grad, layer.input_range.grad])
        grads[-1].append(layer.out_scales.grad)
    for conv, unfolded in zip(*grads, strict=True):
        assert_close(conv, unfolded, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("float32_corrections")
@pytest.mark.parametrize("decay", [0.0, 0.01])
@pytest.mark.parametrize("layout", LAYOUTS[:7], ids=_ids(LAYOUTS[:7]))
def test_training_gradients_equal_between_paths(layout: dict[str, Any], decay: float) -> None:
    """Straight-through gradients of input, weights, input ranges and output scales.

    The input-range gradient sums clipped inputs per patch entry (aihwkit's rule); ranges of
    1.5 clip about a third of the inputs, ranges of 4 almost none, which switches the decay
    term on. The ADC clips some outputs (no gradient there).
    """
    config = _deterministic()
    config.forward.out_bound, config.forward.out_res = 3.0, 254
    config.pre_post.input_range.decay = decay
    for value in (1.5, 4.0):
        _assert_equal_gradients(layout, config, value, input_scale=1.2)


@pytest.mark.parametrize("layout", LAYOUTS[:7], ids=_ids(LAYOUTS[:7]))
def test_perfect_forward_range_gradients_equal_between_paths(layout: dict[str, Any]) -> None:
    """A perfect forward (no converters, no ADC bound) with learned ranges: no output masked."""
    config = ideal()
    config.pre_post.input_range.enable = True
    config.pre_post.input_range.learn_input_range = True
    _assert_equal_gradients(layout, config, range_value=0.8, input_scale=3.0)


@pytest.mark.parametrize("layout", LAYOUTS[:7], ids=_ids(LAYOUTS[:7]))
def test_range_initialisation_equal_between_paths(layout: dict[str, Any]) -> None:
    """Ranges set from data use the standard deviation over patch entries in both paths."""
    ranges = []
    for path in ("_conv_forward", "_unfolded_forward"):
        layer = _layer(layout, standard_hwa_2023()).train()
        torch.manual_seed(2)
        for _ in range(3):
            getattr(layer, path)(torch.randn(3, layout["in_channels"], 8, 9) + 0.5)
        assert int(layer.input_range_batches) == 3
        ranges.append(layer.input_range.detach().clone())
    assert_close(ranges[0], ranges[1], rtol=1e-5, atol=1e-6)


def test_forward_paths() -> None:
    """Which forwards take the unfolded path."""
    x = torch.randn(2, 16, 6, 7)
    layer = _layer(LAYOUTS[0], standard_hwa_2023()).train()
    assert not layer._needs_unfolding(x)  # training, ranges set from data included
    straddling = _layer(LAYOUTS[7], standard_hwa_2023()).train()
    assert straddling._needs_unfolding(torch.randn(2, 10, 6, 7))
    with torch.no_grad():
        straddling.input_range_batches.fill_(100)
        assert not straddling._needs_unfolding(torch.randn(2, 10, 6, 7))
    layer.eval()
    assert layer._needs_unfolding(x)  # the clipping check of a directly converted model
    layer._clip_checks_left = 0
    assert not layer._needs_unfolding(x)
    layer.set_ideal_forward(True)
    assert layer._needs_unfolding(x)  # the exact forward of post-training calibration


def _programmed(layout: dict[str, Any]) -> nn.Module:
    layer = _calibrated(_layer(layout, standard_hwa_2023()))
    analoglib.program(layer, seed=3)
    analoglib.drift(layer, 3600.0, seed=4)
    return layer.eval()


@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids(LAYOUTS))
def test_noisy_paths_equal_in_distribution(layout: dict[str, Any]) -> None:
    """Per-output means and variances over n forwards agree within sampling error.

    With n draws per path, the standardised mean difference of an output is N(0, 1) and the
    log ratio of its two sample variances has sd sqrt(4 / (n - 1)); outputs are independent
    (fresh read and output noise each), so averages over the m outputs have standard errors
    1 / sqrt(m) times those; the bounds are 5 standard errors.
    """
    layer = _programmed(layout)
    x = 2.0 * torch.randn(2, layout["in_channels"], 6, 7)
    n = 300
    with torch.no_grad():
        conv = torch.stack([layer._conv_forward(x) for _ in range(n)])
        unfolded = torch.stack([layer._unfolded_forward(x) for _ in range(n)])
    var_conv, var_unfolded = conv.var(dim=0), unfolded.var(dim=0)
    # Outputs pinned at the ADC bound have no spread in either path and the same value.
    pinned = (var_conv == 0) & (var_unfolded == 0)
    assert torch.equal(conv[0][pinned], unfolded[0][pinned])
    assert int(pinned.sum()) < pinned.numel() // 10
    free = ~pinned
    z = (conv.mean(dim=0) - unfolded.mean(dim=0))[free] / (
        (var_conv + var_unfolded)[free] / n
    ).sqrt()
    m = z.numel()
    assert abs(float((z**2).mean()) - 1.0) < 5 * math.sqrt(2 / m)
    log_ratio = (var_conv[free] / var_unfolded[free]).log()
    assert abs(float(log_ratio.mean())) < 5 * math.sqrt(4 / (n - 1)) / math.sqrt(m)


@pytest.mark.parametrize("layout", [LAYOUTS[0], LAYOUTS[6], LAYOUTS[7]])
def test_noisy_paths_share_the_adc_grid(layout: dict[str, Any]) -> None:
    """Tile outputs lie on the ADC grid of step 2 out_bound / out_res in both paths.

    The layer output is the grid value times the periphery factor; with unit factors (one
    tile per group, unit scales) the layer output itself is on the grid.
    """
    config = standard_hwa_2023()
    config.forward.out_bound = 2.0  # so that clipping happens too
    layer = _layer(layout, config)
    with torch.no_grad():
        layer.mapping_scales.fill_(1.0)
        layer.out_scales.fill_(1.0)
        layer.input_range.fill_(1.0)
    layer.input_range_batches.fill_(config.pre_post.input_range.init_from_data)
    if layer.bias is not None:
        layer.bias = None
    layer.eval()
    x = 2.0 * torch.randn(4, layout["in_channels"], 6, 7)
    step = quantization_step(config.forward.out_res, config.forward.out_bound)
    tiles_in = layer.mapping.tiles_in
    with torch.no_grad():
        for y in _both_paths(layer, x):
            levels = y / step
            # Sums of tiles_in grid values are on the grid, bounded by tiles_in * out_bound.
            assert_close(levels, levels.round(), rtol=0, atol=1e-3)
            assert float(y.abs().max()) <= tiles_in * config.forward.out_bound + 1e-6
            if tiles_in == 1:
                assert float(y.abs().max()) == pytest.approx(config.forward.out_bound)


def test_programmed_kernels_are_cached_until_drift() -> None:
    layer = _programmed(LAYOUTS[0])
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        layer._conv_forward(x)
        first = layer._kernel_cache
        layer._conv_forward(x)
        assert layer._kernel_cache is first
        analoglib.drift(layer, 86400.0, seed=5)
        layer._conv_forward(x)
        assert layer._kernel_cache is not first
        assert not torch.equal(layer._kernel_cache[3].weight, first[3].weight)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CI") == "true" or shutil.which("c++") is None,
    reason="compiles with torch.compile (an opt-in path; CI never pays the compile time)",
)
def test_fused_elementwise_steps_equal_the_eager_ones() -> None:
    """Same noise draws, same outputs up to float rounding (conv and unfolded paths)."""
    layer = _programmed(LAYOUTS[7])
    x = 2.0 * torch.randn(2, 10, 6, 7)
    outputs = []
    for fused in (False, True):
        set_fused_elementwise(fused)
        try:
            layer.set_forward_seed(11)
            with torch.no_grad():
                outputs.append([layer._conv_forward(x), layer._unfolded_forward(x)])
        finally:
            set_fused_elementwise(False)
    for eager, fused in zip(*outputs, strict=True):
        # Rounding may move an output across an ADC step boundary: allow one step, rarely.
        step = quantization_step(256, 1.0) * float(eager.abs().max())
        assert_close(fused, eager, rtol=0, atol=step)
        assert float((fused != eager).float().mean()) < 0.01


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("layout", [LAYOUTS[0], LAYOUTS[6], LAYOUTS[7]])
def test_paths_on_cuda(layout: dict[str, Any]) -> None:
    """Both paths on CUDA: ideal equality with plain PyTorch, noise in distribution, gradients."""
    device = torch.device("cuda")
    layer = _layer(layout, ideal()).to(device).eval()
    x = torch.randn(3, layout["in_channels"], 9, 11, device=device)
    with torch.no_grad():
        conv, unfolded = _both_paths(layer, x)
        assert_close(conv, layer.to_digital()(x), rtol=1e-4, atol=1e-4)
        assert_close(unfolded, conv, rtol=1e-4, atol=1e-4)
    noisy = _programmed(layout).to(device)
    with torch.no_grad():
        draws = torch.stack([noisy._conv_forward(x) for _ in range(200)])
        reference = torch.stack([noisy._unfolded_forward(x) for _ in range(200)])
    var_conv, var_unfolded = draws.var(dim=0), reference.var(dim=0)
    free = (var_conv > 0) & (var_unfolded > 0)  # outputs pinned at the ADC bound have none
    log_ratio = (var_conv[free] / var_unfolded[free]).log()
    assert abs(float(log_ratio.mean())) < 5 * math.sqrt(4 / 199) / math.sqrt(log_ratio.numel())
    trained = _calibrated(_layer(layout, standard_hwa_2023())).to(device).train()
    trained(x.requires_grad_()).sum().backward()
    assert trained.weight.grad is not None and torch.isfinite(trained.weight.grad).all()
