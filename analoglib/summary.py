"""Tile-mapping summary of an analog model, and what of it stayed digital.

Weight-matrix elements (the unit of :func:`analog_fraction` and of the ``analog_fraction``
column of :func:`summary`) are the elements of the parameters whose name contains ``weight``
and that have at least two dimensions: the weights of linear, convolution, embedding and
recurrent layers, attention projections and transformers' ``Conv1D``; for an analog layer, its
crossbar-mapped weights (:func:`~analoglib.nn.convert.weight_matrix_elements`). Biases,
normalisation scales and bare parameters (``bias_k``, class tokens) are not counted.
"""

from __future__ import annotations

import pandas as pd
from torch import nn

from analoglib.nn.convert import (
    named_analog_layers,
    named_digital_modules,
    weight_matrix_elements,
)

__all__ = ["analog_fraction", "digital_modules", "summary"]


def _weight_counts(model: nn.Module) -> tuple[int, int, int]:
    """``(analog, digital, digital embedding)`` weight-matrix elements of ``model``.

    Digital parameters shared by several modules are counted once.
    """
    analog = sum(weight_matrix_elements(layer) for _, layer in named_analog_layers(model))
    seen: set[int] = set()
    digital = embedding = 0
    for entry in named_digital_modules(model):
        for name, p in entry.module.named_parameters(recurse=False):
            if "weight" not in name or p.dim() < 2 or id(p) in seen:
                continue
            seen.add(id(p))
            digital += p.numel()
            if isinstance(entry.module, (nn.Embedding, nn.EmbeddingBag)):
                embedding += p.numel()
    return analog, digital, embedding


def analog_fraction(model: nn.Module, include_embeddings: bool = True) -> float:
    """Fraction of the weight-matrix elements of ``model`` that are on crossbars.

    Args:
        model: A model, converted or not (an unconverted model gives 0).
        include_embeddings: Count the embedding tables (``nn.Embedding``,
            ``nn.EmbeddingBag``, digital by design) among all weight-matrix elements; with
            ``False`` the fraction is over the other weight matrices only.

    Returns:
        Analog weight-matrix elements / all counted weight-matrix elements, in ``[0, 1]``;
        ``nan`` if the model has no weight matrices.
    """
    analog, digital, embedding = _weight_counts(model)
    total = analog + digital - (0 if include_embeddings else embedding)
    return analog / total if total else float("nan")


def digital_modules(model: nn.Module) -> pd.DataFrame:
    """Every module with its own parameters that computes digitally, with the reason.

    Args:
        model: A model, converted or not.

    Returns:
        One row per module, in module order: ``module`` (qualified name), ``type``,
        ``category`` (``embedding``, ``normalisation``, ``excluded`` or ``unsupported``; see
        :class:`~analoglib.nn.convert.DigitalModule`), ``reason``, ``weight_elements``
        (weight-matrix elements) and ``parameters`` (all its own parameter elements, biases and
        scales included). Empty (with these columns) if nothing with weights is digital.
    """
    rows = [
        {
            "module": entry.name,
            "type": type(entry.module).__name__,
            "category": entry.category,
            "reason": entry.reason,
            "weight_elements": weight_matrix_elements(entry.module),
            "parameters": sum(p.numel() for p in entry.module.parameters(recurse=False)),
        }
        for entry in named_digital_modules(model)
    ]
    columns = ["module", "type", "category", "reason", "weight_elements", "parameters"]
    return pd.DataFrame(rows, columns=columns)


def summary(model: nn.Module) -> pd.DataFrame:
    """Per analog layer: tiles, tile shape, utilisation and analog weight count.

    Args:
        model: A converted model.

    Returns:
        One row per analog layer plus a ``total`` row. ``utilization`` is the fraction of the
        configured crossbar cells (``max_input_size x max_output_size``, or the layer's own
        column count when outputs are not split) that hold a weight. ``analog_fraction`` is 1
        for every analog layer and, in the ``total`` row, :func:`analog_fraction` of the
        whole model (embeddings included): what is below 1 stayed digital, listed by
        :func:`digital_modules`.

    Raises:
        ValueError: If ``model`` has no analog layers.
    """
    rows = []
    for name, layer in named_analog_layers(model):
        m = layer.mapping
        rows.append(
            {
                "layer": name or "<root>",
                "type": type(layer).__name__,
                "matrix": f"{m.groups}x({m.out_features}x{m.in_features})",
                "tiles": m.n_tiles,
                "split": f"{m.groups}x{m.tiles_in}x{m.tiles_out}",
                "tile_shape": f"{m.tile_shape[0]}x{m.tile_shape[1]}",
                "utilization": m.utilization,
                "analog_weights": layer.analog_weight_count,
                "analog_fraction": 1.0,
                "programmed": layer.is_programmed,
            }
        )
    if not rows:
        raise ValueError(
            f"{type(model).__name__} has no analog layers: convert it with "
            "analoglib.convert_to_analog(model, config) first."
        )
    table = pd.DataFrame(rows)
    cells = (table["analog_weights"] / table["utilization"]).sum()
    total = {
        "layer": "total",
        "type": "",
        "matrix": "",
        "tiles": int(table["tiles"].sum()),
        "split": "",
        "tile_shape": "",
        "utilization": float(table["analog_weights"].sum() / cells),
        "analog_weights": int(table["analog_weights"].sum()),
        "analog_fraction": analog_fraction(model),
        "programmed": bool(table["programmed"].all()),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
