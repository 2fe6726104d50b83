"""Stuck (defective) PCM devices: ``noise_model.stuck_fraction`` and ``stuck_kind``.

Reference: ``docs/model.md#hwa-noise`` (PCM_NOISE step 2: stuck at reset -> 0, at g_max, at a
uniform random conductance) and 13.1 (stuck-at tolerance of the sensitivity study). Statistical
checks use fixed generators and tolerances of 6 standard errors of the estimate (binomial for
fractions, sigma / sqrt(n) for means), so a false failure has probability below 1e-8.
"""

from __future__ import annotations

import math

import pytest
import torch

from analoglib.config import PCMNoiseParameters
from analoglib.nn.linear import AnalogLinear
from analoglib.noise.pcm import PCMNoiseModel
from analoglib.presets import standard_hwa_2023
from analoglib.utils import make_generator

G_MAX = 25.0
N_SIGMA = 6.0
KINDS = ("reset", "g_max", "random")


def _model(fraction: float, kind: str = "reset", **kwargs: float) -> PCMNoiseModel:
    return PCMNoiseModel(PCMNoiseParameters(stuck_fraction=fraction, stuck_kind=kind, **kwargs))


def _targets(n: int, seed: int = 1) -> torch.Tensor:
    """Target conductances uniform in [0, g_max] (uS)."""
    return torch.rand(n, generator=make_generator(seed)) * G_MAX


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fraction", [0.003, 0.05, 0.5])
def test_stuck_fraction_within_binomial_tolerance(kind: str, fraction: float) -> None:
    n = 400_000
    g_target = _targets(n)
    model = _model(fraction, kind)
    _, _, stuck = model.apply_stuck_devices(g_target.clone(), g_target, make_generator(0))
    observed = stuck.double().mean().item()
    sigma = math.sqrt(fraction * (1 - fraction) / n)
    assert abs(observed - fraction) <= N_SIGMA * sigma


@pytest.mark.parametrize("kind", KINDS)
def test_stuck_values_replace_programmed_and_drift_state(kind: str) -> None:
    n = 200_000
    g_target = _targets(n)
    g_prog = g_target + 0.5  # any programmed values: healthy devices must keep them exactly
    model = _model(0.1, kind)
    g_out, g_state, stuck = model.apply_stuck_devices(g_prog.clone(), g_target, make_generator(3))
    assert torch.equal(g_out[~stuck], g_prog[~stuck])
    assert torch.equal(g_state[~stuck], g_target[~stuck])
    # A stuck device ignores programming: no programming noise, and its drift exponent is drawn
    # from the stuck conductance (the state equals the programmed value).
    assert torch.equal(g_out[stuck], g_state[stuck])
    values = g_out[stuck].double()
    if kind == "reset":
        assert torch.all(values == 0.0)
    elif kind == "g_max":
        assert torch.all(values == G_MAX)
    else:  # uniform on [0, g_max]: mean g/2 and variance g^2/12
        m = values.numel()
        assert values.min() >= 0.0 and values.max() <= G_MAX
        std = G_MAX / math.sqrt(12)
        assert abs(values.mean().item() - G_MAX / 2) <= N_SIGMA * std / math.sqrt(m)
        # The variance estimate of a uniform has std sqrt((mu4 - sigma^4) / m), mu4 = g^4 / 80.
        var_se = math.sqrt((G_MAX**4 / 80 - std**4) / m)
        assert abs(values.var().item() - std**2) <= N_SIGMA * var_se


def test_zero_fraction_draws_nothing() -> None:
    g = _targets(1000)
    generator = make_generator(5)
    before = generator.get_state().clone()
    g_out, g_state, stuck = _model(0.0).apply_stuck_devices(g, g, generator)
    assert torch.equal(generator.get_state(), before)
    assert g_out is g and g_state is g and not stuck.any()


def test_full_fraction_sticks_every_device() -> None:
    g = _targets(1000)
    g_out, _, stuck = _model(1.0, "g_max").apply_stuck_devices(g.clone(), g, make_generator(0))
    assert stuck.all() and torch.all(g_out == G_MAX)


@pytest.mark.parametrize("kind", KINDS)
def test_larger_fraction_gives_nested_stuck_sets(kind: str) -> None:
    # The draws do not depend on the fraction, so with one seed the stuck devices at a small
    # fraction stay stuck at a larger one (what makes sweeps over the fraction smooth).
    g = _targets(50_000)
    masks = [
        _model(f, kind).apply_stuck_devices(g.clone(), g, make_generator(9))[2]
        for f in (0.01, 0.05, 0.2)
    ]
    for small, large in zip(masks, masks[1:], strict=False):
        assert torch.all(large[small])
        assert large.sum() > small.sum()


@pytest.mark.parametrize(
    ("field", "value"),
    [("stuck_fraction", -0.1), ("stuck_fraction", 1.5), ("stuck_fraction", "x"),
     ("stuck_kind", "open")],
)  # fmt: skip
def test_bad_stuck_settings_raise(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PCMNoiseParameters(**{field: value})  # type: ignore[arg-type]


def _programmed_layer(fraction: float, kind: str, seed: int = 0) -> AnalogLinear:
    config = standard_hwa_2023()
    config.noise_model.prog_noise_scale = 0.0  # healthy devices land exactly on their targets
    config.noise_model.stuck_fraction = fraction
    config.noise_model.stuck_kind = kind
    # The devices as programmed (the net-weight model re-splits them before drift).
    config.noise_model.pair_model = "two_devices"
    torch.manual_seed(0)
    linear = torch.nn.Linear(400, 300, bias=False)
    layer = AnalogLinear.from_digital(linear, config)
    layer.program(make_generator(seed))
    return layer


def test_layer_programming_places_stuck_devices() -> None:
    fraction = 0.02
    layer = _programmed_layer(fraction, "random")
    assert layer._g_prog is not None and layer._nu is not None
    tiles = layer.reference_tiles().detach()  # (tiles, out, rows)
    wmax = tiles.abs().amax(dim=(1, 2), keepdim=True)
    g_target, _ = layer.noise_model.weight_to_conductance(tiles, wmax)
    # Without programming noise only stuck devices leave their targets (random values differ
    # from the target with probability 1).
    moved = layer._g_prog != g_target  # (2, tiles, out, rows)
    n = moved.numel()
    assert abs(moved.double().mean().item() - fraction) <= N_SIGMA * math.sqrt(
        fraction * (1 - fraction) / n
    )


def test_stuck_devices_drift_from_their_stuck_conductance() -> None:
    # Stuck at g_max: the drift exponents of those devices follow the statistics at g = g_max
    # (mu 0.049, sigma 0.008), not those of their (mostly low) targets.
    layer = _programmed_layer(0.05, "g_max")
    assert layer._g_prog is not None and layer._nu is not None
    tiles = layer.reference_tiles().detach()
    wmax = tiles.abs().amax(dim=(1, 2), keepdim=True)
    g_target, _ = layer.noise_model.weight_to_conductance(tiles, wmax)
    stuck = (layer._g_prog == G_MAX) & (g_target < G_MAX)
    nu = layer._nu[stuck].double()
    m = nu.numel()
    assert m > 1000
    assert abs(nu.mean().item() - 0.049) <= N_SIGMA * 0.008 / math.sqrt(m)


def test_stuck_at_reset_stays_at_zero_after_drift() -> None:
    layer = _programmed_layer(0.05, "reset")
    assert layer._g_prog is not None
    tiles = layer.reference_tiles().detach()
    wmax = tiles.abs().amax(dim=(1, 2), keepdim=True)
    g_target, _ = layer.noise_model.weight_to_conductance(tiles, wmax)
    stuck = (layer._g_prog == 0) & (g_target > 0)
    assert stuck.sum() > 1000
    g = layer.noise_model.apply_drift_noise(
        layer._g_prog,
        layer._nu,
        3600.0,
        make_generator(1),  # type: ignore[arg-type]
    )
    assert torch.all(g[stuck] == 0)


def test_apply_noise_includes_stuck_devices() -> None:
    weight = torch.full((200, 200), 0.5)
    noisy = _model(0.1, "reset", prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0)
    out = noisy.apply_noise(weight, 0.0, make_generator(0))
    # G+ stuck at 0 gives weight 0 (G- targets 0 anyway); about 10 % of the weights.
    zero = (out == 0).double().mean().item()
    assert abs(zero - 0.1) <= N_SIGMA * math.sqrt(0.1 * 0.9 / out.numel())
