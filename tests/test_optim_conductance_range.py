"""Post-training column conductance-range optimisation: gains, ADC clipping, signal, undo."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import analoglib as al
from analoglib.config import PCMConfig
from analoglib.nn import AnalogConv2d, AnalogLinear
from analoglib.optim.conductance_range import ideal_tile_outputs
from analoglib.presets import lammie_2024, standard_hwa_2023
from analoglib.tiles.tile import analog_mvm

OUT_BOUND = 10.0


def _quiet(config: PCMConfig) -> PCMConfig:
    """Converters and ADC kept, every noise source and IR drop off: clipping is exact."""
    config.forward.out_noise = 0.0
    config.forward.w_noise = 0.0
    config.forward.ir_drop = 0.0
    return config


def _per_tile_config() -> PCMConfig:
    """Per-tile weight normalisation: only the tile's largest column reaches |W~| = 1."""
    config = standard_hwa_2023()
    config.mapping.weight_scaling_columnwise = False
    return config


def _two_column_layer(config: PCMConfig) -> AnalogLinear:
    """512 inputs; column 0 all +1 (saturates on positive inputs), column 1 small and signed."""
    digital = nn.Linear(512, 2, bias=False)
    signs = torch.randint(0, 2, (512,), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        digital.weight[0] = 1.0
        digital.weight[1] = 0.02 * signs
    return AnalogLinear.from_digital(digital, config)


def _positive_inputs(n: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 512, generator=torch.Generator().manual_seed(seed))  # in [0, 1)


def _adc_outputs(layer: AnalogLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free tile outputs after DAC and ADC, and without converters, ``(batch, out)``."""
    with torch.no_grad():
        x_tiles = layer._apply_input_range(layer._tile_inputs(x.unsqueeze(1)))
        weight = layer.reference_tiles()
        exact = torch.bmm(x_tiles, weight.transpose(1, 2))
        return analog_mvm(x_tiles, weight, layer.config.forward)[0], exact[0]


def _ideal(layer: AnalogLinear, x: torch.Tensor) -> torch.Tensor:
    layer.set_ideal_forward(True)
    try:
        with torch.no_grad():
            return layer(x)
    finally:
        layer.set_ideal_forward(False)


def test_gains_follow_the_formula_on_known_outputs() -> None:
    layer = _two_column_layer(_quiet(_per_tile_config())).eval()
    x = _positive_inputs()
    weight_before = layer.reference_tiles().detach().clone()  # (1, 2, 512)
    x_tiles = layer._tile_inputs(x.unsqueeze(1))
    z = ideal_tile_outputs(layer, x_tiles).abs().double()  # (1, 256, 2)
    # Population statistics over the 256 vectors, as the optimiser accumulates them.
    peak = z.mean(dim=1) + 2.0 * z.std(dim=1, unbiased=False)  # (1, 2)
    headroom = 1.0 / weight_before.abs().amax(dim=2).double()  # (1, 2)
    expected = torch.minimum(0.8 * OUT_BOUND / peak, headroom.clamp(min=1.0))
    report = al.optim.optimize_conductance_ranges(layer, [x[:100], x[100:]], n_std=2.0, fill=0.8)
    gain = layer.reference_tiles().detach()[..., 0] / weight_before[..., 0]  # (1, 2)
    torch.testing.assert_close(gain.double(), expected, rtol=1e-5, atol=0)
    assert expected[0, 0] < 0.2  # column 0 saturates: shrunk about 10x
    assert 40 < expected[0, 1] <= 50  # column 1 grows, at most to |W~| = 1
    row = report.table.iloc[0]
    assert row["gain_min"] == pytest.approx(float(expected.min()), rel=1e-5)
    assert row["gain_max"] == pytest.approx(float(expected.max()), rel=1e-5)
    assert (row["shrunk"], row["grown"], row["n_vectors"]) == (0.5, 0.5, 256)
    assert row["saturating_before"] == 0.5 and row["saturating_after"] == 0.0
    assert row["clipped_before"] == pytest.approx(0.5)  # every output of column 0


def test_saturating_column_clips_less_quiet_column_gains_signal_ideal_output_kept() -> None:
    layer = _two_column_layer(_quiet(_per_tile_config())).eval()
    x = _positive_inputs()
    ideal_before = _ideal(layer, x)
    digital_before = layer.digital_weight().detach().clone()
    z_before, exact_before = _adc_outputs(layer, x)  # (batch, 2) each
    al.optim.optimize_conductance_ranges(layer, [x])
    z_after, exact_after = _adc_outputs(layer, x)

    clipped_before = (z_before[:, 0].abs() >= OUT_BOUND).float().mean()
    clipped_after = (z_after[:, 0].abs() >= OUT_BOUND).float().mean()
    assert clipped_before == 1.0 and clipped_after < 0.01
    # Column 1 spanned about one ADC step (0.079) of the +-10 range; grown about 44x, its
    # signal is resolved by the ADC.
    assert z_after[:, 1].abs().mean() > 20 * z_before[:, 1].abs().mean()
    error_before = al.mvm_error(z_before[:, 1], exact_before[:, 1])
    error_after = al.mvm_error(z_after[:, 1], exact_after[:, 1])
    assert error_after < 0.1 * error_before
    assert layer.reference_tiles().abs().max() <= 1 + 1e-6
    torch.testing.assert_close(_ideal(layer, x), ideal_before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.digital_weight(), digital_before, rtol=1e-6, atol=1e-7)


def test_growth_lowers_the_noisy_mvm_error_of_underused_columns() -> None:
    # Output noise 0.1 (lammie_2024) is fixed in normalised units; a column with 20x smaller
    # weights than the tile's largest one has about 20x worse signal-to-noise before growing.
    digital = nn.Linear(512, 16, bias=False)
    with torch.no_grad():
        digital.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(2))
        digital.weight[0, 0] = 1.0  # sets the tile's abs-max
    layer = AnalogLinear.from_digital(digital, lammie_2024()).eval()
    x = torch.randn(512, 512, generator=torch.Generator().manual_seed(3))
    ideal = _ideal(layer, x)[:, 1:]

    def error() -> float:
        al.set_forward_seed(layer, 4)
        with torch.no_grad():
            return al.mvm_error(layer(x)[:, 1:], ideal)

    error_before = error()
    report = al.optim.optimize_conductance_ranges(layer, [x])
    error_after = error()
    assert report.table["grown"].iloc[0] == pytest.approx(15 / 16)
    assert error_after < 0.25 * error_before


def test_standard_columnwise_mapping_only_shrinks() -> None:
    # Every column's abs-max is already 1: no head room to grow, quiet columns are unchanged.
    torch.manual_seed(5)
    layer = AnalogLinear.from_digital(nn.Linear(256, 32), standard_hwa_2023()).eval()
    weight_before = layer.weight.detach().clone()
    x = 0.1 * torch.randn(128, 256, generator=torch.Generator().manual_seed(6))
    report = al.optim.optimize_conductance_ranges(layer, [x])
    assert torch.equal(layer.weight.detach(), weight_before)
    assert (report.table["gain_max"] == 1.0).all() and (report.table["grown"] == 0).all()
    # Inputs at the full DAC range saturate (|z| ~ 9 std): every column shrinks.
    report.undo()
    al.optim.optimize_conductance_ranges(layer, [1000 * x])
    assert layer.weight.detach().abs().amax(dim=1).max() < 1.0


def test_grow_false_keeps_underused_columns() -> None:
    layer = _two_column_layer(_quiet(_per_tile_config()))
    report = al.optim.optimize_conductance_ranges(layer, [_positive_inputs()], grow=False)
    assert report.table["gain_max"].iloc[0] == 1.0
    assert report.table["gain_min"].iloc[0] < 0.2


def test_undo_restores_the_exact_state_and_output() -> None:
    model = nn.Sequential(nn.Linear(600, 40), nn.ReLU(), nn.Linear(40, 5))
    analog = al.convert_to_analog(model, lammie_2024(), seed=0).eval()
    x = 5 * torch.randn(32, 600, generator=torch.Generator().manual_seed(7))
    before = copy.deepcopy(analog.state_dict())
    al.set_forward_seed(analog, 8)
    with torch.no_grad():
        y_before = analog(x)
    report = al.optim.optimize_conductance_ranges(analog, [x])
    assert report.table["layer"].tolist() == ["0", "0", "2"]  # two input tiles, then one
    assert not torch.equal(analog[0].weight, before["0.weight"])
    report.undo()
    for key, value in analog.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[key]), key
    al.set_forward_seed(analog, 8)
    with torch.no_grad():
        assert torch.equal(analog(x), y_before)
    with pytest.raises(RuntimeError, match="already undone"):
        report.undo()


def test_deterministic_and_training_flag_kept() -> None:
    torch.manual_seed(9)
    layer = AnalogLinear.from_digital(nn.Linear(100, 20), lammie_2024()).train()
    x = 3 * torch.randn(200, 100, generator=torch.Generator().manual_seed(10))
    results = []
    for _ in range(2):
        copy_ = copy.deepcopy(layer)
        al.optim.optimize_conductance_ranges(copy_, [x[:50], x[50:]], max_batches=3)
        assert copy_.training
        results.append((copy_.weight.detach().clone(), copy_.mapping_scales.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_programmed_layer_must_be_reprogrammed() -> None:
    torch.manual_seed(11)
    model = al.convert_to_analog(nn.Sequential(nn.Linear(30, 10)), lammie_2024(), seed=0)
    x = 10 * torch.randn(64, 30, generator=torch.Generator().manual_seed(12))
    al.program(model.eval(), seed=0)
    al.optim.optimize_conductance_ranges(model, [x])
    with pytest.raises(RuntimeError, match="program"), torch.no_grad():
        model(x)
    al.program(model, seed=0)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def test_grouped_convolution_keeps_its_ideal_output() -> None:
    torch.manual_seed(13)
    conv = nn.Conv2d(4, 6, kernel_size=3, groups=2, padding=1)
    layer = AnalogConv2d.from_digital(conv, _per_tile_config()).eval()
    x = 20 * torch.rand(8, 4, 6, 6, generator=torch.Generator().manual_seed(14))
    layer.set_ideal_forward(True)
    with torch.no_grad():
        y_before = layer(x)
    layer.set_ideal_forward(False)
    report = al.optim.optimize_conductance_ranges(layer, [x])
    assert len(report.table) == 2  # one stacked tile per group
    layer.set_ideal_forward(True)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y_before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_std": -1.0}, "n_std = -1.0"),
        ({"n_std": float("inf")}, "n_std = inf"),
        ({"fill": 0.0}, "fill = 0.0"),
        ({"fill": 1.5}, "fill = 1.5"),
        ({"grow": 1}, "grow = 1"),
        ({"max_batches": -1}, "max_batches = -1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    layer = AnalogLinear.from_digital(nn.Linear(10, 3), lammie_2024())
    with pytest.raises(ValueError, match=match):
        al.optim.optimize_conductance_ranges(layer, [torch.zeros(2, 10)], **kwargs)  # type: ignore[arg-type]


def test_models_without_an_adc_or_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="no analog layers"):
        al.optim.optimize_conductance_ranges(nn.Linear(3, 3), [torch.zeros(1, 3)])
    perfect = AnalogLinear.from_digital(nn.Linear(3, 3), al.presets.ideal())
    with pytest.raises(ValueError, match="is_perfect = True"):
        al.optim.optimize_conductance_ranges(perfect, [torch.zeros(1, 3)])
    with pytest.raises(ValueError, match="batches is empty"):
        al.optim.optimize_conductance_ranges(
            AnalogLinear.from_digital(nn.Linear(3, 3), lammie_2024()), []
        )
