"""Crossbar tiles: the tile forward model and the layer-to-tile mapper."""

from analoglib.tiles.mapper import TileMapping, split_sizes
from analoglib.tiles.tile import analog_mvm, ir_drop_row_weighting, quantize

__all__ = ["TileMapping", "analog_mvm", "ir_drop_row_weighting", "quantize", "split_sizes"]
