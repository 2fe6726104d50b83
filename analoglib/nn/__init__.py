"""Analog layers and model conversion."""

from analoglib.nn.base import AnalogLayerBase, ConfigMismatchError
from analoglib.nn.conv import AnalogConv1d, AnalogConv2d
from analoglib.nn.convert import (
    CONVERSION_MAP,
    analog_layers,
    convert_to_analog,
    convert_to_digital,
    named_analog_layers,
    replace_config,
    require_analog_layers,
)
from analoglib.nn.linear import AnalogLinear
from analoglib.nn.rnn import AnalogGRU, AnalogLSTM

__all__ = [
    "CONVERSION_MAP",
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogGRU",
    "AnalogLSTM",
    "AnalogLayerBase",
    "AnalogLinear",
    "ConfigMismatchError",
    "analog_layers",
    "convert_to_analog",
    "convert_to_digital",
    "named_analog_layers",
    "replace_config",
    "require_analog_layers",
]
