"""Programming, drift, drift compensation, evaluation, seeds, saving and the MVM-error metric.

``docs/model.md#pcm-reference-values`` (drift factors), 6 (programming and drift semantics), 7
(global
drift compensation) and 12 (MVM error).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_close
from torch import nn

import analoglib
from analoglib.metrics import mvm_error, normalized_accuracy, random_tile_mvm_error
from analoglib.nn import AnalogLinear, ConfigMismatchError
from analoglib.presets import ideal, standard_hwa_2023

DAY = 86400.0
YEAR = 3.1536e7


def drift_factor(nu: float, t_inf: float) -> float:
    """(t / t0)^-nu with t = t_inf + t0, t0 = 20 s (``docs/model.md#drift``)."""
    return ((t_inf + 20.0) / 20.0) ** -nu


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )


def net_input() -> torch.Tensor:
    return torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(100))


# -- drift compensation (section 7) -------------------------------------------------------------


@pytest.fixture(scope="module")
def gdc_results() -> dict[bool, pd.DataFrame]:
    """Mean |output| of a 256x256 AnalogLinear at 0 s and 1 day, with and without GDC."""
    config = standard_hwa_2023()
    config.pre_post.input_range.enable = False
    torch.manual_seed(0)
    linear = nn.Linear(256, 256, bias=False)  # a digital bias would not drift
    # Inputs in [-0.5, 0.5]: outputs have std ~2.7 in normalised units, far inside the ADC
    # range of +-10, so clipping does not distort the mean |output|.
    x = torch.rand(256, 256, generator=torch.Generator().manual_seed(1)).mul(2).sub(1).mul(0.5)

    def mean_abs(model: nn.Module) -> float:
        return model(x).abs().mean().item()

    results = {}
    for gdc in (True, False):
        model = analoglib.convert_to_analog(linear, config)
        results[gdc] = analoglib.evaluate(
            model,
            mean_abs,
            [0.0, DAY],
            n_reps=2,
            seed=5,
            drift_compensation=gdc,
            progress=False,
        )
    return results


def _ratios(table: pd.DataFrame) -> np.ndarray:
    pivot = table.pivot(index="rep", columns="t_inference_s", values="metric")
    return (pivot[DAY] / pivot[0.0]).to_numpy()


def test_without_gdc_output_shrinks_by_the_drift_factor(gdc_results: dict) -> None:
    ratios = _ratios(gdc_results[False])
    # The large weights, which carry the output, have nu ~ N(0.049, 0.008^2) (lower clips);
    # smaller ones drift faster but contribute little: the mean |output| shrinks by about the
    # drift factor of nu = 0.049 at 1 day (0.6635, table 5.5), well away from 1.
    expected = drift_factor(0.049, DAY)
    assert expected == pytest.approx(0.6635, abs=1e-4)
    np.testing.assert_array_less(np.abs(ratios - expected), 0.03)
    assert (ratios > drift_factor(0.1, DAY)).all()


def test_with_gdc_output_is_restored(gdc_results: dict) -> None:
    np.testing.assert_array_less(np.abs(_ratios(gdc_results[True]) - 1.0), 0.02)


def test_gdc_is_not_applied_in_train_mode() -> None:
    config = ideal()
    config.noise_model.drift_scale = 1.0
    config.drift_compensation.type = "global"
    torch.manual_seed(20)
    linear = nn.Linear(64, 16, bias=False)
    x = torch.randn(32, 64)
    model = analoglib.convert_to_analog(linear, config)
    analoglib.program(model, 0)
    analoglib.drift(model, DAY, 0)
    with torch.no_grad():
        reference = linear(x).abs().mean().item()
        # Drift only, compensated in eval: the mean |output| is restored (devices drift with
        # different nu, so not exactly); uncompensated it would be ~0.66x or less.
        assert model(x).abs().mean().item() / reference == pytest.approx(1.0, abs=0.05)
        model.train()  # reference weights, no alpha
        assert_close(model(x), linear(x), atol=1e-5, rtol=1e-5)


def test_gdc_alpha_equals_inverse_drift_factor_for_uniform_nu() -> None:
    """Drift only with every device at the lower clips is nearly uniform: alpha = readout ratio.

    All weights 0.8 (g_rel = 0.8 -> nu ~ |N(0.049, 0.008^2)|): the one-hot read-outs (no noise)
    shrink by E[(t/t0)^-nu], so alpha is its inverse up to the sampling error over 64x32 devices.
    """
    config = ideal()
    config.noise_model.drift_scale = 1.0
    config.drift_compensation.type = "global"
    linear = nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        linear.weight.fill_(0.8)
        linear.weight[:, 0] = 1.0
    model = analoglib.convert_to_analog(linear, config)
    analoglib.program(model, 1)
    analoglib.drift(model, DAY, 1)
    log_t = math.log((DAY + 20.0) / 20.0)
    expected = 1.0 / math.exp(-0.049 * log_t + 0.5 * (0.008 * log_t) ** 2)
    # Relative spread of (t/t0)^-nu is 0.008 * log_t = 6.7 %; SE over 2048 devices 0.15 %.
    assert model._gdc_alpha.mean().item() == pytest.approx(expected, rel=6 * 0.067 / 2048**0.5)


# -- MVM error (section 12) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tile_errors() -> dict[tuple[bool, float], float]:
    errors = {}
    for gdc in (True, False):
        config = standard_hwa_2023()
        config.drift_compensation.type = "global" if gdc else "none"
        for t in (1.0, DAY, YEAR):
            errors[(gdc, t)] = random_tile_mvm_error(config, t_inference_s=t)
    return errors


def test_standard_model_mvm_error_near_published(tile_errors: dict) -> None:
    # Published: ~13 % at 1 s (Le Gallo 2023), ~15 % (Rasch 2023), ~14 % at 0 s (Lammie 2024).
    assert 0.10 <= tile_errors[(True, 1.0)] <= 0.17
    # At 1 s there is hardly any drift, so GDC makes little difference.
    assert tile_errors[(False, 1.0)] == pytest.approx(tile_errors[(True, 1.0)], rel=0.05)


def test_mvm_error_grows_with_time_without_gdc(tile_errors: dict) -> None:
    e = [tile_errors[(False, t)] for t in (1.0, DAY, YEAR)]
    assert e[0] < e[1] < e[2]
    # Uncompensated, the output scale itself is lost: at 1 day the outputs are ~0.66x, an error
    # of at least ~1 - 0.66 on top of the noise.
    assert e[1] > 1 - drift_factor(0.049, DAY) - 0.05


def test_mvm_error_grows_with_time_with_gdc(tile_errors: dict) -> None:
    """With GDC the error still grows with time, though far less than without.

    GDC restores the mean scale but not the noise: read noise grows with time (section 5.4) and
    the drifted signal shrinks relative to the fixed output noise.
    """
    e = [tile_errors[(True, t)] for t in (1.0, DAY, YEAR)]
    assert e[0] < e[1] < e[2]
    for t in (DAY, YEAR):
        assert tile_errors[(True, t)] < 0.6 * tile_errors[(False, t)]


def test_mvm_error_of_ideal_config_is_zero() -> None:
    assert random_tile_mvm_error(ideal(), t_inference_s=DAY, size=64, n_vectors=50) < 1e-6


def test_mvm_error_metric() -> None:
    rng = np.random.default_rng(0)
    y_ideal = rng.normal(size=(10, 7))
    y = y_ideal + rng.normal(scale=0.1, size=(10, 7))
    ref = np.linalg.norm(y - y_ideal) / np.linalg.norm(y_ideal)
    assert mvm_error(torch.tensor(y), torch.tensor(y_ideal)) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        mvm_error(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="all zeros"):
        mvm_error(torch.ones(3), torch.zeros(3))


def test_normalized_accuracy() -> None:
    assert normalized_accuracy(0.1, 0.1, 0.9) == 1.0
    assert normalized_accuracy(0.9, 0.1, 0.9) == 0.0
    assert normalized_accuracy(0.14, 0.1, 0.9) == pytest.approx(1 - 0.04 / 0.8)
    with pytest.raises(ValueError):
        normalized_accuracy(0.2, 0.5, 0.5)


# -- seeds --------------------------------------------------------------------------------------


def _run(
    program_seed: int, drift_seed: int, forward_seed: int, convert_seed: int = 0
) -> torch.Tensor:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023(), seed=convert_seed)
    analoglib.program(model, program_seed)
    analoglib.drift(model, 3600.0, drift_seed)
    analoglib.set_forward_seed(model, forward_seed)
    with torch.no_grad():
        return model(net_input())


@pytest.fixture(scope="module")
def base_output() -> torch.Tensor:
    return _run(1, 2, 3)


def test_same_seeds_are_bit_identical(base_output: torch.Tensor) -> None:
    assert torch.equal(_run(1, 2, 3), base_output)


@pytest.mark.parametrize(
    "seeds", [(9, 2, 3), (1, 9, 3), (1, 2, 9)], ids=["program", "drift", "forward"]
)
def test_different_seed_changes_output(
    base_output: torch.Tensor, seeds: tuple[int, int, int]
) -> None:
    other = _run(*seeds)
    assert not torch.equal(other, base_output)
    # ... by a noise-sized amount, not by a broken model.
    assert mvm_error(other, base_output) < 0.5


def test_convert_seed_sets_forward_streams() -> None:
    x = net_input()
    outputs = []
    for seed in (5, 5, 6):
        model = analoglib.convert_to_analog(small_net(), standard_hwa_2023(), seed=seed).eval()
        with torch.no_grad():
            outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_forward_noise_stream_advances_and_restarts() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023()).eval()
    x = net_input()
    with torch.no_grad():
        analoglib.set_forward_seed(model, 4)
        a, b = model(x), model(x)
        analoglib.set_forward_seed(model, 4)
        c = model(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)


def test_drift_never_reprograms() -> None:
    """Drifting keeps the programming realisation; programming again draws a new one.

    Programming noise only (read noise and drift off), so drift must leave outputs unchanged.
    """
    config = ideal()
    config.noise_model.prog_noise_scale = 1.0
    model = analoglib.convert_to_analog(small_net(), config)
    x = net_input()
    analoglib.program(model, 1)
    with torch.no_grad():
        y_programmed = model(x)
        analoglib.drift(model, 3600.0, 7)
        y_drifted = model(x)
        analoglib.drift(model, YEAR, 8)
        y_later = model(x)
        analoglib.program(model, 2)
        y_other = model(x)
        analoglib.program(model, 1)
        y_again = model(x)
    assert torch.equal(y_programmed, y_drifted)
    assert torch.equal(y_programmed, y_later)
    assert not torch.equal(y_programmed, y_other)
    assert torch.equal(y_programmed, y_again)


def test_aihwkit_aliases() -> None:
    a = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    b = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    analoglib.program(a, 3)
    analoglib.drift(a, DAY, 4)
    analoglib.program_analog_weights(b, 3)
    analoglib.drift_analog_weights(b, DAY, 4)
    for model in (a, b):
        analoglib.set_forward_seed(model, 0)
    with torch.no_grad():
        assert torch.equal(a(net_input()), b(net_input()))


# -- errors -------------------------------------------------------------------------------------


def test_drift_on_unprogrammed_model_raises() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    with pytest.raises(RuntimeError, match="program"):
        analoglib.drift(model, 3600.0, 0)
    layer = analoglib.analog_layers(model)[0]
    with pytest.raises(RuntimeError, match="not programmed"):
        layer.drift(3600.0, torch.Generator())


@pytest.mark.parametrize("t", [-1.0, -1e-9, float("nan"), float("inf"), "1h", None])
def test_bad_inference_time_raises(t: object) -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    analoglib.program(model, 0)
    with pytest.raises(ValueError, match="t_inference_s"):
        analoglib.drift(model, t, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_inference_s"):
        analoglib.evaluate(model, lambda m: 0.0, [0.0, t], n_reps=1, seed=0)  # type: ignore[list-item]


@pytest.mark.parametrize("seed", [1.5, "1", None, True])
def test_bad_seed_raises(seed: object) -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    with pytest.raises(ValueError, match="seed"):
        analoglib.program(model, seed)  # type: ignore[arg-type]


def test_model_without_analog_layers_raises() -> None:
    with pytest.raises(ValueError, match="no analog layers"):
        analoglib.program(nn.Sequential(nn.ReLU()), 0)


@pytest.mark.parametrize(("n_reps", "times"), [(0, [0.0]), (-1, [0.0]), (1, []), (1.0, [0.0])])
def test_evaluate_refuses_bad_arguments(n_reps: object, times: list[float]) -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    with pytest.raises(ValueError):
        analoglib.evaluate(model, lambda m: 0.0, times, n_reps=n_reps, seed=0)  # type: ignore[arg-type]


def test_changing_weights_after_programming_raises() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    analoglib.program(model, 0)
    with torch.no_grad():
        model[3].weight.mul_(1.01)
    with torch.no_grad(), pytest.raises(RuntimeError, match="changed after programming"):
        model(net_input())
    analoglib.program(model, 0)  # programming again is the remedy
    with torch.no_grad():
        assert torch.isfinite(model(net_input())).all()


def test_optimizer_step_after_programming_raises() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    analoglib.program(model, 0)
    model.train()
    model(net_input()).sum().backward()
    with torch.no_grad():  # what torch.optim.SGD.step does (in-place update of the parameters)
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-0.1)
    model.eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match="changed after programming"):
        model(net_input())


# -- evaluate -----------------------------------------------------------------------------------


def test_evaluate_table() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    x = net_input()
    times = [0.0, 3600.0, DAY]
    table = analoglib.evaluate(
        model, lambda m: m(x).abs().mean().item(), times, n_reps=3, seed=10, progress=False
    )
    assert isinstance(table, pd.DataFrame)
    assert len(table) == 3 * len(times)
    assert list(table.columns) == ["rep", "seed", "t_inference_s", "drift_compensation", "metric"]
    assert list(table["rep"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(table["seed"]) == [10, 10, 10, 11, 11, 11, 12, 12, 12]
    assert list(table["t_inference_s"]) == times * 3
    assert table["drift_compensation"].all()  # the standard preset has GDC
    assert table["metric"].nunique() == len(table)  # every repetition is a new programming
    assert not model.training


def test_evaluate_dict_metrics_and_reproducibility() -> None:
    x = net_input()

    def metrics(m: nn.Module) -> dict[str, float]:
        y = m(x)
        return {"mean": y.mean().item(), "max": y.max().item()}

    tables = [
        analoglib.evaluate(
            analoglib.convert_to_analog(small_net(), standard_hwa_2023()),
            metrics,
            [60.0],
            n_reps=2,
            seed=4,
            progress=False,
        )
        for _ in range(2)
    ]
    assert {"mean", "max"} <= set(tables[0].columns) and "metric" not in tables[0].columns
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_evaluate_accepts_numpy_times_and_seeds() -> None:
    x = net_input()

    def run(times: object, seed: object) -> pd.DataFrame:
        model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
        return analoglib.evaluate(
            model, lambda m: m(x).mean().item(), times, n_reps=2, seed=seed, progress=False
        )  # type: ignore[arg-type]

    reference = run([0.0, 3600.0], 3)
    for times, seed in (
        (np.array([0, 3600]), np.int64(3)),
        (np.array([0.0, 3600.0], dtype=np.float32), 3),
    ):
        table = run(times, seed)
        pd.testing.assert_frame_equal(table, reference, check_dtype=False)


def test_evaluate_override_restores_config() -> None:
    model = analoglib.convert_to_analog(small_net(), standard_hwa_2023())
    table = analoglib.evaluate(
        model, lambda m: 0.0, [0.0], n_reps=1, seed=0, drift_compensation=False, progress=False
    )
    assert not table["drift_compensation"].any()
    assert all(
        layer.config.drift_compensation.type == "global" for layer in analoglib.analog_layers(model)
    )


# -- save / load --------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_identical(tmp_path: Path) -> None:
    model = analoglib.convert_to_analog(small_net(0), standard_hwa_2023())
    analoglib.program(model, 3)
    analoglib.drift(model, DAY, 4)
    path = analoglib.save(model, tmp_path / "sub" / "model.pt")
    assert path.exists() and not (tmp_path / "sub" / "model.pt.tmp").exists()
    # A fresh model from other digital weights: everything must come from the file.
    fresh = analoglib.convert_to_analog(small_net(1), standard_hwa_2023())
    analoglib.load(fresh, path)
    fresh.eval()
    for m in (model, fresh):
        analoglib.set_forward_seed(m, 7)
    x = net_input()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    for a, b in zip(analoglib.analog_layers(model), analoglib.analog_layers(fresh), strict=True):
        assert b.is_programmed and b.t_inference_s == DAY
        assert torch.equal(a._weight_t, b._weight_t)


def test_load_under_other_config(tmp_path: Path) -> None:
    model = analoglib.convert_to_analog(small_net(0), standard_hwa_2023())
    analoglib.program(model, 3)
    path = analoglib.save(model, tmp_path / "model.pt")
    other = standard_hwa_2023()
    other.forward.out_noise = 0.06
    fresh = analoglib.convert_to_analog(small_net(1), other)
    with pytest.raises(ConfigMismatchError, match="out_noise"):
        analoglib.load(fresh, path)
    assert issubclass(ConfigMismatchError, ValueError)
    kept = analoglib.convert_to_analog(small_net(1), other)
    analoglib.load(kept, path, config="keep")
    for layer in analoglib.analog_layers(kept):
        assert layer.config.forward.out_noise == 0.06
        # The realisation was drawn (and its GDC baseline read) under another forward config.
        assert not layer.is_programmed
    with pytest.raises(ValueError, match="config"):
        analoglib.load(kept, path, config="replace")

    # A difference that programming does not depend on keeps the programmed state.
    training_only = standard_hwa_2023()
    training_only.clip.type = "none"
    same_programming = analoglib.convert_to_analog(small_net(1), training_only)
    analoglib.load(same_programming, path, config="keep")
    for a, b in zip(
        analoglib.analog_layers(model), analoglib.analog_layers(same_programming), strict=True
    ):
        assert b.is_programmed and torch.equal(a._weight_t, b._weight_t)


def test_ideal_model_loaded_from_a_programmed_checkpoint_is_exact_after_programming(
    tmp_path: Path,
) -> None:
    noisy = analoglib.convert_to_analog(small_net(0), standard_hwa_2023())
    analoglib.program(noisy, 3)
    path = analoglib.save(noisy, tmp_path / "model.pt")
    exact = analoglib.convert_to_analog(small_net(1), ideal())
    analoglib.load(exact, path, config="keep")
    assert not any(layer.is_programmed for layer in analoglib.analog_layers(exact))
    analoglib.program(exact, 0)
    digital = analoglib.convert_to_digital(exact).eval()
    x = net_input()
    with torch.no_grad():
        assert_close(exact.eval()(x), digital(x), rtol=1e-5, atol=1e-5)


def test_unprogrammed_save_load(tmp_path: Path) -> None:
    model = analoglib.convert_to_analog(small_net(0), standard_hwa_2023())
    path = analoglib.save(model, tmp_path / "model.pt")
    fresh = analoglib.load(analoglib.convert_to_analog(small_net(1), standard_hwa_2023()), path)
    assert not any(layer.is_programmed for layer in analoglib.analog_layers(fresh))
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_of_layer_deepcopies() -> None:
    layer = AnalogLinear(20, 5, config=standard_hwa_2023())
    analoglib.program(layer, 0)
    clone = copy.deepcopy(layer)
    for m in (layer, clone):
        m.set_forward_seed(1)
    x = torch.randn(4, 20)
    with torch.no_grad():
        assert torch.equal(layer(x), clone(x))


def test_deepcopy_of_a_programmed_model_keeps_the_programming_usable() -> None:
    """A copy of a programmed model evaluates as the original.

    The copy's weight tensor starts a new version counter; an edit after programming (of the
    original, before copying) still makes the copy refuse to evaluate.
    """
    model = analoglib.convert_to_analog(small_net(0), standard_hwa_2023())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.0)  # trained weights: version counters above 0
    analoglib.program(model, 0)
    analoglib.drift(model, 3600.0, 1)
    clone = copy.deepcopy(model)
    x = net_input()
    for m in (model, clone):
        analoglib.set_forward_seed(m, 2)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
        for layer in analoglib.analog_layers(model):
            layer.weight.add_(0.0)
        stale = copy.deepcopy(model)
        with pytest.raises(RuntimeError, match="weights changed after programming"):
            stale(x)
