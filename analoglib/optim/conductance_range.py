"""Post-training column-wise conductance-range optimisation.

Every tile column (bit line) i of tile t produces the pre-ADC output
``z_{t,i} = sum_j W~_{t,i,j} x^_{t,j}`` in normalised units, with ``x^`` the tile input after the
digital input range and the DAC clip. The ADC converts it over ``[-b_out, b_out]``
(``forward.out_bound``). A column whose outputs exceed the bound saturates the ADC; one whose
outputs stay far inside it spends few ADC levels on its signal and drowns in the output noise,
which is fixed in normalised units.

The optimiser runs the network ideally on a calibration set and estimates, per column, the
typical maximum of its outputs as ``mean + L * std`` of ``|z|`` over all calibration vectors.
It then scales the column's conductances by

    c_{t,i} = min(fill * b_out / (mean + L * std), max(1, 1 / max_j |W~_{t,i,j}|)),

shrinking saturating columns and growing under-used ones until their largest weight reaches 1
(the device ``g_max``), and divides the column's digital scale ``s_{t,i}`` (``mapping_scales``) by
``c_{t,i}``, so the ideal output of the layer is unchanged.

Growth needs head room: with the standard column-wise mapping (``weight_scaling_omega = 1``,
``weight_scaling_columnwise = True``) every column's abs-max is already 1, so columns can only
shrink. Columns grow when the mapping is per tile (``weight_scaling_columnwise = False``, as in
:func:`analoglib.presets.lammie_2024`), when ``omega < 1``, or after clipping left a column below
1. A channel-wise remap (HWA training with ``remap.type = "channelwise_symmetric"``) undoes the
growth, so run the optimiser after training.

The optimiser changes the weights, so run it **before** :func:`analoglib.program`: a layer that
was programmed before its weights changed refuses to evaluate until it is programmed again.

References:
    Lammie et al. 2024 (PT conductance-range optimisation per bit line, statistics
    ``mean + L * std`` over calibration inputs); ``docs/model.md#pt-conductance-range``. L, the
    objective and the number of calibration inputs are UNVERIFIED there.
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

__all__ = ["ColumnOutputStatistics", "ideal_tile_outputs", "optimize_conductance_ranges"]


def ideal_tile_outputs(layer: AnalogLayerBase, x_tiles: Tensor) -> Tensor:
    """Noise-free pre-ADC outputs ``z = W~ . clip(x / r)`` of every tile column.

    The input range (when enabled) and the DAC clip at ``forward.inp_bound`` are applied; DAC
    rounding, every noise source, IR drop and the ADC are left out.

    Args:
        layer: The analog layer.
        x_tiles: ``(tiles, batch, rows)`` raw tile inputs (as the calibration observers see them).

    Returns:
        ``(tiles, batch, out)`` outputs in normalised units (1 = one fully-on input at g_max).
    """
    x = x_tiles
    if layer.config.pre_post.input_range.enable:
        r = layer.input_range.detach().view(-1, 1, 1)  # (tiles, 1, 1)
        x = torch.clamp(x, -r, r) / r
    bound = layer.config.forward.inp_bound
    x = x.clamp(-bound, bound)
    weight = layer.reference_tiles().detach()  # (tiles, out, rows)
    return torch.bmm(x.to(weight.dtype), weight.transpose(1, 2))


class ColumnOutputStatistics:
    """Streaming statistics of ``|z|`` per tile column of one layer (a calibration observer).

    Sums are kept in float64, so the variance ``E[z^2] - E[|z|]^2`` does not cancel badly.

    Args:
        layer: The layer observed.
        out_bound: ADC bound used to count the clipped outputs.

    Attributes:
        n_vectors: Input vectors seen per tile.
        sum_abs, sum_sq, max_abs, n_clipped: ``(tiles, out)`` sums of ``|z|`` and ``z^2``, the
            largest ``|z|`` and the number of outputs beyond ``out_bound``.
    """

    def __init__(self, layer: AnalogLayerBase, out_bound: float) -> None:
        self.layer = layer
        self.out_bound = out_bound
        self.n_vectors = 0
        self.sum_abs: Tensor | None = None
        self.sum_sq: Tensor | None = None
        self.max_abs: Tensor | None = None
        self.n_clipped: Tensor | None = None

    def __call__(self, x_tiles: Tensor) -> None:
        """Observe ``(tiles, batch, rows)`` tile inputs."""
        z = ideal_tile_outputs(self.layer, x_tiles).abs_()  # (tiles, batch, out)
        sum_abs = z.sum(dim=1, dtype=torch.float64)  # (tiles, out)
        sum_sq = z.double().square_().sum(dim=1)
        max_abs = z.amax(dim=1).double()
        clipped = (z > self.out_bound).sum(dim=1)
        if self.sum_abs is None:
            self.sum_abs, self.sum_sq, self.max_abs, self.n_clipped = (
                sum_abs,
                sum_sq,
                max_abs,
                clipped,
            )
        else:
            assert self.sum_sq is not None and self.max_abs is not None
            assert self.n_clipped is not None
            self.sum_abs += sum_abs
            self.sum_sq += sum_sq
            self.max_abs = torch.maximum(self.max_abs, max_abs)
            self.n_clipped += clipped
        self.n_vectors += z.shape[1]

    def mean_std(self) -> tuple[Tensor, Tensor]:
        """``(tiles, out)`` mean and standard deviation of ``|z|`` (float64)."""
        assert self.sum_abs is not None and self.sum_sq is not None
        mean = self.sum_abs / self.n_vectors
        variance = (self.sum_sq / self.n_vectors - mean.square()).clamp(min=0.0)
        return mean, variance.sqrt()


def _check_arguments(n_std: Any, fill: Any, grow: Any) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(n_std) or not math.isfinite(n_std) or n_std < 0:
        raise ValueError(f"n_std = {n_std!r} is not allowed: expected a finite number >= 0.")
    if not number(fill) or not 0 < fill <= 1:
        raise ValueError(f"fill = {fill!r} is not allowed: expected a number in (0, 1].")
    if not isinstance(grow, bool):
        raise ValueError(f"grow = {grow!r} is not allowed: expected True or False.")


def _check_layer(name: str, layer: AnalogLayerBase) -> float:
    forward = layer.config.forward
    if forward.is_perfect or forward.out_bound is None:
        raise ValueError(
            f"layer {name!r}: config.forward.is_perfect = {forward.is_perfect!r}, "
            f"out_bound = {forward.out_bound!r}: the conductance ranges are fitted to the ADC "
            "range, so the layer needs a non-perfect forward with a finite out_bound."
        )
    return float(forward.out_bound)


def optimize_conductance_ranges(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    n_std: float = 3.0,
    fill: float = 1.0,
    grow: bool = True,
    max_batches: int = 0,
    run_batch: RunBatch | None = None,
) -> PostTrainingReport:
    """Fit the conductance range of every tile column to the ADC range (compensated digitally).

    The network runs with exact (noise-free) analog layers on the calibration batches, in
    ``eval()`` mode without gradients; every layer accumulates the mean and standard deviation
    of ``|z|`` for each tile column, ``z`` being the column's noise-free pre-ADC output with the
    layer's current input ranges (so calibrate input ranges first when both are used). Column
    i of tile t is then scaled by ``c = fill * out_bound / (mean + n_std * std)``, limited so
    that its largest weight does not exceed 1 when it grows (and to ``c <= 1`` when
    ``grow=False``); its digital scale is divided by ``c``. Columns whose outputs were all zero
    keep their range. The computation is deterministic (no random draws).

    Run it before :func:`analoglib.program`; a layer programmed earlier refuses to evaluate
    until it is programmed again. See the module docstring for when columns can grow.

    Args:
        model: A converted model (non-perfect forward with a finite ``out_bound``).
        batches: Calibration batches (e.g. a workload's training loader).
        n_std: L, standard deviations of ``|z|`` added to its mean for the predicted maximum.
        fill: Fraction of the ADC bound the predicted maximum is mapped to, in (0, 1].
        grow: Also grow under-used columns (otherwise only shrink saturating ones).
        max_batches: Use at most this many batches (0: all).
        run_batch: ``run_batch(model, batch)`` runs one batch; default: the model on the
            batch's tensor (see :func:`~analoglib.optim.base.default_run_batch`).

    Returns:
        A report with one row per tile: ``n_columns``; the gains ``gain_min``,
        ``gain_median``, ``gain_max`` and the fractions of columns ``shrunk`` and ``grown``;
        ``peak_before`` / ``peak_after``, the mean over columns of the predicted maximum
        (mean + L std) in units of the ADC bound; ``saturating_before`` / ``saturating_after``,
        the fraction of columns whose predicted maximum exceeds the bound; ``clipped_before``,
        the fraction of observed outputs beyond the bound; ``n_vectors``. ``report.undo()``
        restores the weights and digital scales exactly.

    Raises:
        ValueError: For invalid arguments, a model without analog layers, a layer with a
            perfect forward or no ADC bound, a layer that saw no input, or no batches.

    References:
        Lammie et al. 2024; ``docs/model.md#pt-conductance-range``.
    """
    _check_arguments(n_std, fill, grow)
    layers = require_analog_layers(model)
    observers = [ColumnOutputStatistics(layer, _check_layer(name, layer)) for name, layer in layers]
    with ideal_mode(layers, observers):
        n_batches = run_calibration(model, batches, run_batch, max_batches)

    saved = PostTrainingReport.snapshot(
        t for _, layer in layers for t in (layer.weight, layer.mapping_scales)
    )
    tables = []
    with torch.no_grad():
        for (name, layer), stats in zip(layers, observers, strict=True):
            if stats.sum_abs is None:
                raise ValueError(
                    f"layer {name!r} saw no input during calibration; is it used by run_batch?"
                )
            gain, peak = _column_gains(layer, stats, n_std, fill, grow)  # (tiles, out) each
            m = layer.mapping
            factor = m.expand_to_weights(gain.to(layer.weight.dtype))  # (groups, out, in)
            layer.weight.mul_(factor.reshape(layer.weight.shape))
            layer.mapping_scales.div_(gain.to(layer.mapping_scales.dtype))
            assert stats.n_clipped is not None
            tables.append(_tile_table(name, gain, peak, stats, layer.config.forward.out_bound))
    settings = {"n_std": n_std, "fill": fill, "grow": grow, "n_batches": n_batches}
    table = pd.concat(tables, ignore_index=True)
    return PostTrainingReport("conductance_range_optimization", settings, table, saved)


def _column_gains(
    layer: AnalogLayerBase,
    stats: ColumnOutputStatistics,
    n_std: float,
    fill: float,
    grow: bool,
) -> tuple[Tensor, Tensor]:
    """``(tiles, out)`` column gains c and predicted maxima ``mean + L std`` (float64)."""
    assert layer.config.forward.out_bound is not None
    mean, std = stats.mean_std()
    peak = mean + n_std * std  # (tiles, out)
    target = fill * layer.config.forward.out_bound
    gain = torch.where(peak > 0, target / peak, torch.ones_like(peak))
    column_max = layer.reference_tiles().detach().abs().amax(dim=2).double()  # (tiles, out)
    # Growth stops at |W~| = 1 (g_max); a column already beyond 1 is not forced down.
    headroom = torch.where(column_max > 0, 1.0 / column_max, torch.ones_like(column_max))
    gain = torch.minimum(gain, headroom.clamp(min=1.0) if grow else torch.ones_like(gain))
    return gain, peak


def _tile_table(
    name: str,
    gain: Tensor,
    peak: Tensor,
    stats: ColumnOutputStatistics,
    out_bound: float | None,
) -> pd.DataFrame:
    """One row per stacked tile summarising the column changes (vectorised over tiles)."""
    assert out_bound is not None and stats.n_clipped is not None
    n_tiles, n_columns = gain.shape
    relative_peak = peak / out_bound  # (tiles, out)
    return pd.DataFrame(
        {
            "layer": name,
            "tile": range(n_tiles),
            "n_columns": n_columns,
            "gain_min": gain.amin(dim=1).cpu().numpy(),
            "gain_median": gain.median(dim=1).values.cpu().numpy(),
            "gain_max": gain.amax(dim=1).cpu().numpy(),
            "shrunk": (gain < 1).double().mean(dim=1).cpu().numpy(),
            "grown": (gain > 1).double().mean(dim=1).cpu().numpy(),
            "peak_before": relative_peak.mean(dim=1).cpu().numpy(),
            "peak_after": (relative_peak * gain).mean(dim=1).cpu().numpy(),
            "saturating_before": (relative_peak > 1).double().mean(dim=1).cpu().numpy(),
            "saturating_after": (relative_peak * gain > 1 + 1e-9)
            .double()
            .mean(dim=1)
            .cpu()
            .numpy(),
            "clipped_before": (stats.n_clipped.double() / (stats.n_vectors * n_columns))
            .sum(dim=1)
            .cpu()
            .numpy(),
            "n_vectors": stats.n_vectors,
        }
    )
