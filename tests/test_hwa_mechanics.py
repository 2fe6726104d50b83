"""HWA training mechanics as aihwkit's C++ tile has them (``docs/model.md#hwa-mechanics``).

Optimiser steps act on the effective weights W = s * gamma * W~ (so after remapping SGD moves
W by -lr dL/dW whatever the column scale), weight noise is drawn once per optimiser step, and
remapping folds the learned output scales into the mapping scales. The ADC-bound gradient mask
(input gradient only) is tested with the tile forward in ``tests/test_tile.py``.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close, gen
from torch import nn

import analoglib
from analoglib.config import WeightModifierParameters
from analoglib.nn import AnalogLinear
from analoglib.presets import ideal, standard_hwa_2023
from analoglib.training import fit, remap_weights, weight_space_updates


def _scaled_linear() -> nn.Linear:
    """A float64 8 -> 6 linear layer whose columns differ in scale by up to 100x."""
    linear = nn.Linear(8, 6).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(6, 8, generator=gen(0), dtype=torch.float64))
        linear.weight.mul_(torch.logspace(-1, 1, 6, dtype=torch.float64).view(6, 1))
        linear.bias.copy_(torch.randn(6, generator=gen(5), dtype=torch.float64))
    return linear


def _ideal_analog(linear: nn.Linear) -> AnalogLinear:
    config = ideal()
    config.mapping.learn_out_scaling = False  # the digital twin has no output scales
    layer = AnalogLinear.from_digital(linear, config)
    layer.train()
    return layer


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(16, 8, generator=gen(1), dtype=torch.float64)
    y = torch.randn(16, 6, generator=gen(2), dtype=torch.float64)
    return x, y


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    x, y = _data()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


class _SubclassedSGD(torch.optim.SGD):
    """An optimiser whose step calls super().step(): torch then fires step hooks twice."""

    def step(self, closure: object = None) -> object:  # type: ignore[override]
        return super().step(closure)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sgd", "sgd_momentum_decay", "adam", "subclass"])
def test_steps_act_on_the_effective_weights_as_plain_training(kind: str) -> None:
    def make(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if kind == "sgd":
            return torch.optim.SGD(params, lr=0.05)
        if kind == "subclass":
            return _SubclassedSGD(params, lr=0.05)
        if kind == "sgd_momentum_decay":
            return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-2)
        return torch.optim.Adam(params, lr=0.01)

    digital = _scaled_linear()
    analog = _ideal_analog(_scaled_linear())
    optimizer = make(list(analog.parameters()))
    handles = weight_space_updates(optimizer, analog)
    _train(analog, optimizer, steps=5)
    _train(digital, make(list(digital.parameters())), steps=5)
    assert_close(analog.digital_weight(), digital.weight, rtol=1e-10, atol=1e-12)
    for handle in handles:
        handle.remove()

    # Without the hooks SGD's step in W is scaled by s^2 per column: far from plain training.
    if kind == "sgd":
        plain = _ideal_analog(_scaled_linear())
        _train(plain, make(list(plain.parameters())), steps=5)
        step_plain = (plain.digital_weight() - _scaled_linear().weight).detach()
        step_digital = (digital.weight - _scaled_linear().weight).detach()
        assert not torch.allclose(step_plain, step_digital, rtol=0.1)


def test_sgd_step_in_weight_space_does_not_depend_on_the_column_scale() -> None:
    """First step of SGD: dW = -lr dL/dW before and after a remap that changes s."""
    x, y = _data()
    steps = []
    for remap_scale in (1.0, 7.0):
        analog = _ideal_analog(_scaled_linear())
        with torch.no_grad():  # the same W with another split between W~ and s
            analog.weight.div_(remap_scale)
            analog.mapping_scales.mul_(remap_scale)
        before = analog.digital_weight().detach().clone()
        optimizer = torch.optim.SGD(analog.parameters(), lr=0.1)
        weight_space_updates(optimizer, analog)
        optimizer.zero_grad()
        nn.functional.mse_loss(analog(x), y).backward()
        optimizer.step()
        steps.append(analog.digital_weight().detach() - before)
    assert_close(steps[0], steps[1], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])
def test_fit_steps_in_weight_space(grad_clip: float) -> None:
    """`fit` registers the weight-space hooks; its gradient-norm clip acts on dL/dW."""
    digital = _scaled_linear()
    analog = _ideal_analog(_scaled_linear())
    x, y = _data()
    loader = [(x, y)] * 4
    for model in (digital, analog):
        fit(model, loader, epochs=1, lr=0.05, seed=0, optimizer="sgd", progress=False,
            loss_fn=nn.functional.mse_loss, grad_clip=grad_clip)  # fmt: skip
    assert_close(analog.digital_weight(), digital.weight, rtol=1e-10, atol=1e-12)


def _noisy_config() -> analoglib.PCMConfig:
    config = ideal()
    config.modifier = WeightModifierParameters(type="add_normal", std_dev=0.1)
    return config


def test_weight_noise_is_drawn_once_per_optimiser_step() -> None:
    layer = AnalogLinear.from_digital(_scaled_linear(), _noisy_config())
    layer.train()
    x, _ = _data()
    first, again = layer(x), layer(x)
    assert torch.equal(first, again)  # no step between the calls: the same draw
    (first + again).sum().backward()  # both calls backpropagate through the kept noise
    weight = layer.weight.detach().clone()
    torch.optim.SGD(layer.parameters(), lr=0.0).step()  # a step that leaves the weights as they are
    assert torch.equal(layer.weight, weight)
    assert not torch.allclose(layer(x), first)  # ... and a new draw after it


def test_recurrent_layer_draws_weight_noise_once_per_sequence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import analoglib.nn.base as base

    calls = []
    original = base.modify_weights

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "modify_weights", counting)
    lstm = analoglib.convert_to_analog(nn.LSTM(5, 7), _noisy_config())
    lstm.train()
    layers = list(analoglib.nn.analog_layers(lstm))
    lstm(torch.randn(12, 3, 5, generator=gen(3)))  # 12 time steps
    assert len(calls) == len(layers)


def test_remap_folds_the_output_scales_into_the_mapping() -> None:
    layer = AnalogLinear.from_digital(_scaled_linear(), standard_hwa_2023())
    with torch.no_grad():
        layer.out_scales.copy_(torch.rand(layer.out_scales.shape, generator=gen(4)) + 0.5)
        layer.weight.mul_(0.7)  # columns below their abs-max 1: the remap has work to do
    before = layer.digital_weight().detach().clone()
    remap_weights(layer)
    assert torch.all(layer.out_scales == 1.0)
    assert_close(layer.digital_weight(), before, rtol=1e-12, atol=0)
    column_max = layer.reference_tiles().abs().amax(dim=2)
    assert_close(column_max, torch.ones_like(column_max), rtol=1e-12, atol=0)
