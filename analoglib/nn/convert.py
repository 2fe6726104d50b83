"""Conversion between digital PyTorch models and analog ones.

References:
    ``docs/aihwkit.md#conversion-api`` (aihwkit's ``convert_to_analog`` / ``convert_to_digital``).
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Iterable, Iterator

from torch import nn

from analoglib.config import PCMConfig
from analoglib.nn.base import AnalogLayerBase
from analoglib.nn.conv import AnalogConv1d, AnalogConv2d
from analoglib.nn.linear import AnalogLinear
from analoglib.nn.rnn import AnalogGRU, AnalogLSTM, _AnalogRNNBase
from analoglib.utils import derive_seed

__all__ = [
    "CONVERSION_MAP",
    "analog_layers",
    "convert_to_analog",
    "convert_to_digital",
    "named_analog_layers",
    "replace_config",
    "require_analog_layers",
]

#: Digital module type -> analog type. Subclasses of these types are converted as well.
CONVERSION_MAP: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: AnalogLinear,
    nn.Conv1d: AnalogConv1d,
    nn.Conv2d: AnalogConv2d,
    nn.LSTM: AnalogLSTM,
    nn.GRU: AnalogGRU,
}
# Weight-bearing layers that stay digital, children included (a warning names them).
# nn.MultiheadAttention reads out_proj.weight directly (F.multi_head_attention_forward), and
# nn.TransformerEncoderLayer's eval fast path reads linear1/linear2.weight directly: converted
# children would be bypassed with their normalised weights.
_UNSUPPORTED = (
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.RNN,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
)
_ANALOG_TYPES = (AnalogLayerBase, _AnalogRNNBase)


def named_analog_layers(model: nn.Module) -> Iterator[tuple[str, AnalogLayerBase]]:
    """Every analog layer (the crossbar-mapped matrices) with its qualified name."""
    for name, module in model.named_modules():
        if isinstance(module, AnalogLayerBase):
            yield name, module


def require_analog_layers(model: nn.Module) -> list[tuple[str, AnalogLayerBase]]:
    """The named analog layers of ``model``.

    Raises:
        ValueError: If ``model`` has none (it was not converted).
    """
    layers = list(named_analog_layers(model))
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no analog layers: convert it with "
            "analoglib.convert_to_analog(model, config) first."
        )
    return layers


def analog_layers(model: nn.Module) -> list[AnalogLayerBase]:
    """Every analog layer of ``model`` in module order."""
    return [layer for _, layer in named_analog_layers(model)]


def replace_config(model: nn.Module, config: PCMConfig) -> nn.Module:
    """Give every analog layer of ``model`` a copy of ``config``, in place.

    Only run-time groups may differ from the layers' configs (forward, noise_model,
    drift_compensation, modifier, clip, remap); tiles, digital scales, input ranges and
    learned parameters stay as they are. Every programming realisation is dropped: program
    again before evaluating. Used to evaluate one converted (and calibrated) model under many
    nonideality settings.

    Args:
        model: A converted model.
        config: The new config.

    Returns:
        ``model``.

    Raises:
        ValueError: If ``model`` has no analog layers, or ``config`` differs from a layer's
            config in ``mapping`` or ``pre_post`` (see
            :meth:`~analoglib.nn.base.AnalogLayerBase.replace_config`).
    """
    for name, layer in require_analog_layers(model):
        try:
            layer.replace_config(config)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from err
    return model


def _convertible(module: nn.Module) -> type[nn.Module] | None:
    for digital, analog in CONVERSION_MAP.items():
        if type(module) is digital or (
            isinstance(module, digital) and not isinstance(module, _ANALOG_TYPES)
        ):
            return analog
    return None


def _is_excluded(name: str, module: nn.Module, names: list[str], types: tuple[type, ...]) -> bool:
    return isinstance(module, types) or any(fnmatch.fnmatchcase(name, p) for p in names)


def convert_to_analog(
    model: nn.Module,
    config: PCMConfig,
    exclude: Iterable[str | type[nn.Module]] = (),
    seed: int = 0,
) -> nn.Module:
    """Copy of ``model`` with its supported layers on simulated PCM crossbars.

    ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, ``nn.LSTM`` and ``nn.GRU`` (and subclasses)
    become analog; everything else (embeddings, normalisation, attention softmax, activations)
    stays digital, which is how Hugging Face encoders such as BERT and RoBERTa are converted.
    ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` stay digital as a whole (with a
    warning): they read their linear children's weights directly instead of calling them.
    The original model is not modified.

    Args:
        model: A PyTorch model.
        config: Crossbar configuration, copied into every analog layer.
        exclude: Qualified module names or glob patterns (``"classifier"``, ``"*.pooler.*"``)
            and module types to keep digital.
        seed: Seed of the forward-noise streams (layer k gets a stream derived from
            ``(seed, k)``).

    Returns:
        The converted copy (an analog layer if ``model`` itself is a supported layer).

    Raises:
        ValueError: If ``config`` is not a :class:`~analoglib.config.PCMConfig`, or an
            ``exclude`` entry matches no module or is neither a string nor a module type.

    References:
        ``docs/aihwkit.md#conversion-api``.
    """
    if not isinstance(config, PCMConfig):
        raise ValueError(f"config = {config!r} is not allowed: expected a PCMConfig.")
    names: list[str] = []
    types: list[type] = []
    for entry in exclude:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, type) and issubclass(entry, nn.Module):
            types.append(entry)
        else:
            raise ValueError(
                f"exclude entry {entry!r} is not allowed: expected a module name, a glob "
                "pattern or an nn.Module subclass."
            )
    all_names = [name for name, _ in model.named_modules() if name]
    for pattern in names:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in all_names):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no module of {type(model).__name__}."
            )

    model = copy.deepcopy(model)
    left_digital: list[str] = []

    def convert(module: nn.Module, prefix: str) -> nn.Module:
        analog = _convertible(module)
        if analog is not None and not _is_excluded(prefix, module, names, tuple(types)):
            return analog.from_digital(module, config)  # type: ignore[attr-defined,no-any-return]
        if isinstance(module, _UNSUPPORTED):
            left_digital.append(f"{prefix or '<root>'} ({type(module).__name__})")
            return module
        for child_name, child in list(module.named_children()):
            qualified = f"{prefix}.{child_name}" if prefix else child_name
            setattr(module, child_name, convert(child, qualified))
        return module

    converted = convert(model, "")
    if left_digital:
        warnings.warn(
            "convert_to_analog: these layers have no analog counterpart and stay digital: "
            + ", ".join(left_digital),
            stacklevel=2,
        )
    for index, layer in enumerate(analog_layers(converted)):
        layer.set_forward_seed(derive_seed(seed, "forward", index))
    return converted


def convert_to_digital(model: nn.Module) -> nn.Module:
    """Copy of an analog model with every analog layer replaced by its digital equivalent.

    The digital weights are the reference weights times the digital column and output scales;
    programming, drift and every other nonideality are dropped. The original is not modified.
    """

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, _ANALOG_TYPES):
            return module.to_digital()  # type: ignore[operator,no-any-return]
        for child_name, child in list(module.named_children()):
            setattr(module, child_name, convert(child))
        return module

    return convert(copy.deepcopy(model))
