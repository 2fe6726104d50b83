"""Crossbar tiles: the tile forward model, the layer-to-tile mapper and trainable tiles."""

from analoglib.tiles.io import IOParameters
from analoglib.tiles.mapper import TileMapping, split_sizes
from analoglib.tiles.tile import (
    analog_conv,
    analog_mvm,
    ir_drop_row_weighting,
    quantize,
    set_fused_elementwise,
)
from analoglib.tiles.training import TrainingConfig, TrainingTile, build_config

__all__ = [
    "IOParameters",
    "TileMapping",
    "TrainingConfig",
    "TrainingTile",
    "build_config",
    "analog_conv",
    "analog_mvm",
    "ir_drop_row_weighting",
    "quantize",
    "set_fused_elementwise",
    "split_sizes",
]
