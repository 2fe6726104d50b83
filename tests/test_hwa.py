"""Hardware-aware training: modifiers, ramp, clip, remap, input ranges, distillation, driver.

Also the cached and resumable HWA driver and its benefit over direct mapping.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from synthetic import synthetic_workload
from torch import Tensor, nn

import analoglib as al
from analoglib.presets import ideal, standard_hwa_2023
from analoglib.studies import hwa_retraining as hwa_study
from analoglib.training import hwa
from analoglib.utils import _Paths
from analoglib.workloads import base
from analoglib.workloads import train as workload_train

N_OUT = 20_000  # columns of the statistics tests (one noisy weight read per column)


def _read_weight(
    kind: str, w0: float, std_dev: float, strength: float = 1.0, **extra: Any
) -> Tensor:
    """Each of N_OUT columns holds (1, w0); x = (0, 1) reads the noisy w0 (a = 1, s = 1)."""
    linear = nn.Linear(2, N_OUT, bias=False)
    with torch.no_grad():
        linear.weight[:, 0] = 1.0
        linear.weight[:, 1] = w0
    config = ideal()
    config.modifier.type = kind
    config.modifier.std_dev = std_dev
    for name, value in extra.items():
        setattr(config.modifier, name, value)
    analog = al.convert_to_analog(linear, config).train()
    analog.set_forward_seed(0)
    al.training.set_modifier_strength(analog, strength)
    with torch.no_grad():
        return analog(torch.tensor([[0.0, 1.0]]))[0].double()


def _check_normal(y: Tensor, mean: float, std: float) -> None:
    # Standard errors: std / sqrt(n) of the mean, std / sqrt(2 n) of the sample std; 6 SE.
    assert abs(y.mean().item() - mean) < 6 * std / N_OUT**0.5
    assert abs(y.std().item() - std) < 6 * std / (2 * N_OUT) ** 0.5


def test_prog_noise_statistics() -> None:
    """PROG_NOISE: sigma = std_dev / g_max * (c0 + c1 |w|/a + c2 (|w|/a)^2), section 9."""
    c0, c1, c2 = 0.26348, 1.9650, -1.1731
    w0, std_dev = 0.5, 2.0
    sigma = std_dev / 25.0 * (c0 + c1 * w0 + c2 * w0**2)
    y = _read_weight("prog_noise", w0, std_dev)
    _check_normal(y, w0, sigma)  # w0 / sigma ~ 6.6: the reflection at 0 is negligible
    assert (y > 0).all()  # sign kept


def test_pcm_noise_statistics() -> None:
    """PCM_NOISE at t = t0: programming noise and 1/f read noise (no drift), in uS.

    g = 12.5 uS; sigma_prog = std_dev (c0 + c1 g/g_max + c2 (g/g_max)^2);
    sigma_read = std_dev g Q_s(g) sqrt(ln((t0 + 250 ns) / 500 ns)), Q_s = 0.0088 (g/g_max)^-0.65.
    To first order the two add in quadrature.
    """
    c0, c1, c2 = 0.26348, 1.9650, -1.1731
    w0, std_dev, g_max = 0.5, 1.0, 25.0
    g = w0 * g_max
    sigma_prog = std_dev * (c0 + c1 * w0 + c2 * w0**2)
    q_s = 0.0088 * w0**-0.65
    sigma_read = std_dev * g * q_s * math.sqrt(math.log((20.0 + 250e-9) / 500e-9))
    sigma = math.hypot(sigma_prog, sigma_read) / g_max
    y = _read_weight("pcm_noise", w0, std_dev)
    _check_normal(y, w0, sigma)


def test_pcm_noise_drift_variation_without_mean_drift() -> None:
    """At t > t0 each weight shrinks by (t/t0)^-nu with nu = |sigma_nu xi| (no mean drift).

    Near g/g_max = 0.5, sigma_nu = clip(-0.0125 ln(g/g_max) - 0.0059, 0.008, 0.045) = 0.008, so
    E[w] = w0 E[exp(-c |Z|)] = w0 * 2 exp(c^2 / 2) Phi(-c) with c = 0.008 ln(t/t0); programming
    and read noise have zero mean.
    """
    t_inference_s, t0 = 86400.0, 20.0
    c = 0.008 * math.log((t_inference_s + t0) / t0)
    expected = 0.5 * 2 * math.exp(c**2 / 2) * 0.5 * math.erfc(c / math.sqrt(2))
    y = _read_weight("pcm_noise", 0.5, 1.0, pcm_t_inference_s=t_inference_s)
    assert abs(y.mean().item() - expected) < 6 * y.std().item() / N_OUT**0.5
    assert expected < 0.5 - 0.02  # the test can tell this from no drift


@pytest.mark.parametrize("kind", ["add_normal", "prog_noise", "pcm_noise"])
def test_modifier_only_in_training_and_ramp_scales_it(kind: str) -> None:
    """No noise in eval(); strength 0 gives the clean weight; the std scales with strength."""
    linear = nn.Linear(2, 64, bias=False)
    config = ideal()
    config.modifier.type = kind
    config.modifier.std_dev = 1.0
    analog = al.convert_to_analog(linear, config)
    x = torch.randn(4, 2)
    with torch.no_grad():
        torch.testing.assert_close(analog.eval()(x), linear(x))
        analog.train()
        assert (analog(x) - linear(x)).abs().max() > 1e-3
        al.training.set_modifier_strength(analog, 0.0)
        torch.testing.assert_close(analog(x), linear(x))
    if kind == "add_normal":
        half = _read_weight(kind, 0.5, 0.1, strength=0.5)
        _check_normal(half, 0.5, 0.05)


def test_modifier_ramp_is_linear_in_steps() -> None:
    model = al.convert_to_analog(nn.Linear(3, 2), ideal())
    ramp = al.training.ModifierRamp(4)
    ramp.start(model)
    strengths = [model.modifier_strength]
    for _ in range(6):
        ramp(model)
        strengths.append(model.modifier_strength)
    assert strengths == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="steps"):
        al.training.ModifierRamp(-1)
    with pytest.raises(ValueError, match="strength"):
        al.training.set_modifier_strength(model, -0.5)


def _two_tile_linear(config: al.PCMConfig, seed: int = 0) -> tuple[nn.Linear, nn.Module]:
    """701 inputs: two stacked tiles of 351 and 350 rows (padded layout)."""
    torch.manual_seed(seed)
    linear = nn.Linear(701, 30)
    return linear, al.convert_to_analog(linear, config)


def test_remap_keeps_column_max_at_one_and_output_unchanged() -> None:
    config = ideal()
    config.remap.type = "channelwise_symmetric"
    _, analog = _two_tile_linear(config)
    with torch.no_grad():  # an optimiser step that moves the column maxima away from 1
        analog.weight.mul_(torch.rand(analog.weight.shape) * 2.0)
    x = torch.randn(8, 701)
    with torch.no_grad():
        before = analog.eval()(x)
    digital_before = analog.digital_weight().detach().clone()
    al.training.remap_weights(analog)
    column_max = analog.reference_tiles().abs().amax(dim=2)  # (tiles, out)
    torch.testing.assert_close(column_max, torch.ones_like(column_max))
    torch.testing.assert_close(analog.digital_weight(), digital_before)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), before, rtol=1e-5, atol=1e-5)


def test_layerwise_remap_keeps_tile_max_at_one() -> None:
    config = ideal()
    config.remap.type = "layerwise_symmetric"
    _, analog = _two_tile_linear(config)
    with torch.no_grad():
        analog.weight.mul_(3.0)
    digital_before = analog.digital_weight().detach().clone()
    al.training.remap_weights(analog)
    tile_max = analog.reference_tiles().abs().amax(dim=(1, 2))
    torch.testing.assert_close(tile_max, torch.ones_like(tile_max))
    torch.testing.assert_close(analog.digital_weight(), digital_before)


def test_clip_fixed_value_and_layer_gaussian() -> None:
    config = ideal()
    config.clip.type = "fixed_value"
    config.clip.fixed_value = 0.5
    _, analog = _two_tile_linear(config)
    expected = analog.weight.detach().clamp(-0.5, 0.5)
    al.training.clip_weights(analog)
    assert torch.equal(analog.weight.detach(), expected)

    config.clip.type = "layer_gaussian"
    config.clip.sigma = 1.0
    config.clip.fixed_value = 0.0  # no cap
    _, analog = _two_tile_linear(config, seed=1)
    w = analog.weight.detach().clone()  # (30, 701)
    expected = w.clone()
    for cols in (slice(0, 351), slice(351, 701)):  # the two tiles, plain torch
        bound = w[:, cols].std().item()  # unbiased std over the tile's weights
        expected[:, cols] = w[:, cols].clamp(-bound, bound)
    al.training.clip_weights(analog)
    torch.testing.assert_close(analog.weight.detach(), expected)
    assert (analog.weight.detach() != w).any()


def test_post_update_step_with_plain_torch_optimizer() -> None:
    """SGD step with a large lr, then clip (fixed 1) and remap: every column max is 1."""
    torch.manual_seed(3)
    model = al.convert_to_analog(
        nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)), ideal()
    )
    for layer in al.analog_layers(model):
        layer.config.clip.type = "fixed_value"
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    nn.functional.cross_entropy(model.train()(x), y).backward()
    optimizer.step()
    assert max(layer.weight.abs().max().item() for layer in al.analog_layers(model)) > 1.0
    al.training.post_update_step(model)
    for layer in al.analog_layers(model):
        column_max = layer.reference_tiles().abs().amax(dim=2)
        torch.testing.assert_close(column_max, torch.ones_like(column_max))


def test_input_ranges_initialise_from_data_then_learn() -> None:
    """First init_from_data batches: running mean of 3 std(x); afterwards gradient steps."""
    config = standard_hwa_2023()
    config.pre_post.input_range.init_from_data = 2
    torch.manual_seed(4)
    analog = al.convert_to_analog(nn.Linear(50, 5), config).train()
    optimizer = torch.optim.SGD(analog.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(64, 50, generator=g) * scale for scale in (1.0, 2.0, 4.0, 4.0)]
    seen, stepped = [], []  # r after each forward (data init) and after each step
    for x in batches:
        optimizer.zero_grad()
        analog(x).square().mean().backward()
        seen.append(analog.input_range.item())
        assert analog.input_range.grad is not None and analog.input_range.grad.abs().sum() > 0
        optimizer.step()
        al.training.post_update_step(analog)
        stepped.append(analog.input_range.item())
    stds = [3.0 * b.std().item() for b in batches]
    # Running mean over the first two batches, of the range as the optimiser left it.
    assert seen[0] == pytest.approx(stds[0], rel=1e-5)
    assert seen[1] == pytest.approx((stepped[0] + stds[1]) / 2, rel=1e-5)
    assert int(analog.input_range_batches) == 2
    # Afterwards only the gradient moves r: no more data updates, but steps change it.
    assert seen[2] == stepped[1] and seen[3] == stepped[2]
    assert stepped[2] != pytest.approx(seen[2], rel=1e-6)
    assert stepped[3] != pytest.approx(seen[3], rel=1e-6)


def test_distillation_loss() -> None:
    torch.manual_seed(6)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    student = al.convert_to_analog(teacher, ideal())  # same function as the teacher
    batch = (torch.randn(10, 8), torch.randint(0, 3, (10,)))

    def task(model: nn.Module, b: Any) -> tuple[Tensor, int]:
        return nn.functional.cross_entropy(model(b[0]), b[1]), len(b[1])

    plain, _ = task(student, batch)
    mixed, n = hwa.distillation_batch_loss(task, teacher, 0.5, temperature=2.0)(student, batch)
    assert n == 10
    torch.testing.assert_close(mixed, 0.5 * plain)  # KL(teacher || identical student) = 0
    other = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    only_kd, _ = hwa.distillation_batch_loss(task, other, 1.0, temperature=2.0)(student, batch)
    with torch.no_grad():
        p_t = torch.softmax(other(batch[0]) / 2, dim=-1)
        log_p_s = torch.log_softmax(teacher(batch[0]) / 2, dim=-1)
        kl = (p_t * (p_t.log() - log_p_s)).sum(dim=-1).mean() * 4
    torch.testing.assert_close(only_kd.detach(), kl)
    with pytest.raises(ValueError, match="weight"):
        hwa.distillation_batch_loss(task, teacher, 1.5)


def test_recipe_validation_and_profiles() -> None:
    with pytest.raises(ValueError, match="lr"):
        al.training.HWARecipe(epochs=1, lr=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        al.training.HWARecipe(epochs=1, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="workload"):
        hwa_study.hwa_recipe("mlp", "smoke")
    with pytest.raises(ValueError, match="nope"):
        hwa_study.hwa_recipe("cnn", "smoke", nope=1)
    for name, profiles in hwa_study.HWA_PROFILES.items():
        for profile in profiles:
            recipe, config, sizes = hwa_study.hwa_recipe(name, profile)
            assert config.modifier.type != "none"
            assert set(sizes) == {"eval_batches", "calibration_batches"}


# -- the driver on a tiny synthetic workload -----------------------------------------------------
_PROFILES = {p: {"hidden": 8, "epochs": 1} for p in ("smoke", "default", "paper")}


@base.register("unit_test_hwa", _PROFILES)
def _build(parameters: dict[str, Any]) -> base.Workload:
    return synthetic_workload("unit_test_hwa", parameters, 96, 6, shuffle=True)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the checkpoint cache at a temporary project root."""
    monkeypatch.setattr(base, "paths", _Paths(tmp_path))
    return tmp_path / "data" / "cache"


def _hwa_config() -> al.PCMConfig:
    config = standard_hwa_2023()
    config.modifier.type = "pcm_noise"
    config.modifier.std_dev = 2.0
    config.pre_post.input_range.init_from_data = 2
    return config


RECIPE = al.training.HWARecipe(epochs=3, lr=0.01, max_steps=4, ramp_steps=5, distill_weight=0.3)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v for k, v in model.state_dict().items() if isinstance(v, Tensor)}


def test_train_hwa_caches_and_resumes_bit_for_bit(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = al.workloads.load_workload("unit_test_hwa", "smoke")
    full = al.workloads.train_hwa(workload, _hwa_config(), RECIPE, progress=False)
    path = al.workloads.hwa_cache_path(workload, _hwa_config(), RECIPE)
    assert path.is_file() and path.parent.parent.name == "hwa"
    assert not workload_train._progress_path(path).exists()
    assert all(layer.modifier_strength == 1.0 for layer in al.analog_layers(full))

    # Reused: a second call loads the checkpoint without training.
    def no_training(*args: Any, **kwargs: Any) -> list[float]:
        raise AssertionError("fit must not run for a cached HWA checkpoint")

    monkeypatch.setattr(workload_train, "fit", no_training)
    again = al.workloads.train_hwa(
        al.workloads.load_workload("unit_test_hwa", "smoke"), _hwa_config(), RECIPE
    )
    for key, value in _state(full).items():
        assert torch.equal(value, _state(again)[key]), key
    monkeypatch.undo()
    monkeypatch.setattr(base, "paths", _Paths(cache.parent.parent))

    # Interrupted in the third epoch: two finished epochs survive, the rerun resumes.
    path.unlink()
    real_fit, calls = workload_train.fit, []

    def interrupted_fit(*args: Any, **kwargs: Any) -> list[float]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(workload_train, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        al.workloads.train_hwa(
            al.workloads.load_workload("unit_test_hwa", "smoke"), _hwa_config(), RECIPE
        )
    assert torch.load(workload_train._progress_path(path), weights_only=False)["epoch"] == 2
    monkeypatch.setattr(workload_train, "fit", real_fit)
    counted: list[int] = []

    def counting_fit(*args: Any, **kwargs: Any) -> list[float]:
        counted.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(workload_train, "fit", counting_fit)
    resumed = al.workloads.train_hwa(
        al.workloads.load_workload("unit_test_hwa", "smoke"), _hwa_config(), RECIPE
    )
    assert len(counted) == 1  # only the unfinished epoch
    for key, value in _state(full).items():
        assert torch.equal(value, _state(resumed)[key]), key


def test_normalized_accuracy_table() -> None:
    import pandas as pd

    results = pd.DataFrame(
        {
            "variant": ["a", "a", "a"],
            "drift_compensation": [True, True, True],
            "t_inference_s": [3600.0, 3600.0, 1.0],
            "error": [0.2, 0.3, 0.9],
        }
    )
    table = hwa_study.normalized_accuracy_table(results, error_fp=0.1, chance_error=0.9)
    row = table.loc[("a", True, 3600.0)]
    # A* = 1 - (e - 0.1) / 0.8: 87.5 % and 75 %.
    assert row["a_star_mean"] == pytest.approx(81.25)
    assert row["a_star_std"] == pytest.approx(float(pd.Series([87.5, 75.0]).std()))
    assert len(table) == 1  # t = 1 s is not asked for


def test_short_hwa_run_beats_direct_mapping_on_the_smoke_cnn(cache: Path) -> None:
    """The smoke HWA run (2 x 15 steps) beats the calibrated direct mapping after a month.

    ResNet-8 on the 8x8 digits; 450 test images, so one image is 0.26 points of A*. After
    1 h the direct mapping of this small model is within about 1 point of the FP model (its
    value moves by half a point with the noise draws), so the comparison is made after a month
    of drift (HWA about 2 points ahead), averaged over 4 programmings.
    """
    workload = al.workloads.load_workload("cnn", "smoke")
    recipe, config, sizes = hwa_study.hwa_recipe("cnn", "smoke")
    hwa_model = al.workloads.train_hwa(workload, config, recipe, progress=False)
    fp_error = workload.evaluate(workload.model)["error"]
    direct = al.convert_to_analog(workload.model, standard_hwa_2023())
    al.optim.calibrate_input_ranges(
        direct,
        workload.train_loader,
        max_batches=sizes["calibration_batches"],
        run_batch=workload.batch_loss,
    )
    a_star = {}
    for name, model in (("direct", direct), ("hwa", hwa_model)):
        table = al.evaluate(
            model, workload.evaluate, [2.6e6], 4, seed=0, drift_compensation=True, progress=False
        )
        a_star[name] = workload.normalized_accuracy(table["error"].mean(), fp_error)
    assert a_star["hwa"] > a_star["direct"] + 0.005, a_star
