"""Tile-mapping summary of an analog model."""

from __future__ import annotations

import pandas as pd
from torch import nn

from analoglib.nn.convert import named_analog_layers

__all__ = ["summary"]


def summary(model: nn.Module) -> pd.DataFrame:
    """Per analog layer: tiles, tile shape, utilisation and analog weight count.

    Args:
        model: A converted model.

    Returns:
        One row per analog layer plus a ``total`` row. ``utilization`` is the fraction of the
        configured crossbar cells (``max_input_size x max_output_size``, or the layer's own
        column count when outputs are not split) that hold a weight.

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
        "programmed": bool(table["programmed"].all()),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
