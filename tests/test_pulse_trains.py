"""Stochastic pulse trains against the bit-line formulas (reference docs/devices.md)."""

from __future__ import annotations

import math

import pytest
import torch

from analoglib.tiles.pulse import (
    PulseTrainParameters,
    bit_line_parameters,
    expected_counts,
    pulse_counts,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_bit_line_length_follows_the_management_formula() -> None:
    x = torch.tensor([[0.5, -1.0], [0.1, 0.05], [0.0, 0.0]])
    d = torch.tensor([[2.0, 0.3], [0.2, -0.1], [1.0, 1.0]])
    lr, dw_min = 0.01, 0.001
    bl, _, _, scale = bit_line_parameters(x, d, lr, dw_min, PulseTrainParameters(desired_bl=31))
    k = [lr * 1.0 * 2.0 / dw_min, lr * 0.1 * 0.2 / dw_min, 0.0]  # 20, 0.02, 0
    assert bl.tolist() == [min(math.ceil(k[0]), 31), 1, 0]
    assert scale.tolist() == pytest.approx([1.0, 1.0, 1.0])
    fixed = PulseTrainParameters(desired_bl=31, update_bl_management=False)
    assert bit_line_parameters(x, d, lr, dw_min, fixed)[0].tolist() == [31, 31, 0]


def test_largest_input_and_error_fire_always_when_k_equals_bl() -> None:
    x = torch.tensor([[0.5, -0.25]])
    d = torch.tensor([[0.4, 0.1]])
    dw_min = 0.001
    lr = 3 * dw_min / (0.5 * 0.4)  # k = 3 exactly
    bl, p_x, p_d, _ = bit_line_parameters(x, d, lr, dw_min, PulseTrainParameters())
    assert bl.item() == 3
    assert p_x[0, 0].item() == pytest.approx(1.0) and p_d[0, 0].item() == pytest.approx(1.0)
    counts = pulse_counts(x, d, lr, dw_min, PulseTrainParameters(), _gen())
    assert counts[0, 0, 0].item() == -3  # x > 0, d > 0: three down pulses


def test_mean_signed_count_is_the_sgd_step_in_pulses() -> None:
    n = 20_000
    x = torch.tensor([[0.8, -0.3, 0.05]]).repeat(n, 1)
    d = torch.tensor([[0.5, -0.2]]).repeat(n, 1)
    lr, dw_min = 0.02, 0.001  # k = 8 < 31: no clipping
    counts = pulse_counts(x, d, lr, dw_min, PulseTrainParameters(), _gen(1)).double()
    mean, se = counts.mean(dim=0), counts.std(dim=0) / math.sqrt(n)
    target = expected_counts(x[:1], d[:1], lr, dw_min)[0].double()
    assert ((mean - target).abs() <= 4 * se + 1e-9).all(), (mean, target)


def test_updates_beyond_the_train_are_clipped_at_bl_pulses() -> None:
    x = torch.tensor([[1.0, 0.5]]).repeat(2000, 1)
    d = torch.tensor([[1.0, -0.5]]).repeat(2000, 1)
    lr, dw_min = 0.1, 0.001  # k = 100 > 31
    params = PulseTrainParameters(desired_bl=31)
    counts = pulse_counts(x, d, lr, dw_min, params, _gen(2))
    assert counts.abs().max().item() <= 31
    assert (counts[:, 0, 0] == -31).all()  # the largest pair fires in every slot
    # the others keep the SGD proportions of the clipped update: |x_j d_i| / max * 31
    assert counts[:, 1, 1].double().mean().item() == pytest.approx(31 / 4, rel=0.05)


def test_counts_of_one_row_are_correlated_by_the_shared_train() -> None:
    n = 20_000
    x = torch.tensor([[0.5]]).repeat(n, 1)
    d = torch.tensor([[0.5, 0.5]]).repeat(n, 1)
    counts = pulse_counts(x, d, 0.005, 0.001, PulseTrainParameters(), _gen(3)).double()
    a, b = counts[:, 0, 0], counts[:, 1, 0]
    correlation = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert correlation > 0.1  # independent trains would give 0 (+- 0.007 at this n)


def test_mean_count_is_the_rounded_expectation_and_batch_sums_samples() -> None:
    x = torch.tensor([[0.8, -0.35], [0.2, 0.6]])  # no expected count ends in .5
    d = torch.tensor([[0.5], [-0.4]])
    params = PulseTrainParameters(pulse_type="mean_count")
    counts = pulse_counts(x, d, 0.01, 0.001, params)
    torch.testing.assert_close(counts, torch.round(expected_counts(x, d, 0.01, 0.001)).long())
    summed = pulse_counts(x, d, 0.01, 0.001, params, aggregate="batch")
    torch.testing.assert_close(summed, counts.sum(dim=0))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="desired_bl"):
        PulseTrainParameters(desired_bl=0)
    with pytest.raises(ValueError, match="pulse_type"):
        PulseTrainParameters(pulse_type="stochastic_fancy")
    with pytest.raises(ValueError, match="aggregate"):
        pulse_counts(
            torch.ones(1, 1), torch.ones(1, 1), 0.1, 0.01, PulseTrainParameters(), aggregate="epoch"
        )
