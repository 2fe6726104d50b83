"""Steps that several studies share: calibration batches that do not depend on the cache state.

A study that calibrates a model on "the first training batches" must get the same batches
whether its FP model was just trained (which advanced the shuffling generator of the training
loader) or loaded from ``data/cache/``. :func:`calibration_batches` therefore reads the
training set in dataset order, unshuffled.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from analoglib.nn.convert import convert_to_analog
from analoglib.optim import PostTrainingReport, calibrate_input_ranges
from analoglib.presets import standard_hwa_2023
from analoglib.utils import check_int, derive_seed
from analoglib.workloads import Workload

__all__ = ["calibration_batches", "direct_mapping"]


def calibration_batches(workload: Workload, n_batches: int, seed: int = 0) -> list[Any]:
    """The first ``n_batches`` training batches in dataset order (unshuffled, deterministic).

    ``seed`` seeds the augmentation of the loader's ``collate_fn``, if it has a generator.

    Raises:
        ValueError: If ``n_batches < 1`` or the training loader is not a ``DataLoader``.
    """
    check_int("n_batches", n_batches, 1)
    loader = workload.train_loader
    if not isinstance(loader, DataLoader):
        raise ValueError(
            f"workload.train_loader = {loader!r} is not allowed: expected a DataLoader."
        )
    # The loader's own batching; an augmenting collate_fn draws from its own generator, which
    # training advanced: a reseeded copy gives the same batches whatever ran before.
    collate = copy.deepcopy(loader.collate_fn)
    generator = getattr(collate, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(derive_seed(seed, "calibration_batches"))
    ordered = DataLoader(
        loader.dataset, batch_size=loader.batch_size, shuffle=False, collate_fn=collate
    )
    return list(itertools.islice(ordered, n_batches))


def direct_mapping(
    workload: Workload,
    fp_model: nn.Module,
    n_calibration: int,
    seed: int,
    percentile: float = 99.995,
) -> tuple[nn.Module, PostTrainingReport]:
    """The FP model on the standard crossbar model, with data-calibrated input ranges.

    Each tile's input range is set to the ``percentile`` of the inputs it sees on the first
    ``n_calibration`` training batches (:func:`calibration_batches`, so the result does not
    depend on whether ``fp_model`` was just trained or loaded). Without the calibration the
    preset's fixed input range clips the activations of most trained networks, which would not
    be a fair baseline.

    Args:
        workload: The workload (its training set and ``batch_loss``).
        fp_model: The trained FP model (left unchanged).
        n_calibration: Training batches of the calibration.
        seed: Seed of the calibration's input sampling.
        percentile: Percentile of the calibrated ranges, in percent.

    Returns:
        The converted model in ``eval()`` mode and the calibration report.
    """
    # Embeddings stay digital by design, as in the papers (docs/model.md#recipe-resnet-lstm).
    model = convert_to_analog(fp_model, standard_hwa_2023(), on_unsupported="ignore")
    report = calibrate_input_ranges(
        model,
        calibration_batches(workload, n_calibration, seed),
        percentile=percentile,
        run_batch=workload.batch_loss,
        seed=seed,
    )
    return model.eval(), report
