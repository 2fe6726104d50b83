"""The CNN workload: a CIFAR-family ResNet on an image classification task.

The paper setting (Rasch et al. 2023; ``docs/model.md#recipe-resnet-lstm``) is ResNet-32 on
CIFAR-10. CIFAR-10 exists only on the hub (``docs/data.md#not-offline``), so the offline
default profile trains a ResNet-20 on Fashion-MNIST (Debian ``dataset-fashion-mnist``) as a
stand-in, and the smoke profile a narrow ResNet-8 on scikit-learn's 8x8 digits.

Profiles (every value is an overridable parameter of :func:`analoglib.workloads.load_workload`):

============== ============== ================= ===========================
parameter      smoke          default           paper
============== ============== ================= ===========================
dataset        digits         fashion_mnist     cifar10 (hub)
depth, width   8, 8           20, 16            32, 16
epochs         2              3                 200
batch_size     32             128               128
optimizer, lr  adam, 0.01     adam, 0.002       sgd (momentum 0.9), 0.05
weight_decay   0              0                 5e-4
lr_decay       1.0            0.4 per epoch     1.0
schedule       constant       constant          cosine
crop, flip     0, no          0, no             4 px, yes
============== ============== ================= ===========================

The workload parameters:

- ``dataset``: ``"digits"`` (sklearn 8x8, 1,347/450 split with a fixed seed 0, no
  ``data_source`` needed), ``"fashion_mnist"`` (offline or hub) or ``"cifar10"`` (hub).
- ``depth``: ResNet depth ``6n + 2`` (8, 20, 32, ...).
- ``width``: Channels of the first stage (16 in He et al. 2016).
- ``epochs``, ``lr``, ``optimizer``, ``weight_decay``, ``lr_decay``, ``schedule``,
  ``max_steps``: the :class:`~analoglib.training.TrainRecipe` (paper: aihwkit's HWA tutorial
  recipe, ``docs/model.md#recipe-choices``).
- ``batch_size``: Training batch size.
- ``eval_batch_size``: Evaluation batch size.
- ``max_eval_batches``: Evaluate on the first this many test batches (0: the whole test set).
- ``crop_padding``: Random-crop padding in pixels (0: no cropping), training only.
- ``hflip``: Random horizontal flips, training only.

The metric is top-1 accuracy (``"accuracy"``); ``"error"`` is ``1 - accuracy`` with chance
level ``1 - 1/10 = 0.9``.

Measured (default profile, 2 CPU cores): training plus evaluation 9.3 min; top-1 accuracy
91.3 % on the 2,000-image evaluation subset (91.7 % on all 10,000 test images in an earlier
run of the same recipe).

References:
    He et al. 2016 (CIFAR ResNets); Rasch et al. 2023; ``docs/model.md#recipe-resnet-lstm``,
    ``docs/model.md#recipe-aihwkit-tutorial``, ``docs/model.md#metrics``; ``docs/data.md#images``,
    ``docs/data.md#not-offline``, ``docs/data.md#stand-ins``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from analoglib.data.digits import DIGITS_CLASSES, load_digits
from analoglib.data.images import (
    ImageBatchTransform,
    ImageSplit,
    channel_stats,
    load_cifar10,
    load_fashion_mnist,
    make_image_loader,
)
from analoglib.models.resnet import CifarResNet
from analoglib.training.loops import OPTIMIZERS, TrainRecipe, accuracy
from analoglib.utils import check_int, derive_seed
from analoglib.workloads.base import Workload, register

__all__ = ["DATASETS", "PROFILES", "build_cnn"]

#: Datasets of the CNN workload.
DATASETS = ("digits", "fashion_mnist", "cifar10")

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "digits",
        "depth": 8,
        "width": 8,
        "epochs": 2,
        "batch_size": 32,
        "eval_batch_size": 450,
        "max_eval_batches": 0,
        "optimizer": "adam",
        "lr": 0.01,
        "weight_decay": 0.0,
        "lr_decay": 1.0,
        "schedule": "constant",
        "max_steps": 0,
        "crop_padding": 0,
        "hflip": False,
    },
    "default": {
        "dataset": "fashion_mnist",
        "depth": 20,
        "width": 16,
        "epochs": 3,
        "batch_size": 128,
        "eval_batch_size": 500,
        "max_eval_batches": 4,
        "optimizer": "adam",
        "lr": 0.002,
        "weight_decay": 0.0,
        "lr_decay": 0.4,
        "schedule": "constant",
        "max_steps": 0,
        "crop_padding": 0,
        "hflip": False,
    },
    "paper": {
        "dataset": "cifar10",
        "depth": 32,
        "width": 16,
        "epochs": 200,
        "batch_size": 128,
        "eval_batch_size": 500,
        "max_eval_batches": 0,
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 5e-4,
        "lr_decay": 1.0,
        "schedule": "cosine",
        "max_steps": 0,
        "crop_padding": 4,
        "hflip": True,
    },
}

_DATASET_NAMES = {
    "digits": "sklearn 8x8 digits",
    "fashion_mnist": "Fashion-MNIST 28x28",
    "cifar10": "CIFAR-10 32x32",
}


def _load_images(dataset: str, data_source: str) -> tuple[ImageSplit, int]:
    """The dataset as uint8 (or [0, 1] float for digits) arrays, and its number of classes."""
    if dataset == "digits":
        split = load_digits(seed=0)  # fixed split: the test set does not change with the seed
        images = ImageSplit(
            x_train=split.x_train.numpy(),  # (1347, 1, 8, 8) float in [0, 1]
            y_train=split.y_train.numpy(),
            x_test=split.x_test.numpy(),  # (450, 1, 8, 8)
            y_test=split.y_test.numpy(),
            classes=tuple(str(k) for k in range(DIGITS_CLASSES)),
        )
    elif dataset == "fashion_mnist":
        images = load_fashion_mnist(data_source)
    else:  # "cifar10", checked by the builder
        images = load_cifar10(data_source)
    return images, len(images.classes)


def _batch_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
    """Mean cross-entropy of a batch ``(x (B, C, H, W), y (B,))`` on the model's device."""
    device = next(model.parameters()).device
    inputs, targets = batch[0].to(device), batch[1].to(device)
    logits = model(inputs)  # (B, classes)
    return F.cross_entropy(logits, targets), len(targets)


def _make_evaluate(
    loader: DataLoader[tuple[Tensor, ...]], max_batches: int
) -> Callable[[nn.Module], dict[str, float]]:
    def evaluate(model: nn.Module) -> dict[str, float]:
        """Top-1 accuracy and error (``1 - accuracy``) on the fixed evaluation batches."""
        model.eval()
        with torch.no_grad():
            value = accuracy(model, loader, max_batches=max_batches)
        return {"accuracy": value, "error": 1.0 - value}

    return evaluate


@register("cnn", PROFILES)
def build_cnn(parameters: dict[str, Any]) -> Workload:
    """Build the CNN workload (a CIFAR-family ResNet on image classification).

    Args:
        parameters: Resolved profile parameters (see the module docstring) plus ``profile``,
            ``data_source`` and ``seed``.

    Returns:
        The :class:`Workload`: an untrained :class:`~analoglib.models.resnet.CifarResNet`,
        seeded loaders (per-channel normalisation with training-set statistics; random crop
        and flip for training if enabled), the metric ``"accuracy"`` and ``"error"`` with chance
        error ``1 - 1/num_classes``.

    Raises:
        ValueError: For an unknown dataset, optimiser or an invalid size.
        FileNotFoundError: If offline data is missing (Fashion-MNIST: the message names
            ``apt-get install -y dataset-fashion-mnist``) or does not exist (CIFAR-10).
        ConnectionError: For ``data_source="hub"`` without network access.

    References:
        He et al. 2016; ``docs/model.md#recipe-resnet-lstm``.
    """
    p = parameters
    for name in ("depth", "width", "epochs", "batch_size", "eval_batch_size"):
        check_int(name, p[name], 1)
    for name in ("max_eval_batches", "max_steps", "crop_padding"):
        check_int(name, p[name], 0)
    if p["optimizer"] not in OPTIMIZERS:
        raise ValueError(
            f"optimizer = {p['optimizer']!r} is not allowed: expected one of "
            f"{', '.join(map(repr, OPTIMIZERS))}."
        )
    if p["dataset"] not in DATASETS:
        raise ValueError(
            f"dataset = {p['dataset']!r} is not allowed: expected one of "
            f"{', '.join(map(repr, DATASETS))}."
        )
    images, num_classes = _load_images(p["dataset"], p["data_source"])
    in_channels = images.x_train.shape[1]
    mean, std = channel_stats(images.x_train)
    seed = p["seed"]
    train_transform = ImageBatchTransform(
        mean,
        std,
        crop_padding=p["crop_padding"],
        hflip=p["hflip"],
        seed=derive_seed(seed, "cnn_augment"),
    )
    train_loader = make_image_loader(
        images.x_train,
        images.y_train,
        p["batch_size"],
        train_transform,
        shuffle=True,
        seed=derive_seed(seed, "cnn_shuffle"),
    )
    eval_loader = make_image_loader(
        images.x_test, images.y_test, p["eval_batch_size"], ImageBatchTransform(mean, std)
    )
    model = CifarResNet(p["depth"], num_classes, in_channels, p["width"])
    n_test = len(images.y_test)
    n_eval = n_test
    if p["max_eval_batches"]:
        n_eval = min(n_test, p["max_eval_batches"] * p["eval_batch_size"])
    height, width = images.x_train.shape[2:]
    net = f"ResNet-{p['depth']}" + ("" if p["width"] == 16 else f" (width {p['width']})")
    data = _DATASET_NAMES[p["dataset"]]
    if p["dataset"] == "cifar10" and p["depth"] == 32:
        role = "the paper setting of Rasch et al. 2023"
    else:
        role = "stand-in for ResNet-32 on CIFAR-10"
    description = f"{net} on {data} ({role}; {height}x{width}x{in_channels})"
    return Workload(
        name="cnn",
        parameters=dict(parameters),
        model=model,
        train_loader=train_loader,
        eval_loader=eval_loader,
        batch_loss=_batch_loss,
        evaluate=_make_evaluate(eval_loader, p["max_eval_batches"]),
        metric="accuracy",
        higher_is_better=True,
        chance_error=1.0 - 1.0 / num_classes,
        recipe=TrainRecipe.from_parameters(p),
        description=description,
        split_sizes={"train": len(images.y_train), "test": n_test, "eval": n_eval},
    )
