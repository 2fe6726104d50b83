"""The ``lammie_2024`` preset: stated values, RoBERTa-base tiling, per-tile mapping, HWA noise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analoglib.nn import AnalogLinear
from analoglib.presets import get_preset, lammie_2024, standard_hwa_2023
from analoglib.tiles.mapper import TileMapping


def test_values_stated_in_the_paper() -> None:
    """``docs/model.md#recipe-lammie``, ``docs/model.md#post-training``."""
    c = lammie_2024()
    assert (c.mapping.max_input_size, c.mapping.max_output_size) == (512, 512)
    f = c.forward
    assert (f.inp_res, f.inp_bound, f.out_res) == (254, 1.0, 254)  # 8-bit DAC and ADC
    assert f.out_noise == 0.1
    assert f.ir_drop_g_ratio == pytest.approx(1 / (0.35 * 5e-6))  # 0.35 Ohm at 5 uS
    assert c.noise_model.g_max_uS == 25.0 and c.noise_model.g_min_uS == 0.0
    assert (c.modifier.type, c.modifier.std_dev, c.modifier.rel_to_actual_wmax) == (
        "add_normal",
        0.06,
        True,
    )
    # The threshold is not stated; 3 std of each tile (see the preset's docstring).
    assert (c.clip.type, c.clip.sigma) == ("layer_gaussian", 3.0)
    assert get_preset("lammie_2024").differences(c) == []


def test_differs_from_the_standard_model_only_where_documented() -> None:
    diff = standard_hwa_2023().differences(lammie_2024())
    assert sorted(line.split(":")[0] for line in diff) == [
        "clip.sigma",
        "clip.type",
        "forward.out_noise",
        "mapping.max_output_size",
        "mapping.weight_scaling_columnwise",
        "modifier.std_dev",
        "modifier.type",
        "remap.type",
    ]


def test_roberta_base_maps_onto_the_papers_486_tiles() -> None:
    # RoBERTa-base for sequence classification: 12 layers of Q, K, V, O (768 x 768) and the
    # feed-forward pair (768 -> 3072 -> 768), then the head's dense (768 x 768) and output
    # projection (768 -> 2); the paper counts 486 tiles of 512 x 512
    # (``docs/model.md#post-training``).
    c = lammie_2024().mapping
    shapes = 12 * ([(768, 768)] * 4 + [(768, 3072), (3072, 768)]) + [(768, 768), (768, 2)]
    mappings = [
        TileMapping.build(n_in, n_out, 1, c.max_input_size, c.max_output_size)
        for n_in, n_out in shapes
    ]
    assert sum(m.n_tiles for m in mappings) == 486
    assert sum(n_in * n_out for n_in, n_out in shapes) == pytest.approx(85.5e6, rel=1e-3)
    assert all(m.tile_shape == (512, 512) for m in mappings)


def test_weights_are_normalised_per_physical_tile() -> None:
    # 1024 outputs split into two tiles of 512 columns: each tile's abs-max maps to 1 (g_max),
    # the other columns keep their relative size (head room for the column-range optimiser).
    torch.manual_seed(0)
    digital = nn.Linear(300, 1024)
    with torch.no_grad():
        digital.weight[:512] *= 4.0  # does not shrink the second tile
        digital.weight[512:] *= torch.linspace(0.1, 1.0, 512).unsqueeze(1)
    layer = AnalogLinear.from_digital(digital, lammie_2024())
    assert layer.mapping.tiles_out == 2
    column_max = layer.reference_tiles().detach().abs().amax(dim=2)[0]  # (1024,)
    assert column_max[:512].max() == pytest.approx(1.0) and column_max[512:].max() == (
        pytest.approx(1.0)
    )
    assert column_max[512:].min() < 0.2
    torch.testing.assert_close(layer.digital_weight(), digital.weight)


def test_hwa_weight_noise_is_six_percent_of_the_tile_max_in_training_only() -> None:
    torch.manual_seed(1)
    layer = AnalogLinear.from_digital(nn.Linear(512, 512), lammie_2024())
    tiles = layer.reference_tiles().detach()
    generator = torch.Generator().manual_seed(2)
    noise = layer._modified_tiles(tiles, generator) - tiles
    # 262,144 draws: the sample std has a relative standard error of 1/sqrt(2 n) = 0.14 %.
    assert float(noise.std()) == pytest.approx(0.06 * float(tiles.abs().max()), rel=0.01)
    layer.eval()
    assert torch.equal(layer._current_tiles(generator), tiles)  # no modifier in eval()
