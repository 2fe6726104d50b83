"""Crossbar tiles: the tile forward model and the layer-to-tile mapper."""

from analoglib.tiles.mapper import TileMapping, split_sizes
from analoglib.tiles.tile import (
    analog_conv,
    analog_mvm,
    ir_drop_row_weighting,
    quantize,
    set_fused_elementwise,
)

__all__ = [
    "TileMapping",
    "analog_conv",
    "analog_mvm",
    "ir_drop_row_weighting",
    "quantize",
    "set_fused_elementwise",
    "split_sizes",
]
