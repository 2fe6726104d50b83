"""Response-function updates: the asymmetry floor of Analog SGD and its absence in Tiki-Taka."""

from __future__ import annotations

import math

import pytest
import torch

from analoglib.training.response import (
    analog_update,
    expected_abs_normal,
    soft_bounds_floor,
    soft_bounds_update,
    tiki_taka_step,
)

TARGET = torch.tensor([0.6, -0.4, 0.2, 0.0])


def _run(tau: float, steps: int, lr: float, algorithm: str, seed: int = 0, replicas: int = 2000):
    """Mean weights over replicas and the last half of the run, f = |w - w*|^2 / 2, sigma = 1."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(replicas, len(TARGET))
    fast = torch.zeros_like(w)
    total = torch.zeros(len(TARGET))
    for step in range(steps):
        gradient = w - TARGET + torch.randn(w.shape, generator=gen)
        if algorithm == "analog_sgd":
            w = soft_bounds_update(w, -lr * gradient, tau)
        else:
            fast, w = tiki_taka_step(fast, w, gradient, lr, transfer_lr=0.1, tau=tau)
        if step >= steps // 2:
            total += w.mean(dim=0)
    return total / (steps - steps // 2)


def test_infinite_bound_is_digital_sgd_exactly() -> None:
    w = torch.randn(5, generator=torch.Generator().manual_seed(1))
    delta = torch.randn(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(soft_bounds_update(w, delta, math.inf), w + delta)


def test_soft_bounds_is_the_general_update_with_linear_responses() -> None:
    w = torch.linspace(-0.9, 0.9, 7)
    delta = torch.linspace(-0.1, 0.1, 7)
    tau = 1.5
    general = analog_update(w, delta, lambda v: 1 - v / tau, lambda v: 1 + v / tau)
    torch.testing.assert_close(general, soft_bounds_update(w, delta, tau))


def test_folded_normal_mean() -> None:
    mean = torch.tensor([0.0, 0.5, -2.0])
    noise = torch.randn(3, 200_000, generator=torch.Generator().manual_seed(3))
    samples = mean[:, None] + 0.7 * noise
    torch.testing.assert_close(
        expected_abs_normal(mean, 0.7),
        samples.abs().mean(dim=1),
        rtol=0,
        atol=4 * 0.7 / math.sqrt(200_000) * 2,
    )


def test_analog_sgd_settles_at_the_predicted_floor() -> None:
    tau, lr = 1.0, 0.01
    settled = _run(tau, 3000, lr, "analog_sgd")
    floor = soft_bounds_floor(TARGET, 1.0, tau)
    # between the optimum and the symmetric point 0, away from the optimum
    assert ((floor - TARGET).abs() > 0.05).sum() == 3
    torch.testing.assert_close(settled, floor, rtol=0, atol=0.03)


def test_the_floor_shrinks_with_the_bound() -> None:
    gaps = [
        (soft_bounds_floor(TARGET, 1.0, tau) - TARGET).abs().sum().item()
        for tau in (1.0, 1.5, 2.0, 2.5)
    ]
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:]))
    assert (soft_bounds_floor(TARGET, 1.0, 100.0) - TARGET).abs().sum().item() < 0.02


def test_tiki_taka_ends_at_least_five_times_closer_than_analog_sgd() -> None:
    tau, lr = 1.0, 0.01
    sgd_gap = (_run(tau, 3000, lr, "analog_sgd") - TARGET).abs().sum().item()
    tt_gap = (_run(tau, 3000, lr, "tiki_taka") - TARGET).abs().sum().item()
    assert tt_gap * 5 <= sgd_gap, (tt_gap, sgd_gap)


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="tau"):
        soft_bounds_update(torch.zeros(1), torch.zeros(1), 0.0)
