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
    torch.testing.assert_close(summed[0] - summed[1], counts.sum(dim=0))
    torch.testing.assert_close(summed[0] + summed[1], counts.abs().sum(dim=0))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="desired_bl"):
        PulseTrainParameters(desired_bl=0)
    with pytest.raises(ValueError, match="pulse_type"):
        PulseTrainParameters(pulse_type="stochastic_fancy")
    with pytest.raises(ValueError, match="aggregate"):
        pulse_counts(
            torch.ones(1, 1), torch.ones(1, 1), 0.1, 0.01, PulseTrainParameters(), aggregate="epoch"
        )


# ---- T13: batch-aggregated against per-sample application -------------------------------------
def _counts(seed: int, shape=(16, 4, 3)) -> torch.Tensor:
    """Signed per-sample counts (batch 16) with up and down pulses on the same devices."""
    return torch.randint(-3, 4, shape, generator=_gen(seed))


def test_batch_and_sample_application_agree_for_a_linear_device() -> None:
    from analoglib import devices as dv

    device = dv.ConstantStepDevice(
        dw_min=0.01,
        dw_min_dtod=0.0,
        up_down_dtod=0.0,
        w_max_dtod=0.0,
        w_min_dtod=0.0,
        dw_min_std=0.0,
    )
    state = dv.sample_device_state(device, (4, 3), _gen())
    counts = _counts(1)
    batch = torch.stack([counts.clamp(min=0).sum(0), (-counts).clamp(min=0).sum(0)])
    w0 = torch.zeros(4, 3)
    per_sample = dv.apply_pulse_counts(w0, counts, state, device, _gen(2))
    aggregated = dv.apply_pulse_counts(w0, batch, state, device, _gen(2), aggregate="batch")
    torch.testing.assert_close(aggregated, per_sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(per_sample, 0.01 * counts.sum(0).float(), rtol=0, atol=1e-6)
    for aggregate, given in (("sample", counts), ("batch", batch)):
        closed = dv.apply_pulse_counts(w0, given, state, device, _gen(2), aggregate, True)
        torch.testing.assert_close(closed, per_sample, rtol=0, atol=1e-6)


def test_batch_aggregation_error_is_second_order_and_keeps_the_asymmetry() -> None:
    from analoglib import devices as dv

    s, b = 0.01, 0.5
    device = dv.SoftBoundsDevice(
        dw_min=s,
        dw_min_dtod=0.0,
        up_down_dtod=0.0,
        w_max_dtod=0.0,
        w_min_dtod=0.0,
        dw_min_std=0.0,
        w_max=b,
        w_min=-b,
    )
    state = dv.sample_device_state(device, (4, 3), _gen())
    counts = _counts(3)
    batch = torch.stack([counts.clamp(min=0).sum(0), (-counts).clamp(min=0).sum(0)])
    w0 = torch.full((4, 3), 0.3)
    per_sample = dv.apply_pulse_counts(w0, counts, state, device, _gen(4))
    aggregated = dv.apply_pulse_counts(w0, batch, state, device, _gen(4), aggregate="batch")
    netted = dv.apply_pulses(w0, counts.sum(0), state, device, _gen(4))
    pulses = batch.sum(0).float()  # pulses per device
    # reordering n steps of s(1 - w/b) moves the result by at most n^2 s^2 / b
    assert ((aggregated - per_sample).abs() <= pulses**2 * s**2 / b + 1e-7).all()
    # the pulses pull toward the symmetric point 0 whatever their sign; netting loses that
    pull = (w0 - per_sample).mean().item()
    assert pull > 0 and (w0 - netted).mean().item() < pull / 2
    assert (aggregated - per_sample).abs().mean() < (netted - per_sample).abs().mean() / 3


def test_batch_counts_are_the_sums_of_the_per_sample_counts() -> None:
    # same generator state: the same trains; leading dims are independent tiles
    x = torch.randn(3, 7, 20, generator=_gen(5))  # (tiles, batch, n_in)
    d = torch.randn(3, 7, 6, generator=_gen(6)) * 0.05
    params = PulseTrainParameters()
    per_sample = pulse_counts(x, d, 0.1, 0.001, params, _gen(7))  # (tiles, batch, out, in)
    batch = pulse_counts(x, d, 0.1, 0.001, params, _gen(7), aggregate="batch")
    assert torch.equal(batch[0], per_sample.clamp(min=0).sum(dim=1))
    assert torch.equal(batch[1], (-per_sample).clamp(min=0).sum(dim=1))
    assert batch.sum() > 0
    # each tile manages its own train: tile 0 alone gives tile 0's counts
    alone = pulse_counts(x[0], d[0], 0.1, 0.001, params, _gen(7))
    assert alone.shape == per_sample[0].shape


def test_two_pass_trains_have_the_same_mean_and_independent_passes() -> None:
    # row 1 (x = 0.1) fires with probability 0.2 in each of BL = 10 slots; column 0 asks for up
    # pulses, column 1 for down pulses, both with mean 1 * 0.1 * 0.02 / 0.001 = 2
    n = 4000
    x = torch.tensor([[0.5, 0.1]]).expand(n, 2).contiguous()
    d = torch.tensor([[-0.02, 0.02]]).expand(n, 2).contiguous()
    for pulse_type, correlated in (("stochastic_compressed", True), ("stochastic", False)):
        params = PulseTrainParameters(pulse_type=pulse_type)
        counts = pulse_counts(x, d, 1.0, 0.001, params, _gen(8)).double()[:, :, 1]  # (n, 2)
        # Binomial(10, 0.2): std 1.26, so 5 standard errors of the mean are 0.1
        assert torch.allclose(
            counts.mean(dim=0), torch.tensor([2.0, -2.0], dtype=torch.float64), atol=0.1
        )
        correlation = float(torch.corrcoef(counts.T.abs())[0, 1])
        # one shared row train gives both devices the same count; two passes are independent
        assert correlation > 0.99 if correlated else abs(correlation) < 0.1
