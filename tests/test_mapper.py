"""Tiling of layers onto crossbars (``docs/model.md#tiling``) and the mapping summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, gen
from torch import nn

import analoglib
from analoglib.nn import AnalogLinear
from analoglib.presets import ideal, standard_hwa_2023
from analoglib.tiles.mapper import TileMapping, split_sizes

# -- split_sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_size"),
    [
        (1, 512),
        (100, 512),
        (511, 512),
        (512, 512),
        (513, 512),
        (700, 512),
        (1024, 512),
        (1025, 512),
        (1500, 512),
        (5000, 512),
        (333, 100),
        (150, 64),
        (7, 1),
        (9, 4),
    ],
)
def test_split_sizes_are_equal(size: int, max_size: int) -> None:
    sizes = split_sizes(size, max_size)
    assert len(sizes) == math.ceil(size / max_size)  # T = ceil(N / 512)
    assert sum(sizes) == size
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) <= max_size
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(
    ("size", "max_size", "expected"),
    [
        (700, 512, [350, 350]),
        (1025, 512, [342, 342, 341]),
        (1500, 512, [500, 500, 500]),
        (333, 100, [84, 83, 83, 83]),
        (513, 512, [257, 256]),
        (512, 512, [512]),
        (1234, 0, [1234]),
    ],
)
def test_split_sizes_examples(size: int, max_size: int, expected: list[int]) -> None:
    assert split_sizes(size, max_size) == expected


@pytest.mark.parametrize(("size", "max_size"), [(0, 512), (-3, 512), (10, -1)])
def test_split_sizes_refuses_bad_arguments(size: int, max_size: int) -> None:
    with pytest.raises(ValueError):
        split_sizes(size, max_size)


# -- TileMapping --------------------------------------------------------------------------------

MAPPINGS = [
    # (in, out, groups, max_in, max_out)
    (700, 30, 1, 512, 0),
    (1025, 17, 1, 512, 0),
    (512, 8, 1, 512, 0),
    (333, 150, 1, 100, 64),
    (27, 4, 3, 10, 0),
    (9, 2, 8, 512, 0),
    (1500, 700, 1, 512, 0),
]


@pytest.mark.parametrize("shape", MAPPINGS)
def test_to_tiles_from_tiles_round_trip(shape: tuple[int, int, int, int, int]) -> None:
    n_in, n_out, groups, max_in, max_out = shape
    m = TileMapping.build(n_in, n_out, groups, max_in, max_out)
    matrix = torch.randn(groups, n_out, n_in, generator=gen(0))
    tiled = m.to_tiles(matrix)
    sizes = split_sizes(n_in, max_in)
    assert tiled.shape == (groups * len(sizes), n_out, max(sizes))
    assert torch.equal(m.from_tiles(tiled), matrix)
    # Independent check of the layout: tile (g, t) holds columns start..start+size of group g,
    # padded rows are zero.
    for g in range(groups):
        start = 0
        for t, size in enumerate(sizes):
            block = tiled[g * len(sizes) + t]
            assert torch.equal(block[:, :size], matrix[g, :, start : start + size])
            assert torch.equal(block[:, size:], torch.zeros_like(block[:, size:]))
            start += size
    mask = m.row_mask()
    assert mask.shape == (groups * len(sizes), 1, max(sizes))
    assert mask.sum().item() == groups * n_in


@pytest.mark.parametrize("shape", MAPPINGS)
def test_mapping_counts_and_utilization(shape: tuple[int, int, int, int, int]) -> None:
    n_in, n_out, groups, max_in, max_out = shape
    m = TileMapping.build(n_in, n_out, groups, max_in, max_out)
    tiles_in = math.ceil(n_in / max_in) if max_in else 1
    tiles_out = math.ceil(n_out / max_out) if max_out else 1
    assert (m.tiles_in, m.tiles_out) == (tiles_in, tiles_out)
    assert m.n_tiles == groups * tiles_in * tiles_out
    rows = max_in or n_in
    cols = max_out or n_out
    assert m.utilization == pytest.approx(groups * n_in * n_out / (m.n_tiles * rows * cols))
    assert 0 < m.utilization <= 1
    assert sum(m.out_sizes) == n_out


def test_mapping_refuses_empty_layers() -> None:
    with pytest.raises(ValueError, match="in_features"):
        TileMapping.build(0, 4)
    with pytest.raises(ValueError, match="groups"):
        TileMapping.build(4, 4, groups=0)


# -- tiling leaves the ideal result unchanged ---------------------------------------------------


@pytest.mark.parametrize(
    ("n_in", "n_out", "max_in", "max_out"),
    [
        (700, 40, 512, 0),
        (1025, 40, 512, 0),
        (1500, 40, 512, 0),
        (333, 20, 100, 0),
        (60, 150, 512, 64),
        (333, 150, 100, 64),
    ],
)
def test_tiling_keeps_ideal_result(n_in: int, n_out: int, max_in: int, max_out: int) -> None:
    torch.manual_seed(n_in + n_out)
    linear = nn.Linear(n_in, n_out)
    config = ideal()
    config.mapping.max_input_size = max_in
    config.mapping.max_output_size = max_out
    layer = AnalogLinear.from_digital(linear, config).eval()
    assert layer.mapping.n_tiles == math.ceil(n_in / max_in) * (
        math.ceil(n_out / max_out) if max_out else 1
    )
    x = torch.randn(16, n_in)
    with torch.no_grad():
        assert_close(layer(x), linear(x), atol=1e-5, rtol=1e-5)
    # Each tile column is normalised on its own, so the tiles really carry different scales.
    if layer.mapping.tiles_in > 1:
        scales = layer.mapping_scales
        assert not torch.allclose(scales[0], scales[1])
    # Reference tiles times their column scales give back the digital weight's slices.
    tiles = layer.reference_tiles() * layer.mapping_scales.unsqueeze(2)
    digital_tiles = layer.mapping.to_tiles(linear.weight.detach().unsqueeze(0))
    assert_close(tiles, digital_tiles, atol=1e-7, rtol=1e-6)
    assert layer.reference_tiles().abs().amax(dim=2).max().item() == pytest.approx(1.0)


def test_output_split_gdc_is_per_physical_tile() -> None:
    """With max_output_size the drift compensation factor is shared within a physical tile."""
    config = standard_hwa_2023()
    config.mapping.max_output_size = 64
    config.pre_post.input_range.enable = False
    torch.manual_seed(3)
    layer = AnalogLinear.from_digital(nn.Linear(100, 150), config)
    analoglib.program(layer, 0)
    analoglib.drift(layer, 86400.0, 1)
    alpha = layer._gdc_alpha
    assert alpha is not None and alpha.shape == (1, 150)
    sizes = split_sizes(150, 64)
    start = 0
    values = []
    for size in sizes:
        block = alpha[0, start : start + size]
        assert torch.all(block == block[0])
        values.append(block[0].item())
        start += size
    assert len(set(values)) == len(sizes)


# -- summary ------------------------------------------------------------------------------------


def test_summary_linear_1500_to_700() -> None:
    model = analoglib.convert_to_analog(nn.Linear(1500, 700), standard_hwa_2023())
    table = analoglib.summary(model)
    row = table.iloc[0]
    assert row["tiles"] == 3  # ceil(1500 / 512)
    assert row["split"] == "1x3x1"
    assert row["tile_shape"] == "512x700"
    assert row["utilization"] == pytest.approx(1500 * 700 / (3 * 512 * 700))
    assert row["analog_weights"] == 1500 * 700
    assert not row["programmed"]


def test_summary_of_a_model() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),  # 27 rows -> 1 tile
        nn.Conv2d(64, 64, 3, padding=1, groups=4),  # 4 groups of 144 rows -> 4 tiles
        nn.Conv2d(64, 64, 3),  # 576 rows -> 2 tiles
        nn.Flatten(),
        nn.Linear(600, 10),  # 2 tiles
    )
    analog = analoglib.convert_to_analog(model, standard_hwa_2023())
    table = analoglib.summary(analog)
    assert list(table["layer"]) == ["0", "1", "2", "4", "total"]
    assert list(table["tiles"]) == [1, 4, 2, 2, 9]
    weights = [27 * 64, 4 * 16 * 144, 64 * 576, 600 * 10]
    assert list(table["analog_weights"]) == [*weights, sum(weights)]
    expected_util = [
        27 * 64 / (512 * 64),
        4 * 144 * 16 / (4 * 512 * 16),
        576 * 64 / (2 * 512 * 64),
        600 * 10 / (2 * 512 * 10),
    ]
    np.testing.assert_allclose(table["utilization"][:4].to_numpy(dtype=float), expected_util)
    cells = sum(w / u for w, u in zip(weights, expected_util, strict=True))
    assert table["utilization"].iloc[4] == pytest.approx(sum(weights) / cells)
    assert ((table["utilization"] > 0) & (table["utilization"] <= 1)).all()
    analoglib.program(analog, 0)
    assert analoglib.summary(analog)["programmed"].all()


def test_summary_without_analog_layers_raises() -> None:
    with pytest.raises(ValueError, match="no analog layers"):
        analoglib.summary(nn.Sequential(nn.ReLU()))
