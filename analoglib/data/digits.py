"""Datasets and data loaders of the notebooks.

For now: scikit-learn's 8x8 handwritten digits (shipped with scikit-learn, no download), used by
the quickstart and by every smoke run. Fashion-MNIST, PTB and GLUE loaders with the
``data_source`` switch (``"offline"`` or ``"hub"``) come later (``docs/development.md#caching``).

Shuffling always uses a dedicated, seeded generator, so the number of batches drawn never
changes the hardware-noise draws (``docs/development.md#seeding``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DIGITS_CLASSES", "DIGITS_N_SAMPLES", "TensorSplit", "load_digits", "make_loader"]

#: Number of images in scikit-learn's digits dataset.
DIGITS_N_SAMPLES = 1797
#: Number of classes (the digits 0 to 9).
DIGITS_CLASSES = 10
# The digits pixels are integers 0..16 (counts of set pixels in 4x4 blocks of 32x32 bitmaps).
_DIGITS_MAX = 16.0


class TensorSplit(NamedTuple):
    """A train/test split held as tensors.

    Attributes:
        x_train: Training inputs.
        y_train: Training labels (``torch.long``).
        x_test: Test inputs.
        y_test: Test labels (``torch.long``).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> TensorSplit:
    """scikit-learn's 8x8 handwritten digits as a seeded, stratified train/test split.

    1797 grey-scale images of the digits 0-9 (about 180 per class), shipped with scikit-learn
    (no network access). Pixels are scaled from 0..16 to [0, 1].

    Args:
        seed: Seed of the split.
        test_fraction: Fraction of the images in the test set, in (0, 1); the test set gets
            ``ceil(1797 * test_fraction)`` images (450 for 0.25).

    Returns:
        A :class:`TensorSplit`: inputs of shape ``(N, 1, 8, 8)`` (``float32`` in [0, 1]) and
        labels of shape ``(N,)`` (``torch.long``).

    Raises:
        ValueError: If ``test_fraction`` is not in (0, 1) or ``seed`` is not an integer.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed = {seed!r} is not allowed: expected an integer.")
    ok = isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool)
    if not ok or not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"test_fraction = {test_fraction!r} is not allowed: expected a number in (0, 1)."
        )
    bunch = sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / _DIGITS_MAX  # (N, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)  # (N,)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed % 2**32, stratify=labels
    )
    return TensorSplit(
        x_train=torch.from_numpy(x_train).unsqueeze(1),  # (N_train, 1, 8, 8)
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test).unsqueeze(1),  # (N_test, 1, 8, 8)
        y_test=torch.from_numpy(y_test),
    )


def make_loader(
    x: Tensor, y: Tensor, batch_size: int, shuffle: bool = False, seed: int = 0
) -> DataLoader[tuple[Tensor, ...]]:
    """A ``DataLoader`` over ``(x, y)`` whose shuffling uses its own seeded generator.

    Args:
        x: Inputs, first dimension the samples.
        y: Targets, same first dimension.
        batch_size: Samples per batch, >= 1 (the last batch may be smaller).
        shuffle: Reshuffle every epoch.
        seed: Seed of the loader's generator (shuffling only; the global RNG is not used).

    Returns:
        The loader; it yields ``[x_batch, y_batch]``.

    Raises:
        ValueError: If the lengths differ or ``batch_size`` is not a positive integer.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} and {len(y)}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} is not allowed: expected an integer >= 1.")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator
    )
