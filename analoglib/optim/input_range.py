"""Post-training input-range (DAC range) calibration of every tile.

Each tile t scales its inputs as ``clip(x, -r_t, r_t) / r_t`` before the DAC. A small range
clips large inputs; a large one wastes DAC levels on values that never occur. The calibration
runs the network ideally on a calibration set, keeps a uniform random sample of the input
vectors each tile sees, and sets ``r_t`` to a percentile of their absolute values.

References:
    Lammie et al. 2024 (PT input-range optimisation, K-th percentile per tile);
    ``docs/model.md#periphery`` (aihwkit ``calibrate_input_ranges``, CACHE_QUANTILE with
    quantile 0.99995 and 1000 samples) and 11 (a).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.convert import require_analog_layers
from analoglib.optim.base import PostTrainingReport, RunBatch, ideal_mode, run_calibration
from analoglib.utils import derive_seed, make_generator

__all__ = ["TileInputSampler", "calibrate_input_ranges", "masked_quantile"]


class TileInputSampler:
    """Uniform random sample (without replacement) of the input vectors of every tile.

    Every observed vector gets a uniform random key; the ``max_samples`` vectors with the
    largest keys over all calls are kept, which is a uniform sample of everything seen.

    Args:
        max_samples: Input vectors kept per tile.
        generator: Source of the keys.
    """

    def __init__(self, max_samples: int, generator: torch.Generator) -> None:
        self.max_samples = max_samples
        self.generator = generator
        self.samples: Tensor | None = None  # (tiles, kept, rows)
        self._keys: Tensor | None = None  # (kept,)
        self.n_seen = 0

    def __call__(self, x: Tensor) -> None:
        """Observe ``(tiles, batch, rows)`` tile inputs."""
        self.n_seen += x.shape[1]
        keys = torch.rand(x.shape[1], generator=self.generator, device=self.generator.device)
        x = x.detach().float()
        if self.samples is not None and self._keys is not None:
            keys = torch.cat([self._keys, keys])
            x = torch.cat([self.samples, x], dim=1)
        if keys.numel() > self.max_samples:
            keys, keep = torch.topk(keys, self.max_samples)
            x = x.index_select(1, keep)
        self.samples, self._keys = x, keys


def masked_quantile(values: Tensor, mask: Tensor, q: float) -> Tensor:
    """Quantile ``q`` in [0, 1] of each row of ``values`` over the entries where ``mask`` holds.

    Linear interpolation between order statistics, as ``torch.quantile`` (which has an input
    size limit and no mask). Rows without any entry give NaN.

    Args:
        values: ``(rows, n)``.
        mask: ``(rows, n)`` booleans.
        q: The quantile.

    Returns:
        ``(rows,)``.
    """
    filled = torch.where(mask, values, torch.full_like(values, math.inf))
    ordered, _ = torch.sort(filled, dim=1)  # valid entries first
    count = mask.sum(dim=1)  # (rows,)
    position = q * (count - 1).clamp(min=0).to(values.dtype)
    low = position.floor().long()
    high = position.ceil().long()
    frac = position - low.to(values.dtype)
    v_low = ordered.gather(1, low.unsqueeze(1)).squeeze(1)
    v_high = ordered.gather(1, high.unsqueeze(1)).squeeze(1)
    result = v_low + (v_high - v_low) * frac
    return torch.where(count > 0, result, torch.full_like(result, math.nan))


def _check_arguments(percentile: Any, max_samples: Any) -> None:
    ok = isinstance(percentile, (int, float)) and not isinstance(percentile, bool)
    if not ok or not 0 < percentile <= 100:
        raise ValueError(
            f"percentile = {percentile!r} is not allowed: expected a number in (0, 100]."
        )
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples = {max_samples!r} is not allowed: expected an int >= 1.")


def calibrate_input_ranges(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    percentile: float = 99.995,
    max_samples: int = 1000,
    max_batches: int = 0,
    run_batch: RunBatch | None = None,
    seed: int = 0,
) -> PostTrainingReport:
    """Set every tile's input range to a percentile of the absolute inputs it sees.

    The network runs with exact (noise-free, unclipped) analog layers on the calibration
    batches, in ``eval()`` mode without gradients. For each tile a uniform random sample of
    ``max_samples`` input vectors is kept; its new range is the ``percentile`` of their absolute
    entries (rows padded by the tiling excluded). A tile that only saw zeros keeps its range.
    The data initialisation of learned ranges is marked as done, so a later HWA training
    starts from the calibrated ranges instead of overwriting them.

    Args:
        model: A converted model whose layers use input ranges
            (``config.pre_post.input_range.enable``).
        batches: Calibration batches (e.g. a workload's training loader).
        percentile: K, in percent (0, 100].
        max_samples: Input vectors sampled per tile.
        max_batches: Use at most this many batches (0: all).
        run_batch: ``run_batch(model, batch)`` runs one batch; default: the model on the
            batch's tensor (see :func:`~analoglib.optim.base.default_run_batch`).
        seed: Seed of the sampling.

    Returns:
        A report with one row per tile: ``range_before``, ``range_after`` and the fraction of
        sampled inputs beyond the range before and after; ``report.undo()`` restores the
        previous ranges exactly.

    Raises:
        ValueError: For invalid arguments, a model without analog layers, or a layer whose
            input ranges are disabled.
    """
    _check_arguments(percentile, max_samples)
    layers = require_analog_layers(model)
    for name, layer in layers:
        if not layer.config.pre_post.input_range.enable:
            raise ValueError(
                f"layer {name!r}: config.pre_post.input_range.enable = False, so it has no "
                "input range to calibrate; enable it in the config before converting."
            )
    samplers = [
        TileInputSampler(
            max_samples, make_generator(derive_seed(seed, "input_range", i), _device(layer))
        )
        for i, (_, layer) in enumerate(layers)
    ]
    saved = PostTrainingReport.snapshot(
        t for _, layer in layers for t in (layer.input_range, layer.input_range_batches)
    )
    with ideal_mode(layers, samplers):
        n_batches = run_calibration(model, batches, run_batch, max_batches)

    rows = []
    with torch.no_grad():
        for (name, layer), sampler in zip(layers, samplers, strict=True):
            if sampler.samples is None:
                raise ValueError(
                    f"layer {name!r} saw no input during calibration; is it used by run_batch?"
                )
            samples = sampler.samples.abs()  # (tiles, kept, rows)
            mask = layer._row_mask.expand_as(samples).bool()
            flat, flat_mask = samples.flatten(1), mask.flatten(1)  # (tiles, kept * rows)
            new = masked_quantile(flat, flat_mask, percentile / 100)
            before = layer.input_range.detach().clone()
            new = torch.where(new > 0, new.to(before), before)  # all-zero tiles keep theirs
            layer.input_range.copy_(new)
            ranges = layer.config.pre_post.input_range
            layer.input_range_batches.clamp_(min=ranges.init_from_data)
            n_valid = flat_mask.sum(dim=1).clamp(min=1)
            clipped_before = ((flat > before.view(-1, 1)) & flat_mask).sum(dim=1) / n_valid
            clipped_after = ((flat > new.view(-1, 1)) & flat_mask).sum(dim=1) / n_valid
            for tile in range(new.numel()):
                rows.append(
                    {
                        "layer": name,
                        "tile": tile,
                        "range_before": float(before[tile]),
                        "range_after": float(new[tile]),
                        "clipped_before": float(clipped_before[tile]),
                        "clipped_after": float(clipped_after[tile]),
                        "n_vectors": int(samples.shape[1]),
                    }
                )
    settings = {
        "percentile": percentile,
        "max_samples": max_samples,
        "n_batches": n_batches,
        "seed": seed,
    }
    return PostTrainingReport("input_range_calibration", settings, pd.DataFrame(rows), saved)


def _device(layer: AnalogLayerBase) -> torch.device:
    return layer.weight.device
