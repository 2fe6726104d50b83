"""Image classification data: Fashion-MNIST (offline or hub) and CIFAR-10 (hub only).

Both loaders return an :class:`ImageSplit` of ``uint8`` arrays in ``(N, C, H, W)`` order plus
``int64`` labels, whatever the source, so everything downstream is shared. Normalisation and
augmentation happen per batch with torch ops in :class:`ImageBatchTransform`, the
``collate_fn`` of :func:`make_image_loader`; shuffling and augmentation draw from their own
seeded generators (``docs/development.md#seeding``).

Sources:
    * ``"offline"``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX
      ``.gz`` files under :data:`FASHION_MNIST_DIR`, read with NumPy). No offline CIFAR-10
      exists (``docs/data.md#not-offline``).
    * ``"hub"``: ``datasets.load_dataset("zalando-datasets/fashion_mnist")`` and
      ``load_dataset("uoft-cs/cifar10")``, cached under ``data/cache/hub/``.

References:
    Xiao, Rasul and Vollgraf 2017 (Fashion-MNIST); Krizhevsky 2009 (CIFAR-10);
    ``docs/data.md#images``, ``docs/data.md#not-offline``, ``docs/data.md#data-source``;
    ``data/registry.yaml``.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from analoglib.utils import DATA_SOURCES, paths

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_HUB",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_HUB",
    "IMAGE_DATA_SOURCES",
    "MNIST_CLASSES",
    "MNIST_HUB",
    "ImageBatchTransform",
    "ImageSplit",
    "channel_stats",
    "load_cifar10",
    "load_mnist",
    "load_fashion_mnist",
    "make_image_loader",
]

log = logging.getLogger(__name__)

#: Accepted values of ``data_source``.
IMAGE_DATA_SOURCES = DATA_SOURCES
#: Where the Debian package ``dataset-fashion-mnist`` installs the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Hugging Face dataset of Fashion-MNIST (``data_source="hub"``).
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
#: Hugging Face dataset of MNIST (``data_source="hub"``).
MNIST_HUB = "ylecun/mnist"
#: MNIST's label names.
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
#: Hugging Face dataset of CIFAR-10 (``data_source="hub"``).
CIFAR10_HUB = "uoft-cs/cifar10"
#: Fashion-MNIST label names, index = label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: CIFAR-10 label names, index = label.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_FASHION_MNIST_INSTALL = (
    "install it with `apt-get install -y dataset-fashion-mnist` (or `make data`), or pass "
    'data_source="hub" to download it from the Hugging Face Hub'
)


class ImageSplit(NamedTuple):
    """A train/test split of an image classification dataset.

    Attributes:
        x_train: Training images, ``uint8`` array ``(N_train, C, H, W)``.
        y_train: Training labels, ``int64`` array ``(N_train,)``.
        x_test: Test images, ``uint8`` array ``(N_test, C, H, W)``.
        y_test: Test labels, ``int64`` array ``(N_test,)``.
        classes: Label names, index = label.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def _check_data_source(data_source: str) -> None:
    if data_source not in IMAGE_DATA_SOURCES:
        raise ValueError(
            f"data_source = {data_source!r} is not allowed: expected one of "
            f"{', '.join(map(repr, IMAGE_DATA_SOURCES))}."
        )


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz``) as a ``uint8`` array (header: 0, 0, dtype code, ndim, sizes)."""
    raw = gzip.open(path, "rb").read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (header {raw[:4]!r}).")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def load_fashion_mnist(data_source: str = "offline", root: str | Path | None = None) -> ImageSplit:
    """Fashion-MNIST: 60,000 training and 10,000 test images, 28x28 grey-scale, 10 classes.

    Args:
        data_source: ``"offline"`` reads the IDX files of the Debian package
            ``dataset-fashion-mnist``; ``"hub"`` runs
            ``datasets.load_dataset("zalando-datasets/fashion_mnist")`` (network access,
            cached under ``data/cache/hub/``).
        root: Folder of the IDX ``.gz`` files (offline only); :data:`FASHION_MNIST_DIR` if None.

    Returns:
        An :class:`ImageSplit` with images ``(N, 1, 28, 28)`` (``uint8``).

    Raises:
        ValueError: For an unknown ``data_source``.
        FileNotFoundError: If an offline IDX file is missing (the message says what to install).
        ConnectionError: If the hub cannot be reached (e.g. ``HF_DATASETS_OFFLINE=1``).

    References:
        Xiao et al. 2017; ``docs/data.md#images``.
    """
    _check_data_source(data_source)
    if data_source == "hub":
        train, test = _load_hub(FASHION_MNIST_HUB, "image", 'data_source="offline"')
        return ImageSplit(*train, *test, classes=FASHION_MNIST_CLASSES)
    folder = FASHION_MNIST_DIR if root is None else Path(root)
    arrays: dict[str, np.ndarray] = {}
    for key, name in _FASHION_MNIST_FILES.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {path} is missing: {_FASHION_MNIST_INSTALL}."
            )
        arrays[key] = _read_idx(path)
    return ImageSplit(
        x_train=arrays["x_train"][:, None],  # (60000, 1, 28, 28)
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"][:, None],  # (10000, 1, 28, 28)
        y_test=arrays["y_test"].astype(np.int64),
        classes=FASHION_MNIST_CLASSES,
    )


def load_mnist(data_source: str = "offline") -> ImageSplit:
    """MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28 (hub only).

    Args:
        data_source: Must be ``"hub"``: runs ``datasets.load_dataset("ylecun/mnist")``
            (network access, cached under ``data/cache/hub/``). No package ships MNIST;
            ``"offline"`` raises and names the stand-in.

    Returns:
        An :class:`ImageSplit` with images ``(N, 1, 28, 28)`` (``uint8``).

    Raises:
        ValueError: For an unknown ``data_source``.
        FileNotFoundError: For ``data_source="offline"``.
        ConnectionError: If the hub cannot be reached.

    References:
        LeCun et al. 1998; ``docs/data.md#not-offline``.
    """
    _check_data_source(data_source)
    if data_source == "offline":
        raise FileNotFoundError(
            'MNIST has no offline copy: pass data_source="hub" to download it with '
            f'datasets.load_dataset("{MNIST_HUB}"), or use the offline stand-in Fashion-MNIST '
            "(load_fashion_mnist)."
        )
    train, test = _load_hub(MNIST_HUB, "image", "load_fashion_mnist() (offline stand-in)")
    return ImageSplit(*train, *test, classes=MNIST_CLASSES)


def load_cifar10(data_source: str = "offline") -> ImageSplit:
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes (hub only).

    Args:
        data_source: Must be ``"hub"``: runs ``datasets.load_dataset("uoft-cs/cifar10")``
            (network access, cached under ``data/cache/hub/``); its ``img`` column becomes the
            image arrays. No offline copy of CIFAR-10 exists; ``"offline"`` raises.

    Returns:
        An :class:`ImageSplit` with images ``(N, 3, 32, 32)`` (``uint8``).

    Raises:
        ValueError: For an unknown ``data_source``.
        FileNotFoundError: For ``data_source="offline"`` (no offline CIFAR-10 exists).
        ConnectionError: If the hub cannot be reached (e.g. ``HF_DATASETS_OFFLINE=1``).

    References:
        Krizhevsky 2009; ``docs/data.md#not-offline``.
    """
    _check_data_source(data_source)
    if data_source == "offline":
        raise FileNotFoundError(
            "CIFAR-10 has no offline copy (no package ships the data; see ``docs/data.md`` "
            'section 7): pass data_source="hub" to download it with '
            f'datasets.load_dataset("{CIFAR10_HUB}"), or use the offline stand-in '
            'Fashion-MNIST (dataset="fashion_mnist" in the cnn workload).'
        )
    train, test = _load_hub(CIFAR10_HUB, "img", 'dataset="fashion_mnist", data_source="offline"')
    return ImageSplit(*train, *test, classes=CIFAR10_CLASSES)


def _load_hub(
    name: str, image_column: str, offline_hint: str
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``load_dataset(name)``'s train and test splits as ``uint8`` (N, C, H, W) and labels."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, cache_dir=str(paths.CACHE / "hub"))
    except ConnectionError as err:
        raise ConnectionError(
            f"could not load {name!r} from the Hugging Face Hub ({err}); it needs network "
            f"access (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE must be unset). Without network "
            f"access use {offline_hint}."
        ) from err
    splits = []
    for split in ("train", "test"):
        images = _stack_images(dataset[split][image_column])  # (N, C, H, W)
        labels = np.asarray(dataset[split]["label"], dtype=np.int64)  # (N,)
        splits.append((images, labels))
    log.info(
        "loaded %s from the hub: %s",
        name,
        {s: len(x) for s, (x, _) in zip(("train", "test"), splits)},
    )
    return splits[0], splits[1]


def _stack_images(images: Sequence[Any]) -> np.ndarray:
    """PIL images (or arrays) ``(H, W)`` / ``(H, W, C)`` as one ``uint8`` array (N, C, H, W)."""
    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    if array.ndim == 3:
        return array[:, None]  # (N, 1, H, W)
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))  # (N, C, H, W)


def channel_stats(images: np.ndarray | Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of images scaled to [0, 1].

    Accumulates in float64 over chunks of images, so CIFAR-10's training set needs no float
    copy of the whole array.

    Args:
        images: ``(N, C, H, W)``; ``uint8`` values are divided by 255, floats are used as is.

    Returns:
        ``(mean, std)``, one value per channel each (population statistics).
    """
    x = torch.as_tensor(images)
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    total = torch.zeros(x.shape[1], dtype=torch.float64)  # (C,)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)  # (C,)
    for chunk in torch.split(x, 4096):
        values = chunk.double() / scale  # (chunk, C, H, W)
        total += values.sum(dim=(0, 2, 3))
        squares += values.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-16).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


class _BatchedImages(Dataset[tuple[Tensor, Tensor]]):
    """Images and labels fetched a whole batch at a time (``__getitems__``), not per sample."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images  # (N, C, H, W)
        self.labels = labels  # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)  # (B,)
        return self.images[index], self.labels[index]  # (B, C, H, W), (B,)


class ImageBatchTransform:
    """``collate_fn`` that augments and normalises a batch with torch ops.

    The batch ``(images, labels)`` becomes ``(x, labels)``: ``uint8`` images are divided by
    255; then, if enabled, a random crop after zero padding by ``crop_padding`` pixels per
    side and a random horizontal flip (probability 0.5) per image; finally
    ``(x - mean) / std`` per channel. Random draws come from the transform's own generator,
    seeded with ``seed``, so they are reproducible and leave the global RNG alone.

    Args:
        mean: Per-channel mean of the [0, 1]-scaled training images.
        std: Per-channel standard deviation, same length.
        crop_padding: Padding (pixels) of the random crop; 0 disables cropping.
        hflip: Flip each image horizontally with probability 0.5.
        seed: Seed of the augmentation generator.

    Raises:
        ValueError: For a negative ``crop_padding`` or ``mean``/``std`` of different lengths.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean and std have different lengths: {len(mean)} and {len(std)}.")
        if not isinstance(crop_padding, int) or isinstance(crop_padding, bool) or crop_padding < 0:
            raise ValueError(
                f"crop_padding = {crop_padding!r} is not allowed: expected an integer >= 0."
            )
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)  # (1, C, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)  # (1, C, 1, 1)
        self.crop_padding = crop_padding
        self.hflip = bool(hflip)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def augments(self) -> bool:
        """Whether the transform draws random numbers (crop or flip enabled)."""
        return self.crop_padding > 0 or self.hflip

    def __call__(self, batch: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Augment and normalise a fetched batch ``(images (B, C, H, W), labels (B,))``."""
        images, labels = batch
        return self.apply(images), labels

    def apply(self, images: Tensor) -> Tensor:
        """Augment and normalise a stacked batch ``(B, C, H, W)`` (``uint8`` or float)."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        batch, _, height, width = x.shape
        if self.crop_padding > 0:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
            dy = torch.randint(0, 2 * p + 1, (batch, 1), generator=self.generator)  # (B, 1)
            dx = torch.randint(0, 2 * p + 1, (batch, 1), generator=self.generator)  # (B, 1)
            rows = dy + torch.arange(height)  # (B, H)
            cols = dx + torch.arange(width)  # (B, W)
            index = torch.arange(batch)[:, None, None]  # (B, 1, 1)
            x = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
            x = x.permute(0, 3, 1, 2)  # (B, C, H, W)
        if self.hflip:
            flip = torch.rand(batch, generator=self.generator) < 0.5  # (B,)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return ((x - self.mean) / self.std).contiguous()


def make_image_loader(
    images: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    batch_size: int,
    transform: ImageBatchTransform,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader[tuple[Tensor, ...]]:
    """A ``DataLoader`` of normalised (and possibly augmented) image batches.

    The images stay ``uint8`` in memory (150 MB for CIFAR-10's training set instead of 600 MB
    as float32); ``transform`` converts each batch.

    Args:
        images: ``(N, C, H, W)``, ``uint8`` or float in [0, 1].
        labels: ``(N,)`` integer labels.
        batch_size: Samples per batch, >= 1 (the last batch may be smaller).
        transform: The ``collate_fn`` (normalisation and augmentation).
        shuffle: Reshuffle every epoch.
        seed: Seed of the shuffling generator (the global RNG is not used).

    Returns:
        The loader; it yields ``(x (B, C, H, W) float32, y (B,) int64)``.

    Raises:
        ValueError: If the lengths differ or ``batch_size`` is not a positive integer.
    """
    x = torch.as_tensor(images)
    y = torch.as_tensor(labels, dtype=torch.long)
    if x.ndim != 4:
        raise ValueError(f"images have shape {tuple(x.shape)}: expected (N, C, H, W).")
    if len(x) != len(y):
        raise ValueError(f"images and labels have different lengths: {len(x)} and {len(y)}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} is not allowed: expected an integer >= 1.")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        _BatchedImages(x, y),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=transform,
    )
