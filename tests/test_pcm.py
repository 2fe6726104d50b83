"""PCM statistical model against ``docs/model.md#pcm``.

Expected values are computed independently here (float64 NumPy / ``math``) from the reference
formulas, or read off the reference tables of section 5.5. Statistical tests use a fixed
generator and tolerances of 6 standard errors of the estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, gen

from analoglib.config import PCMNoiseParameters
from analoglib.noise.pcm import PCMNoiseModel

G_MAX = 25.0
T0 = 20.0
T_READ = 250e-9
C0, C1, C2 = 0.26348, 1.9650, -1.1731
N_SIGMA = 6.0  # tolerance in standard errors

# ``docs/model.md#pcm-reference-values``, first table: g_T/g_max -> (sigma_prog uS, mu_nu, sigma_nu,
# Q_s).
TABLE_G = {
    0.0: (0.26348, 0.1000, 0.0450, 0.2000),
    0.1: (0.44825, 0.0601, 0.0229, 0.0393),
    0.25: (0.68141, 0.0490, 0.0114, 0.0217),
    0.5: (0.95271, 0.0490, 0.0080, 0.0138),
    0.75: (1.07736, 0.0490, 0.0080, 0.0106),
    1.0: (1.05538, 0.0490, 0.0080, 0.0088),
}
# Second table: t_inf (s) -> (sqrt(ln((t+t_r)/2t_r)), drift factor nu=0.049, nu=0.1).
TABLE_T = {
    0.0: (4.1838, 1.0000, 1.0000),
    1.0: (4.1897, 0.9976, 0.9951),
    60.0: (4.3463, 0.9343, 0.8706),
    3600.0: (4.7648, 0.7751, 0.5946),
    86400.0: (5.0868, 0.6635, 0.4330),
    30 * 86400.0: (5.4108, 0.5617, 0.3081),
    3.1536e7: (5.6370, 0.4969, 0.2400),
}


# -- independent reference formulas (float64) ---------------------------------------------------


def ref_sigma_prog(g_rel: np.ndarray) -> np.ndarray:
    return C0 + C1 * g_rel + C2 * g_rel**2


def ref_nu_mean_std(g_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_g = np.log(np.maximum(np.abs(g_rel), 1e-7))
    mu = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
    sigma = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
    return mu, sigma


def ref_qs(g_rel: np.ndarray) -> np.ndarray:
    return np.minimum(0.0088 / np.maximum(np.abs(g_rel) ** 0.65, 1e-3), 0.2)


def ref_time_factor(t_inf: float) -> float:
    t = t_inf + T0
    return math.sqrt(math.log((t + T_READ) / (2 * T_READ)))


def ref_drift_factor(t_inf: float, nu: np.ndarray) -> np.ndarray:
    return ((t_inf + T0) / T0) ** (-nu)


def big_phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def folded_normal_mean_std(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of |X|, X ~ N(mu, sigma^2) (exact; nu = |mu + sigma xi|)."""
    mean = sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2)) + mu * (
        1 - 2 * big_phi(-mu / sigma)
    )
    var = mu**2 + sigma**2 - mean**2
    return mean, math.sqrt(var)


def std_standard_error(samples: torch.Tensor) -> float:
    """Standard error of the sample std: std * sqrt((kurtosis - 1) / (4 n)).

    For a normal variable (kurtosis 3) this is std / sqrt(2 n); the kurtosis is estimated from
    the sample, which covers the non-normal rectified and folded distributions.
    """
    x = samples.double()
    centred = x - x.mean()
    var = centred.pow(2).mean()
    kurtosis = (centred.pow(4).mean() / var**2).item()
    return math.sqrt(var.item()) * math.sqrt((kurtosis - 1) / (4 * x.numel()))


def model(**kwargs: float) -> PCMNoiseModel:
    return PCMNoiseModel(PCMNoiseParameters(**kwargs))


# -- 5.1 differential pair ----------------------------------------------------------------------


@pytest.mark.parametrize("g_min", [0.0, 2.0])
@pytest.mark.parametrize("wmax", [1.0, 0.5])
def test_weight_to_conductance(g_min: float, wmax: float) -> None:
    w = torch.linspace(-wmax, wmax, 101, dtype=torch.float64)
    g_target, scale = model(g_min_uS=g_min).weight_to_conductance(
        w, torch.tensor(wmax, dtype=torch.float64)
    )
    assert g_target.shape == (2, *w.shape)
    g_plus, g_minus = g_target
    span = G_MAX - g_min
    w_np = w.numpy()
    np.testing.assert_allclose(scale.numpy(), span / wmax, rtol=1e-14)
    np.testing.assert_allclose(
        g_plus.numpy(), np.clip(w_np * span / wmax, 0, span) + g_min, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        g_minus.numpy(), np.clip(-w_np * span / wmax, 0, span) + g_min, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(((g_plus - g_minus) / scale).numpy(), w_np, atol=1e-12)
    # The abs-max weight maps to g_max.
    assert g_plus.max().item() == pytest.approx(G_MAX)


# -- 5.2 programming noise ----------------------------------------------------------------------


def test_prog_noise_std_polynomial() -> None:
    g_rel = np.linspace(0.0, 1.0, 41)
    got = PCMNoiseModel().prog_noise_std(torch.tensor(g_rel * G_MAX, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), ref_sigma_prog(g_rel), rtol=1e-12)


@pytest.mark.parametrize("g_rel", sorted(TABLE_G))
def test_prog_noise_std_table(g_rel: float) -> None:
    sigma = PCMNoiseModel().prog_noise_std(torch.tensor([g_rel * G_MAX], dtype=torch.float64))
    assert sigma.item() == pytest.approx(TABLE_G[g_rel][0], abs=6e-6)  # table has 5 decimals
    # Column "sigma_prog / 25 uS" in percent (2 decimals).
    assert 100 * sigma.item() / 25.0 == pytest.approx(
        {0.0: 1.05, 0.1: 1.79, 0.25: 2.73, 0.5: 3.81, 0.75: 4.31, 1.0: 4.22}[g_rel], abs=0.006
    )


def test_prog_noise_std_scales_with_g_max() -> None:
    # sigma_prog = poly(g_T/g_max) * g_max / 25 uS: at g_max = 50 uS and g_T = 25 uS.
    sigma = model(g_max_uS=50.0).prog_noise_std(torch.tensor([25.0], dtype=torch.float64))
    assert sigma.item() == pytest.approx(ref_sigma_prog(np.array(0.5)) * 2.0, rel=1e-12)


@pytest.mark.parametrize("g_rel", [0.25, 0.5, 0.75, 1.0])
def test_programming_noise_mean_and_std(g_rel: float) -> None:
    n = 400_000
    g_t = torch.full((n,), g_rel * G_MAX, dtype=torch.float64)
    g_prog = PCMNoiseModel().apply_programming_noise(g_t, gen(1))
    sigma = float(ref_sigma_prog(np.array(g_rel)))
    # g_T / sigma >= 9, so the max(0, .) clamp is irrelevant: g_prog ~ N(g_T, sigma^2).
    assert g_rel * G_MAX / sigma > 9
    mean = g_prog.mean().item()
    std = g_prog.std().item()
    # Standard error of the mean: sigma / sqrt(n); of the sample std: sigma / sqrt(2 n).
    assert abs(mean - g_rel * G_MAX) < N_SIGMA * sigma / math.sqrt(n)
    assert abs(std - sigma) < N_SIGMA * sigma / math.sqrt(2 * n)


def test_programming_noise_off_device_is_rectified_normal() -> None:
    """g_T = 0: g_prog = max(0, sigma xi) with sigma = c0 = 0.26348 uS.

    The rectified normal has mean sigma * phi(0) = sigma / sqrt(2 pi) = 0.105 uS (section 5.2),
    standard deviation sigma * sqrt(1/2 - 1/(2 pi)), and is exactly 0 with probability 1/2.
    """
    n = 400_000
    g_prog = PCMNoiseModel().apply_programming_noise(torch.zeros(n, dtype=torch.float64), gen(2))
    sigma = C0
    mean_ref = sigma / math.sqrt(2 * math.pi)
    std_ref = sigma * math.sqrt(0.5 - 1 / (2 * math.pi))
    assert mean_ref == pytest.approx(0.105, abs=5e-4)
    assert (g_prog >= 0).all()
    assert abs(g_prog.mean().item() - mean_ref) < N_SIGMA * std_ref / math.sqrt(n)
    assert abs(g_prog.std().item() - std_ref) < N_SIGMA * std_standard_error(g_prog)
    # Fraction at exactly zero: binomial SE sqrt(0.25 / n).
    zero_fraction = (g_prog == 0).double().mean().item()
    assert abs(zero_fraction - 0.5) < N_SIGMA * math.sqrt(0.25 / n)


def test_programming_noise_scale_knob() -> None:
    g_t = torch.linspace(1.0, 25.0, 1000, dtype=torch.float64)
    base = model().apply_programming_noise(g_t, gen(3)) - g_t
    doubled = model(prog_noise_scale=2.0).apply_programming_noise(g_t, gen(3)) - g_t
    unclamped = (base + g_t > 0) & (doubled + g_t > 0)
    assert unclamped.sum() > 990  # only a few low targets hit the max(0, .) clamp
    assert_close(doubled[unclamped], 2 * base[unclamped], rtol=1e-12, atol=1e-12)
    off = model(prog_noise_scale=0.0).apply_programming_noise(g_t, gen(3))
    assert torch.equal(off, g_t)


# -- 5.3 drift exponents ------------------------------------------------------------------------


def test_drift_nu_mean_std_formula() -> None:
    g_rel = np.concatenate([[0.0, 1e-9, 1e-7, 1e-4], np.geomspace(1e-3, 1.0, 60)])
    mean, std = PCMNoiseModel().drift_nu_mean_std(torch.tensor(g_rel * G_MAX, dtype=torch.float64))
    mu_ref, sigma_ref = ref_nu_mean_std(g_rel)
    np.testing.assert_allclose(mean.numpy(), mu_ref, rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), sigma_ref, rtol=1e-12)


@pytest.mark.parametrize("g_rel", sorted(TABLE_G))
def test_drift_nu_mean_std_table(g_rel: float) -> None:
    mean, std = PCMNoiseModel().drift_nu_mean_std(
        torch.tensor([g_rel * G_MAX], dtype=torch.float64)
    )
    _, mu_table, sigma_table, _ = TABLE_G[g_rel]
    assert mean.item() == pytest.approx(mu_table, abs=6e-5)  # 4 decimals in the table
    assert std.item() == pytest.approx(sigma_table, abs=6e-5)


@pytest.mark.parametrize(
    ("g_rel", "where"),
    [
        (1.0, "mu and sigma on their lower clips (0.049, 0.008); mu/sigma = 6"),
        (0.25, "mu on its lower clip, sigma unclipped"),
        (0.1, "both unclipped"),
        (0.05, "both unclipped"),
        (0.01, "mu unclipped, sigma on its upper clip 0.045"),
        (0.001, "mu and sigma on their upper clips (0.1, 0.045)"),
        (0.0, "g_rel floor 1e-7: both on their upper clips"),
    ],
)
def test_drift_exponent_statistics(g_rel: float, where: str) -> None:
    n = 400_000
    nu = PCMNoiseModel().generate_drift_coefficients(
        torch.full((n,), g_rel * G_MAX, dtype=torch.float64), gen(4)
    )
    mu, sigma = (float(v) for v in ref_nu_mean_std(np.array(g_rel)))
    # nu = |mu + sigma xi| is a folded normal; its exact moments cover the abs at every point
    # (where mu/sigma > 4 they equal mu and sigma to < 1e-4 relative).
    mean_ref, std_ref = folded_normal_mean_std(mu, sigma)
    assert (nu >= 0).all()
    # SE of the mean: std/sqrt(n); of the sample std: see std_standard_error.
    assert abs(nu.mean().item() - mean_ref) < N_SIGMA * std_ref / math.sqrt(n), where
    assert abs(nu.std().item() - std_ref) < N_SIGMA * std_standard_error(nu), where


def test_drift_exponent_abs_irrelevant_where_mu_over_sigma_is_large() -> None:
    # At g_T = g_max, mu/sigma = 0.049/0.008 = 6.1: nu ~ N(0.049, 0.008^2) without folding.
    mean_ref, std_ref = folded_normal_mean_std(0.049, 0.008)
    assert mean_ref == pytest.approx(0.049, rel=1e-8)
    assert std_ref == pytest.approx(0.008, rel=1e-6)


def test_drift_scale_multiplies_nu() -> None:
    g_t = torch.linspace(0.0, 25.0, 2001, dtype=torch.float64)
    nu1 = model().generate_drift_coefficients(g_t, gen(5))
    nu2 = model(drift_scale=2.5).generate_drift_coefficients(g_t, gen(5))
    nu0 = model(drift_scale=0.0).generate_drift_coefficients(g_t, gen(5))
    assert_close(nu2, 2.5 * nu1, rtol=1e-12, atol=0)
    assert torch.equal(nu0, torch.zeros_like(nu0))


# -- 5.3 power law of drift ---------------------------------------------------------------------


@pytest.mark.parametrize("t_inf", sorted(TABLE_T))
def test_drift_power_law_without_read_noise(t_inf: float) -> None:
    rng = np.random.default_rng(6)
    g = rng.uniform(0.0, G_MAX, 5000)
    nu = rng.uniform(0.0, 0.2, 5000)
    out = model(read_noise_scale=0.0).apply_drift_noise(
        torch.tensor(g), torch.tensor(nu), t_inf, gen(6)
    )
    np.testing.assert_allclose(out.numpy(), g * ref_drift_factor(t_inf, nu), rtol=1e-12)
    if t_inf == 0.0:  # no drift at all right after programming
        assert np.array_equal(out.numpy(), g)


@pytest.mark.parametrize("t_inf", sorted(TABLE_T))
def test_drift_factor_table(t_inf: float) -> None:
    g = torch.ones(2, dtype=torch.float64)
    nu = torch.tensor([0.049, 0.1], dtype=torch.float64)
    out = model(read_noise_scale=0.0).apply_drift_noise(g, nu, t_inf, gen(0))
    _, f049, f01 = TABLE_T[t_inf]
    assert out[0].item() == pytest.approx(f049, abs=6e-5)  # 4 decimals in the table
    assert out[1].item() == pytest.approx(f01, abs=6e-5)


def test_drift_accepts_float16_exponents() -> None:
    # The layers store nu in float16; the result keeps the conductance dtype.
    g = torch.full((4,), 20.0, dtype=torch.float32)
    nu = torch.tensor([0.0, 0.049, 0.1, 0.05], dtype=torch.float16)
    out = model(read_noise_scale=0.0).apply_drift_noise(g, nu, 86400.0, gen(0))
    assert out.dtype == torch.float32
    expected = 20.0 * ref_drift_factor(86400.0, nu.double().numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("t_inf", [-1.0, float("nan"), float("inf")])
def test_apply_drift_noise_refuses_bad_time(t_inf: float) -> None:
    g = torch.ones(3)
    with pytest.raises(ValueError, match="t_inference_s"):
        PCMNoiseModel().apply_drift_noise(g, torch.zeros(3), t_inf, gen(0))


# -- 5.4 accumulated 1/f read noise -------------------------------------------------------------


def test_read_noise_qs_formula() -> None:
    g_rel = np.concatenate([[0.0, 1e-6, 1e-4], np.geomspace(1e-3, 1.0, 50), [1.2]])
    got = PCMNoiseModel().read_noise_qs(torch.tensor(g_rel * G_MAX, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), ref_qs(g_rel), rtol=1e-12)


@pytest.mark.parametrize("g_rel", sorted(TABLE_G))
def test_read_noise_qs_table(g_rel: float) -> None:
    qs = PCMNoiseModel().read_noise_qs(torch.tensor([g_rel * G_MAX], dtype=torch.float64))
    assert qs.item() == pytest.approx(TABLE_G[g_rel][3], abs=6e-5)


@pytest.mark.parametrize("t_inf", sorted(TABLE_T))
def test_read_noise_time_factor(t_inf: float) -> None:
    factor = PCMNoiseModel().read_noise_time_factor(t_inf)
    assert factor == pytest.approx(ref_time_factor(t_inf), rel=1e-12)
    assert factor == pytest.approx(TABLE_T[t_inf][0], abs=6e-5)


def test_drift_time_log() -> None:
    noise = PCMNoiseModel()
    assert noise.drift_time_log(0.0) == 0.0
    assert noise.drift_time_log(3600.0) == pytest.approx(math.log(3620.0 / 20.0), rel=1e-14)


@pytest.mark.parametrize("t_inf", [0.0, 60.0, 86400.0, 3.1536e7])
@pytest.mark.parametrize("g_rel", [0.2, 0.5, 1.0])
def test_read_noise_grows_with_time(t_inf: float, g_rel: float) -> None:
    """Nu = 0: relative std of g(t) around g_prog = Q_s(g_prog) * sqrt(ln((t+t_r)/(2 t_r)))."""
    n = 100_000
    g_prog = torch.full((n,), g_rel * G_MAX, dtype=torch.float64)
    g = model(drift_scale=0.0).apply_drift_noise(
        g_prog, torch.zeros(n, dtype=torch.float64), t_inf, gen(7)
    )
    rel = (g / g_prog - 1).numpy()
    expected = float(ref_qs(np.array(g_rel))) * ref_time_factor(t_inf)
    assert expected < 0.15  # g_prog is > 6 sigma above 0: the max(0, .) clamp is irrelevant
    # SE of the sample std: sigma/sqrt(2n) (0.22 % relative); of the mean: sigma/sqrt(n).
    assert abs(rel.std(ddof=1) - expected) < N_SIGMA * expected / math.sqrt(2 * n)
    assert abs(rel.mean()) < N_SIGMA * expected / math.sqrt(n)


def test_read_noise_uses_programmed_conductance_for_qs() -> None:
    """With drift, the read noise is relative to |g_drift| but Q_s comes from g_prog."""
    n = 100_000
    t_inf, nu = 86400.0, 0.1
    g_prog = torch.full((n,), 0.5 * G_MAX, dtype=torch.float64)
    g = PCMNoiseModel().apply_drift_noise(
        g_prog, torch.full((n,), nu, dtype=torch.float64), t_inf, gen(8)
    )
    g_drift = 0.5 * G_MAX * float(ref_drift_factor(t_inf, np.array(nu)))
    rel = (g / g_drift - 1).numpy()
    expected = float(ref_qs(np.array(0.5))) * ref_time_factor(t_inf)
    wrong = float(ref_qs(np.array(g_drift / G_MAX))) * ref_time_factor(t_inf)
    assert wrong > 1.5 * expected  # the two readings are far apart
    assert abs(rel.std(ddof=1) - expected) < N_SIGMA * expected / math.sqrt(2 * n)
    assert abs(rel.mean()) < N_SIGMA * expected / math.sqrt(n)


def test_read_noise_scale_knob_and_clamp() -> None:
    g_prog = torch.linspace(0.0, 25.0, 1001, dtype=torch.float64)
    nu = torch.zeros_like(g_prog)
    base = model().apply_drift_noise(g_prog, nu, 3600.0, gen(9))
    # Off device at g_prog = 0 stays 0; no conductance goes negative.
    assert base[0].item() == 0.0
    assert (base >= 0).all()
    off = model(read_noise_scale=0.0).apply_drift_noise(g_prog, nu, 3600.0, gen(9))
    assert torch.equal(off, g_prog)
    # Away from the clamp the deviation scales linearly with the knob.
    half = model(read_noise_scale=0.5).apply_drift_noise(g_prog, nu, 3600.0, gen(9))
    big = g_prog > 5.0
    assert_close((half - g_prog)[big], 0.5 * (base - g_prog)[big], rtol=1e-10, atol=1e-12)


# -- apply_noise --------------------------------------------------------------------------------


def test_apply_noise_without_noise_returns_weights() -> None:
    w = torch.rand(16, 32, generator=gen(10), dtype=torch.float64) * 2 - 1
    quiet = model(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0)
    assert_close(quiet.apply_noise(w, 3600.0, gen(0)), w, rtol=0, atol=1e-12)


def test_apply_noise_drift_only_scales_weights() -> None:
    # Only drift with nu at g_T: the lower clips hold for |w| >= 0.33, so nu = |0.049 + 0.008 xi|;
    # check the mean shrink of the large weights against the drift factor of nu = 0.049.
    w = torch.full((200, 200), 0.9, dtype=torch.float64)
    w[0, 0] = 1.0
    drifted = model(prog_noise_scale=0.0, read_noise_scale=0.0).apply_noise(w, 86400.0, gen(11))
    ratio = (drifted / w).numpy().ravel()
    log_t = math.log((86400.0 + T0) / T0)
    # E[exp(-nu L)] for nu ~ N(mu, s^2) is exp(-mu L + s^2 L^2 / 2).
    expected = math.exp(-0.049 * log_t + 0.5 * (0.008 * log_t) ** 2)
    se = ratio.std() / math.sqrt(ratio.size)
    assert abs(ratio.mean() - expected) < N_SIGMA * se
