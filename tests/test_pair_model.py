"""The conductance pair that drifts: aihwkit's net-weight re-split against two devices.

``docs/model.md#pair-model``: with ``pair_model="net_weight"`` (the default) the programmed pair
is turned back into its net weight, rescaled so that the tile's largest programmed |weight| maps
to ``g_max``, and put on one device per sign; drift and 1/f read noise act on that pair. The
expected read-noise spread is computed here from the reference formulas (float64 NumPy) for the
re-derived pair; statistical tolerances are 6 standard errors of the estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, gen

from analoglib.config import PCMNoiseParameters
from analoglib.nn.linear import AnalogLinear
from analoglib.presets import standard_hwa_2023

G_MAX = 25.0
T0 = 20.0
T_READ = 250e-9
N_SIGMA = 6.0


def ref_qs(g_rel: np.ndarray) -> np.ndarray:
    return np.minimum(0.0088 / np.maximum(np.abs(g_rel) ** 0.65, 1e-3), 0.2)


def ref_time_factor(t_inf: float) -> float:
    t = t_inf + T0
    return math.sqrt(math.log((t + T_READ) / (2 * T_READ)))


def _layer(pair_model: str, drift: bool = False, read_noise: bool = True) -> AnalogLinear:
    """A 512 x 512 layer (one tile) with weights spread evenly over [-1, 1], float64."""
    config = standard_hwa_2023()
    config.noise_model.pair_model = pair_model
    config.noise_model.drift_scale = 1.0 if drift else 0.0
    config.noise_model.read_noise_scale = 1.0 if read_noise else 0.0
    config.drift_compensation.type = "none"
    linear = torch.nn.Linear(512, 512, bias=False).double()
    with torch.no_grad():
        linear.weight.copy_(torch.rand(512, 512, generator=gen(3), dtype=torch.float64) * 2 - 1)
    return AnalogLinear.from_digital(linear, config)


def test_net_weight_pair_puts_the_weight_on_one_device() -> None:
    layer = _layer("net_weight")
    layer.program(gen(0))
    assert layer._g_prog is not None and layer._g_scale is not None and layer._weight_t is not None
    g_plus, g_minus = layer._g_prog
    # One device per pair carries the weight, the other is at g_min = 0.
    assert torch.all((g_plus == 0) | (g_minus == 0))
    # The tile's largest programmed |weight| maps to g_max (programming noise pushed it above the
    # target abs-max, so the conductance per weight unit is below the target mapping's).
    assert_close(layer._g_prog.amax(), torch.tensor(G_MAX), rtol=1e-12, atol=0)
    target_scale = G_MAX / layer.reference_tiles().abs().amax()
    w_prog_max = layer._weight_t.abs().amax()
    assert w_prog_max > 1.0
    assert_close(layer._g_scale.amax(), target_scale / w_prog_max, rtol=1e-12, atol=0)


def test_net_weight_pair_leaves_the_programmed_weight_unchanged() -> None:
    """Same draws, both pair models: identical weights right after programming."""
    net, two = _layer("net_weight"), _layer("two_devices")
    net.program(gen(1))
    two.program(gen(1))
    assert net._weight_t is not None and two._weight_t is not None
    assert_close(net._weight_t, two._weight_t, rtol=0, atol=1e-12)
    # The two-device model keeps the programmed off devices (rectified normal, half nonzero).
    assert two._g_prog is not None
    off = torch.minimum(two._g_prog[0], two._g_prog[1])
    assert 0.4 < (off > 0).double().mean().item() < 0.6


def _read_noise_z_std(pair_model: str, t_inf: float) -> list[tuple[float, float, int]]:
    """Read-noise spread per bin of the re-derived conductance g'.

    Returns, per bin, the std of the read-noise residual in units of the formula
    g' Q_s(g') f(t) of the re-derived pair, its standard error, and the count.
    """
    layer = _layer(pair_model)
    layer.program(gen(4))
    assert layer._weight_t is not None
    w_prog = layer._weight_t.clone()  # (1, 512, 512)
    layer.drift(t_inf, gen(5))
    residual = (layer._weight_t - w_prog).numpy().ravel()
    # The pair as aihwkit re-derives it, from the programmed weight (whatever the layer keeps).
    w = w_prog.numpy().ravel()
    scale = G_MAX / np.abs(w).max()
    g_carry = np.abs(w) * scale
    sigma_w = g_carry * ref_qs(g_carry / G_MAX) * ref_time_factor(t_inf) / scale
    rows = []
    # Bins where Q_s f < 0.2: the max(0, .) clamp of the conductance never acts.
    edges = np.linspace(0.1, 1.0, 6) * G_MAX
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (g_carry >= lo) & (g_carry < hi)
        z = residual[inside] / sigma_w[inside]
        n = int(inside.sum())
        rows.append((float(z.std(ddof=1)), 1.0 / math.sqrt(2 * n), n))
    return rows


@pytest.mark.parametrize("t_inf", [3600.0, 3.1536e7])
def test_read_noise_std_per_bin_matches_the_re_derived_pair(t_inf: float) -> None:
    for std, se, n in _read_noise_z_std("net_weight", t_inf):
        assert n > 10_000
        assert abs(std - 1.0) < N_SIGMA * se, (std, se)


def test_two_device_read_noise_differs_from_the_re_derived_pair() -> None:
    """The formula above tells the two models apart.

    The two-device read noise is lower in the upper bins (higher conductance per weight,
    smaller Q_s), by over twice the tolerance.
    """
    stds = _read_noise_z_std("two_devices", 3600.0)
    for std, se, _ in stds[2:]:
        assert std < 1.0 - 2 * N_SIGMA * se, std


def test_drift_acts_on_the_device_that_carries_the_net_weight() -> None:
    """Read noise off: w(t) = w_prog (t / t0)^-nu with nu of the carrying device's target."""
    layer = _layer("net_weight", drift=True, read_noise=False)
    layer.program(gen(6))
    assert layer._weight_t is not None and layer._nu is not None
    w_prog = layer._weight_t.clone()
    t_inf = 86400.0
    layer.drift(t_inf, gen(7))
    nu = torch.where(w_prog >= 0, layer._nu[0], layer._nu[1]).double()
    expected = w_prog * ((t_inf + T0) / T0) ** (-nu)
    assert_close(layer._weight_t, expected, rtol=1e-12, atol=1e-15)


def test_bad_pair_model_raises() -> None:
    with pytest.raises(ValueError, match="pair_model = 'one_device'"):
        PCMNoiseParameters(pair_model="one_device")
