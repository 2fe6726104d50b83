"""Analog layers (inference and in-memory training) and model conversion."""

from analoglib.nn.attention import AnalogMultiheadAttention
from analoglib.nn.base import AnalogLayerBase, ConfigMismatchError
from analoglib.nn.conv import AnalogConv1d, AnalogConv2d
from analoglib.nn.convert import (
    CONVERSION_MAP,
    ON_UNSUPPORTED,
    DigitalModule,
    DigitalModulesWarning,
    UnsupportedModuleError,
    analog_layers,
    convert_to_analog,
    convert_to_digital,
    named_analog_layers,
    named_digital_modules,
    replace_config,
    require_analog_layers,
    weight_matrix_elements,
)
from analoglib.nn.linear import AnalogHFConv1D, AnalogLinear
from analoglib.nn.rnn import AnalogGRU, AnalogLSTM
from analoglib.nn.trainable import AnalogTrainConv2d, AnalogTrainLayer, AnalogTrainLinear

__all__ = [
    "CONVERSION_MAP",
    "ON_UNSUPPORTED",
    "AnalogConv1d",
    "AnalogConv2d",
    "AnalogGRU",
    "AnalogHFConv1D",
    "AnalogLSTM",
    "AnalogLayerBase",
    "AnalogLinear",
    "AnalogMultiheadAttention",
    "AnalogTrainConv2d",
    "AnalogTrainLayer",
    "AnalogTrainLinear",
    "ConfigMismatchError",
    "DigitalModule",
    "DigitalModulesWarning",
    "UnsupportedModuleError",
    "analog_layers",
    "convert_to_analog",
    "convert_to_digital",
    "named_analog_layers",
    "named_digital_modules",
    "replace_config",
    "require_analog_layers",
    "weight_matrix_elements",
]
