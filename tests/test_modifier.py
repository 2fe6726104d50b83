"""The HWA weight-noise modifier takes its PCM statistics and read time from the noise model."""

from __future__ import annotations

import math

import pytest
import torch

from analoglib.config import PCMNoiseParameters, WeightModifierParameters
from analoglib.noise import PCMNoiseModel, modify_weights, weight_noise
from analoglib.utils import make_generator


def _read_only_noise(t_read_s: float, w: torch.Tensor) -> torch.Tensor:
    """pcm_noise with programming noise and drift off: only the 1/f read term remains."""
    modifier = WeightModifierParameters(
        type="pcm_noise", std_dev=1.0, coeffs=(0.0, 0.0, 0.0), pcm_t_inference_s=0.0
    )
    model = PCMNoiseModel(PCMNoiseParameters(t_read_s=t_read_s))
    wmax = torch.ones(1, 1, 1)
    return weight_noise(w.clone(), wmax, 1.0, modifier, model, make_generator(0))


@pytest.mark.parametrize("t_read_s", [250e-9, 1e-6, 25e-9])
def test_pcm_noise_read_term_follows_the_noise_models_read_time(t_read_s: float) -> None:
    w = torch.linspace(0.1, 1.0, 64).reshape(1, 8, 8)
    base = _read_only_noise(250e-9, w) - w
    other = _read_only_noise(t_read_s, w) - w
    t = 20.0  # t_inference + t0 of the modifier
    expected = math.sqrt(math.log((t + t_read_s) / (2 * t_read_s))) / math.sqrt(
        math.log((t + 250e-9) / 500e-9)
    )
    # Same generator, same normal draws: the deviations scale by the ratio of time factors
    # (up to the fold at |g| = 0, which these draws do not reach).
    assert torch.allclose(other, base * expected, rtol=1e-4, atol=1e-7)
    if t_read_s != 250e-9:
        assert not torch.allclose(other, base)


def test_modifier_is_straight_through_and_off_when_none() -> None:
    w = torch.randn(2, 4, 8, generator=make_generator(1), requires_grad=True)
    model = PCMNoiseModel(PCMNoiseParameters())
    off = modify_weights(w, WeightModifierParameters(), 1.0, model, make_generator(0))
    assert off is w
    on = modify_weights(
        w, WeightModifierParameters(type="add_normal", std_dev=0.1), 1.0, model, make_generator(0)
    )
    assert not torch.equal(on, w)
    on.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
