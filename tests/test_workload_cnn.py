"""The CNN workload: CIFAR ResNets, image data, augmentation, smoke training, analog evaluation."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import analoglib as al
import analoglib.workloads.cnn  # noqa: F401  (registers "cnn")
from analoglib.data import images as image_data
from analoglib.data.images import (
    FASHION_MNIST_DIR,
    ImageBatchTransform,
    channel_stats,
    load_cifar10,
    load_fashion_mnist,
    make_image_loader,
)
from analoglib.models.resnet import CifarResNet, ShortcutA, resnet8, resnet20, resnet32
from analoglib.training import fit
from analoglib.utils import _Paths
from analoglib.workloads import Workload, base, cache_path, load_workload, train_fp

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"{FASHION_MNIST_DIR} is missing (apt-get install -y dataset-fashion-mnist)",
)


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Paths:
    """Route checkpoints and the hub cache into a temporary project root."""
    fake = _Paths(tmp_path)
    monkeypatch.setattr(base, "paths", fake)
    monkeypatch.setattr(image_data, "paths", fake)
    return fake


@pytest.fixture(scope="module")
def trained_smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """The smoke workload with its FP baseline trained into a temporary cache (once per module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "paths", _Paths(tmp_path_factory.mktemp("cnn_cache")))
        workload = load_workload("cnn", "smoke", seed=0)
        train_fp(workload, retrain=True, progress=False)
        yield workload


# --- model -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "depth", "n_weights"),
    [(resnet8, 8, 74_810), (resnet20, 20, 268_346), (resnet32, 32, 461_882)],
)
def test_resnet_depth_and_weights_follow_he_2016(
    factory: Callable[..., CifarResNet], depth: int, n_weights: int
) -> None:
    model = factory(num_classes=10, in_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth  # 6n + 2 weight layers, shortcuts carry none
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    weights = sum(m.weight.numel() + (0 if m.bias is None else m.bias.numel()) for m in convs)
    weights += sum(m.weight.numel() + m.bias.numel() for m in linears)
    assert weights == n_weights  # ResNet-20: 0.27 M, ResNet-32: 0.46 M (He et al. 2016)
    assert [c.out_channels for c in convs][-1] == 64


@pytest.mark.parametrize(("in_channels", "size"), [(1, 8), (1, 28), (3, 32)])
def test_resnet_output_shape(in_channels: int, size: int) -> None:
    model = CifarResNet(8, num_classes=7, in_channels=in_channels, width=4)
    out = model(torch.randn(3, in_channels, size, size))
    assert out.shape == (3, 7)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 4, 6, 6)
    y = ShortcutA(4, 8, stride=2)(x)
    assert y.shape == (2, 8, 3, 3)
    torch.testing.assert_close(y[:, 2:6], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 6:].any()
    assert not list(ShortcutA(4, 8, 2).parameters())


@pytest.mark.parametrize("depth", [7, 9, 21, 2])
def test_resnet_rejects_depth_not_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth)


# --- data --------------------------------------------------------------------------------------


def test_transform_normalises_with_training_statistics() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, 3, 5, 5), dtype=np.uint8)
    mean, std = channel_stats(images)
    reference = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, reference.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, reference.std(axis=(0, 2, 3)), rtol=1e-9)
    x = ImageBatchTransform(mean, std).apply(torch.from_numpy(images))  # (64, 3, 5, 5)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-5, rtol=0)


def test_random_crop_and_flip_are_seeded_shifted_windows() -> None:
    images = torch.arange(16 * 2 * 6 * 6, dtype=torch.float32).reshape(16, 2, 6, 6) + 1.0
    identity = ([0.0, 0.0], [1.0, 1.0])
    first = ImageBatchTransform(*identity, crop_padding=2, hflip=True, seed=3).apply(images)
    again = ImageBatchTransform(*identity, crop_padding=2, hflip=True, seed=3).apply(images)
    other = ImageBatchTransform(*identity, crop_padding=2, hflip=True, seed=4).apply(images)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    assert first.shape == images.shape
    padded = nn.functional.pad(images, (2, 2, 2, 2))  # (16, 2, 10, 10)
    for image, out in zip(padded, first, strict=True):
        windows = [
            w
            for dy in range(5)
            for dx in range(5)
            for w in (
                image[:, dy : dy + 6, dx : dx + 6],
                image[:, dy : dy + 6, dx : dx + 6].flip(-1),
            )
        ]
        assert any(torch.equal(out, w) for w in windows)
    flips = ImageBatchTransform(*identity, hflip=True, seed=0).apply(images)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(flips, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(flips, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < len(images)


def test_smoke_split_sizes_and_batches() -> None:
    workload = load_workload("cnn", "smoke")
    assert workload.split_sizes == {"train": 1347, "test": 450, "eval": 450}
    assert workload.chance_error == pytest.approx(0.9)
    assert workload.metric == "accuracy" and workload.higher_is_better
    assert "stand-in" in workload.description
    x, y = next(iter(workload.train_loader))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert sum(len(b[1]) for b in workload.train_loader) == 1347
    assert sum(len(b[1]) for b in workload.eval_loader) == 450


def test_loaders_are_seeded() -> None:
    first = next(iter(load_workload("cnn", "smoke", seed=0).train_loader))
    again = next(iter(load_workload("cnn", "smoke", seed=0).train_loader))
    other = next(iter(load_workload("cnn", "smoke", seed=1).train_loader))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first[1], other[1])
    eval_a = next(iter(load_workload("cnn", "smoke", seed=0).eval_loader))
    eval_b = next(iter(load_workload("cnn", "smoke", seed=1).eval_loader))
    torch.testing.assert_close(eval_a, eval_b)  # the test set does not depend on the seed


@needs_fashion_mnist
def test_fashion_mnist_split_sizes() -> None:
    data = load_fashion_mnist()
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (10000, 1, 28, 28) and data.x_test.dtype == np.uint8
    assert data.y_train.shape == (60000,) and data.y_test.shape == (10000,)
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert len(data.classes) == 10


@needs_fashion_mnist
def test_default_profile_loaders() -> None:
    workload = load_workload("cnn", "default")
    assert workload.split_sizes == {"train": 60000, "test": 10000, "eval": 2000}
    assert len(workload.train_loader) == math.ceil(60000 / 128)  # type: ignore[arg-type]
    x, y = next(iter(workload.train_loader))
    assert x.shape == (128, 1, 28, 28) and y.shape == (128,)
    assert "Fashion-MNIST" in workload.description and "stand-in" in workload.description


def test_missing_fashion_mnist_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist") as err:
        load_fashion_mnist(root=tmp_path)
    assert 'data_source="hub"' in str(err.value)


def test_cifar10_offline_points_to_the_hub() -> None:
    with pytest.raises(FileNotFoundError, match='data_source="hub"'):
        load_cifar10("offline")
    with pytest.raises(FileNotFoundError, match="CIFAR-10 has no offline copy"):
        load_workload("cnn", "paper")


@pytest.mark.parametrize(
    ("profile", "dataset"), [("default", "fashion_mnist"), ("paper", "cifar10")]
)
def test_hub_path_fails_fast_offline(tmp_cache: _Paths, profile: str, dataset: str) -> None:
    if os.environ.get("HF_DATASETS_OFFLINE") != "1":
        pytest.skip("HF_DATASETS_OFFLINE is not 1: the hub path would download")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="Hugging Face Hub"):
        load_workload("cnn", profile, data_source="hub", dataset=dataset)
    assert time.perf_counter() - start < 10.0


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="no parameter 'n_layers'"):
        load_workload("cnn", "smoke", n_layers=3)
    with pytest.raises(ValueError, match="dataset = 'mnist'"):
        load_workload("cnn", "smoke", dataset="mnist")
    with pytest.raises(ValueError, match="depth = 9"):
        load_workload("cnn", "smoke", depth=9)
    with pytest.raises(ValueError, match="data_source = 'web'"):
        load_fashion_mnist("web")
    with pytest.raises(ValueError, match="crop_padding"):
        ImageBatchTransform([0.5], [0.2], crop_padding=-1)
    with pytest.raises(ValueError, match="different lengths"):
        make_image_loader(np.zeros((3, 1, 2, 2)), np.zeros(2), 2, ImageBatchTransform([0], [1]))


# --- training and evaluation -------------------------------------------------------------------


def test_smoke_trains_better_than_chance(trained_smoke: Workload) -> None:
    metrics = trained_smoke.evaluate(trained_smoke.model)
    assert set(metrics) == {"accuracy", "error"}
    assert metrics["error"] == pytest.approx(1.0 - metrics["accuracy"])
    assert metrics["accuracy"] > 0.6  # chance: 0.1
    assert trained_smoke.normalized_accuracy(metrics["error"], metrics["error"]) == 1.0


def test_fp_checkpoint_is_cached_and_reused(tmp_cache: _Paths) -> None:
    workload = load_workload("cnn", "smoke", epochs=1, max_steps=3)
    model = train_fp(workload, progress=False)
    path = cache_path(workload)
    assert path.is_file() and path.is_relative_to(tmp_cache.CACHE)
    again = load_workload("cnn", "smoke", epochs=1, max_steps=3, seed=0)
    assert again.parameters == workload.parameters
    train_fp(again, progress=False)  # loads, does not train
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)
    assert cache_path(load_workload("cnn", "smoke", epochs=1, max_steps=3, lr=0.02)) != path


def test_analog_model_evaluates_and_trains(trained_smoke: Workload) -> None:
    fp = trained_smoke.evaluate(trained_smoke.model)
    analog = al.convert_to_analog(trained_smoke.model, al.presets.standard_hwa_2023())
    assert len(al.analog_layers(analog)) == 8  # 7 convolutions + classifier; BatchNorm digital
    metrics = trained_smoke.evaluate(analog)
    assert metrics["accuracy"] > 0.6
    table = al.evaluate(analog, trained_smoke.evaluate, [1.0, 3600.0], 1, seed=0, progress=False)
    assert len(table) == 2 and {"accuracy", "error"} <= set(table.columns)
    assert (table["accuracy"] > 0.5).all()
    assert (table["error"] >= fp["error"] - 0.1).all()
    # The same loop trains the analog model (hardware-aware training reuses it).
    losses = fit(
        analog,
        trained_smoke.train_loader,
        epochs=1,
        lr=1e-3,
        seed=0,
        progress=False,
        batch_loss=trained_smoke.batch_loss,
        max_steps=2,
    )
    assert len(losses) == 1 and math.isfinite(losses[0])
