"""Post-training input-range calibration: percentiles, padding, undo, determinism, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import analoglib as al
from analoglib.nn import AnalogLinear
from analoglib.optim.input_range import masked_quantile
from analoglib.presets import standard_hwa_2023


def _layer(in_features: int, out_features: int = 8, seed: int = 0) -> AnalogLinear:
    torch.manual_seed(seed)
    return AnalogLinear.from_digital(nn.Linear(in_features, out_features), standard_hwa_2023())


def test_range_is_the_requested_percentile_of_a_known_distribution() -> None:
    # 1000 inputs on two tiles of 500 rows; the second tile sees inputs three times larger.
    layer = _layer(1000)
    gen = torch.Generator().manual_seed(1)
    scale = torch.cat([torch.ones(500), 3 * torch.ones(500)])
    batches = [torch.randn(1000, 1000, generator=gen) * scale for _ in range(4)]
    report = al.optim.calibrate_input_ranges(layer, batches, percentile=99.0, max_samples=4000)
    # |N(0, 1)| has its 99th percentile at the 99.5th of N(0, 1): 2.5758.
    expected = stats.norm.ppf(0.995) * torch.tensor([1.0, 3.0])
    # 4000 vectors x 500 rows = 2e6 samples per tile: the quantile's standard error is
    # sqrt(p (1 - p) / n) / f(q) = 7.0e-5 / 0.0289 = 2.4e-3 (relative 1e-3); allow 5 sigma.
    torch.testing.assert_close(layer.input_range.detach(), expected, rtol=5e-3, atol=0)
    assert list(report.table["range_after"]) == pytest.approx(layer.input_range.tolist())
    assert report.table["clipped_after"].to_numpy() == pytest.approx([0.01, 0.01], abs=1e-3)
    assert (report.table["range_before"] == 3.0).all()


def test_range_equals_numpy_percentile_when_every_vector_is_kept() -> None:
    layer = _layer(300)
    x = torch.rand(50, 300, generator=torch.Generator().manual_seed(2)) * 4 - 2
    al.optim.calibrate_input_ranges(layer, [x[:20], x[20:]], percentile=90.0, max_samples=50)
    expected = np.percentile(x.abs().numpy(), 90.0)
    assert float(layer.input_range.detach()[0]) == pytest.approx(expected, rel=1e-6)


def test_padded_rows_are_not_counted() -> None:
    # 701 inputs -> tiles of 351 and 350 rows: the second tile has one padded (zero) row.
    layer = _layer(701)
    assert layer.mapping.is_padded
    x = 1 + torch.rand(64, 701, generator=torch.Generator().manual_seed(3))  # |x| >= 1
    al.optim.calibrate_input_ranges(layer, [x], percentile=1e-6)
    assert (layer.input_range.detach() >= 1.0).all()


def test_calibration_lowers_the_mvm_error_of_clipped_inputs() -> None:
    layer = _layer(512, 512)
    gen = torch.Generator().manual_seed(4)
    x = 20 * torch.randn(256, 512, generator=gen)  # far beyond the preset range of 3
    ideal = nn.functional.linear(x, layer.digital_weight())
    layer.eval()
    with torch.no_grad():
        error_fixed = al.mvm_error(layer(x) - layer.bias, ideal)
        al.optim.calibrate_input_ranges(layer, [x], percentile=99.9)
        error_calibrated = al.mvm_error(layer(x) - layer.bias, ideal)
    assert error_calibrated < 0.5 * error_fixed
    assert not layer._ideal  # the exact calibration forward is switched off again


def test_undo_restores_the_exact_state_and_output() -> None:
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))
    analog = al.convert_to_analog(model, standard_hwa_2023(), seed=0)
    analog.train()
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(5))
    analog(x)  # one data-initialisation step of the learned ranges
    before = copy.deepcopy(analog.state_dict())
    analog.eval()
    al.set_forward_seed(analog, 7)
    with torch.no_grad():
        y_before = analog(x)
    report = al.optim.calibrate_input_ranges(analog, [x], percentile=99.0)
    assert not analog.training  # the training flag is restored (it was eval here)
    assert all(b >= 100 for b in (analog[0].input_range_batches, analog[2].input_range_batches))
    report.undo()
    for key, value in analog.state_dict().items():
        if isinstance(value, torch.Tensor):  # (the extra state holds the config)
            assert torch.equal(value, before[key]), key
    al.set_forward_seed(analog, 7)
    with torch.no_grad():
        assert torch.equal(analog(x), y_before)
    with pytest.raises(RuntimeError, match="already undone"):
        report.undo()
    assert "undone" in repr(report)


def test_same_seed_same_ranges_and_training_flag_kept() -> None:
    layer = _layer(100)
    x = torch.randn(500, 100, generator=torch.Generator().manual_seed(6))
    results = []
    for seed in (0, 0, 1):
        copy_ = copy.deepcopy(layer).train()
        al.optim.calibrate_input_ranges(copy_, [x], percentile=99.0, max_samples=20, seed=seed)
        assert copy_.training
        results.append(copy_.input_range.detach().clone())
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])  # another sample of 20 of 500 vectors


def test_masked_quantile_matches_torch_quantile() -> None:
    values = torch.randn(3, 101, generator=torch.Generator().manual_seed(8))
    mask = torch.ones_like(values, dtype=torch.bool)
    mask[1, 50:] = False
    mask[2] = False
    result = masked_quantile(values, mask, 0.3)
    torch.testing.assert_close(result[0], torch.quantile(values[0], 0.3))
    torch.testing.assert_close(result[1], torch.quantile(values[1, :50], 0.3))
    assert torch.isnan(result[2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"percentile": 0}, "percentile = 0"),
        ({"percentile": 100.5}, "percentile = 100.5"),
        ({"percentile": True}, "percentile = True"),
        ({"max_samples": 0}, "max_samples = 0"),
        ({"max_batches": -1}, "max_batches = -1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        al.optim.calibrate_input_ranges(_layer(10), [torch.zeros(2, 10)], **kwargs)  # type: ignore[arg-type]


def test_models_without_ranges_or_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="no analog layers"):
        al.optim.calibrate_input_ranges(nn.Linear(3, 3), [torch.zeros(1, 3)])
    config = standard_hwa_2023()
    config.pre_post.input_range.enable = False
    no_ranges = AnalogLinear.from_digital(nn.Linear(3, 3), config)
    with pytest.raises(ValueError, match="input_range.enable = False"):
        al.optim.calibrate_input_ranges(no_ranges, [torch.zeros(1, 3)])
    with pytest.raises(ValueError, match="batches is empty"):
        al.optim.calibrate_input_ranges(_layer(3), [])
    with pytest.raises(ValueError, match="default_run_batch"):
        al.optim.calibrate_input_ranges(_layer(3), ["text"])
